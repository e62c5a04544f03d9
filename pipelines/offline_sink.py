"""The Parquet offline log writer: durable at every checkpoint, no duplicates after a crash.

Rows are kept per (source partition, date) in an *open part* named by its first
source offset. At each checkpoint, before offsets are committed, every open part
that changed is written whole to a temporary name and renamed over
``part-<partition>-<first offset>.parquet`` (on S3: a copy to the final key, where an object
appears whole or not at all; see :mod:`freshet.features.log_store`); a part is closed (dropped from
memory) once it holds ``roll_rows`` rows or is ``roll_seconds`` old, so a long
run makes few, large files. The rewrite is paid on the checkpoint, which holds up the input: so a
writer whose open parts hold more than ``max_open_rows`` rows after a checkpoint closes its largest
ones (at 5,000 values/s over 16 open parts their rewrite grew to 267 ms per checkpoint within a
minute, and would have kept growing for the whole ``roll_seconds``; bounded, 24-104 ms: `python -m
bench.checkpoint_pauses [--unbounded]`, bench/RESULTS.md 2026-11-24 03:56).

After a crash the pipeline reprocesses from the last committed offsets and,
being deterministic, emits again exactly the rows flushed after that commit:
those can only be in the files the last flush touched. Regeneration happens per
*input* partition (the partition the windows read: the source, or the
repartition topic when re-keying), so each flush records, per input partition,
the files it touched in ``_last_flush-<input partition>.json``. The first time
an input partition emits in a process, the identities (entity, window, source
partition and offset) of the rows in those files are loaded, and a re-emitted
row with one of them is skipped. So the log never holds a row twice and never
loses one, whichever partitions or offsets the run resumes from.
"""

from __future__ import annotations

import json
import logging
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from freshet.features.definitions import FeatureView
from freshet.features.errors import OfflineStoreError
from freshet.features.log_store import LogRoot, open_log_root
from freshet.features.offline_layout import TS_TYPE, date_of, part_path, view_dir, view_schema
from freshet.pipelines.int64_arrays import INT64

if TYPE_CHECKING:
    from freshet.pipelines.tiles import EmittedValue

log = logging.getLogger(__name__)
DAY_MS = 86_400_000  # a log date's length (offline_layout.date_of)
MAX_OPEN_ROWS = 25_000  # per writer (a view's log): what a checkpoint rewrites at most besides its new rows
# a live writer's pending values are made Arrow batches every SEAL_ROWS values, between checkpoints: the
# conversion's cost is the same, but a checkpoint (which holds up the input) is left only the remainder
SEAL_ROWS = 4_096


@dataclass
class OpenPart:
    path: str
    first_offset: int
    opened_at: float
    pending: list[Any]  # rows added since the last checkpoint, column by column (ParquetLogWriter._columns)
    batches: list[pa.RecordBatch] = field(default_factory=list)  # rows already durable on disk
    written_rows: int = 0
    # rows added since the last checkpoint as Arrow batches already (before those in ``pending``)
    pending_batches: list[pa.RecordBatch] = field(default_factory=list)
    pending_batch_rows: int = 0

    @property
    def pending_rows(self) -> int:
        return len(self.pending[0]) + self.pending_batch_rows

    def add_batch(self, batch: pa.RecordBatch) -> None:
        """Rows as an Arrow batch, after those in ``pending_batches``: a writer seals ``pending``'s rows
        first (:meth:`ParquetLogWriter._seal`), so rows keep the order they came in."""
        self.pending_batches.append(batch)
        self.pending_batch_rows += batch.num_rows

    def clear_pending(self, columns: list[Any]) -> None:
        self.pending = columns
        self.pending_batches = []
        self.pending_batch_rows = 0

    @property
    def rows(self) -> int:
        return self.written_rows + self.pending_rows


class ParquetLogWriter:
    """Appends one view's emitted values to its offline log.

    Subclasses write another log of the view with the same guarantees (pipelines.accepted_sink):
    they set ``schema``, ``_dir``, ``identity_columns`` and ``_part_path``."""

    # a row's identity (unique in the log): entity, window_start, window_end, source_partition, source_offset
    identity_columns: tuple[int, ...] = (0, 2, 3, -3, -2)

    def __init__(self, root: LogRoot | str | Path, view: FeatureView, *, roll_rows: int = 100_000,
                 roll_seconds: float = 120.0, max_open_rows: int = MAX_OPEN_ROWS,
                 clock: Callable[[], float] = time.monotonic,
                 compression: str = "zstd") -> None:
        self.root = open_log_root(root)
        self.view = view
        self.schema = self._schema()
        self._roll_rows = roll_rows
        self._roll_seconds = roll_seconds
        if max_open_rows < 1:
            raise ValueError(f"max_open_rows {max_open_rows} is out of range: allowed 1 or more")
        self._max_open_rows = max_open_rows
        self._clock = clock
        self._compression = compression
        self._open: dict[tuple[int, int, str], OpenPart] = {}
        self._dir = self._directory()
        self._already_written: dict[int, set[tuple[Any, ...]]] = {}
        self._skipped = 0
        # non-null 64-bit columns (times, offsets) are kept as machine integers: no Python object per
        # value, and Arrow takes the buffer as it is at the checkpoint
        self._machine = [not f.nullable and f.type in (pa.int64(), TS_TYPE) for f in self.schema]
        # (input partition, partition, first and last ms of the date, part) of the last row added, while
        # that part is open and no earlier run's rows are checked on that input partition
        self._recent: tuple[int, int, int, int, OpenPart] | None = None
        self._features = max(0, len(self.schema) - 7)  # besides entity, 3 times, partition, offset, produced_at
        self._unsealed = 0  # values add_value took since the last seal or checkpoint

    def _schema(self) -> pa.Schema:
        return view_schema(self.view)

    def _directory(self) -> str:
        return view_dir(self.root, self.view)

    def _part_path(self, date: str, partition: int, first_offset: int) -> str:
        return part_path(self.root, self.view, date, partition, first_offset)

    def _columns(self) -> list[Any]:
        """Pending rows kept as the emitted values themselves and their production times, made into
        columns once per checkpoint (:meth:`_batch`): appending a value is one call, a row of columns
        took one per column."""
        return [[], array(INT64)]

    def add(self, row: tuple[Any, ...], input_partition: int, partition: int, offset: int,
            feature_ts: int) -> None:
        """``row`` holds the schema's columns in order (times as epoch ms); ``partition`` and
        ``offset`` are the source's, ``input_partition`` the one the windows read."""
        part = self._part(tuple(row[i] for i in self.identity_columns), input_partition, partition, offset, feature_ts)
        if part is not None:
            part.pending[0].append((0, row[0], row[1], row[2], row[3], row[4:-3], row[-3], row[-2]))  # as a value
            part.pending[1].append(row[-1])

    def add_value(self, value: EmittedValue, input_partition: int, produced_at: int | None = None) -> None:
        """One emitted value as a row (``add`` without building the row first), produced at ``produced_at``
        (epoch ms; None: now)."""
        partition, offset, ts = value.source_partition, value.source_offset, value.feature_ts
        part = self._row_part(input_partition, partition, offset, ts, value.entity, value.window_start,
                              value.window_end)
        if part is None:
            return
        pending = part.pending
        pending[0].append(value)
        pending[1].append(time.time_ns() // 1_000_000 if produced_at is None else produced_at)
        self._unsealed += 1
        if self._unsealed >= SEAL_ROWS:
            self._seal_all()

    def _seal_all(self) -> None:
        """Seal every open part's pending values (a re-keyed run spreads them over up to partitions^2 parts)."""
        for part in self._open.values():
            self._seal(part)
        self._unsealed = 0

    def _seal(self, part: OpenPart) -> None:
        """Make ``part``'s pending rows an Arrow batch now (they stay pending: durable at the checkpoint)."""
        if part.pending[0]:
            part.add_batch(self._batch(part.pending))
            part.pending = self._columns()

    def add_values(self, values: list[EmittedValue], produced_at: int) -> None:
        """``add_value`` for each of ``values`` in order, each read from its source partition (a replay), all
        produced at ``produced_at``: the previous row's part is checked inline, without a call per value."""
        recent = self._recent
        for value in values:
            partition, ts = value[6], value[2]
            if (recent is not None and recent[0] == partition and recent[1] == partition
                    and recent[2] <= ts < recent[3]):
                pending = recent[4].pending
            else:
                part = self._row_part(partition, partition, value[7], ts, value[1], value[3], value[4])
                recent = self._recent
                if part is None:
                    continue
                pending = part.pending
            pending[0].append(value)
            pending[1].append(produced_at)

    def _row_part(self, input_partition: int, partition: int, offset: int, ts: int, entity: Any, a: Any,
                  b: Any) -> OpenPart | None:
        """``_part`` for a row of identity ``(entity, a, b, partition, offset)`` dated ``ts``, without
        building the identity while rows keep going to the part of the previous one."""
        recent = self._recent
        if (recent is not None and recent[0] == input_partition and recent[1] == partition
                and recent[2] <= ts < recent[3]):
            return recent[4]  # the part of the previous row: same partitions, same date
        part = self._part((entity, a, b, partition, offset), input_partition, partition, offset, ts)
        if part is not None and not self._already_written[input_partition]:  # no earlier run's rows here
            day = ts - ts % DAY_MS
            self._recent = (input_partition, partition, day, day + DAY_MS, part)
        return part

    def _part(self, identity: tuple[Any, ...], input_partition: int, partition: int, offset: int,
              feature_ts: int) -> OpenPart | None:
        """The open part a row goes to, or None for a row the run before a crash wrote already."""
        seen = self._already_written_on(input_partition)
        if seen and identity in seen:
            self._skipped += 1  # written by the run before a crash, emitted again now
            return None
        return self._open_part(input_partition, partition, offset, feature_ts)

    def _already_written_on(self, input_partition: int) -> set[tuple[Any, ...]]:
        """The identities of the rows an earlier run flushed last from ``input_partition`` (loaded once)."""
        seen = self._already_written.get(input_partition)
        if seen is None:
            seen = self._already_written[input_partition] = self._load_last_flush(input_partition)
        return seen

    def _open_part(self, input_partition: int, partition: int, offset: int, feature_ts: int) -> OpenPart:
        """The open part for rows of ``partition`` dated ``feature_ts`` (opened, named by ``offset``, if none)."""
        date = date_of(feature_ts)
        part = self._open.get((input_partition, partition, date))
        if part is None:
            part = OpenPart(self._part_path(date, partition, offset), offset, self._clock(),
                            self._columns())
            self._open[(input_partition, partition, date)] = part
        return part

    def _batch(self, pending: list[Any]) -> pa.RecordBatch:
        """The pending values (:meth:`_columns`) as an Arrow batch: transposed in C (``zip``)."""
        values, produced_at = pending
        if not values:
            return self._arrow_batch([array(INT64) if machine else [] for machine in self._machine])
        _view, entities, feature_ts, starts, ends, features, partitions, offsets = zip(*values, strict=True)
        by_feature = list(zip(*features, strict=True)) if self._features else []
        lists: list[Any] = [entities, feature_ts, starts, ends, *by_feature, partitions, offsets]
        return self._arrow_batch([*(array(INT64, c) if machine else list(c)
                                    for c, machine in zip(lists, self._machine, strict=False)), produced_at])

    def _arrow_batch(self, columns: list[Any]) -> pa.RecordBatch:
        """Columns in schema order (machine integer arrays where ``_machine`` says) as an Arrow batch."""
        return pa.RecordBatch.from_arrays(
            [machine_array(f.type, c) if machine else pa.array(c, type=f.type)
             for c, f, machine in zip(columns, self.schema, self._machine, strict=True)],
            schema=self.schema)

    def checkpoint(self) -> int:
        """Make every changed open part durable; close parts that are full or old. Returns rows written."""
        written = 0
        now = self._clock()
        self._recent = None  # parts may close
        self._unsealed = 0
        touched: dict[int, list[str]] = {}
        for key, part in list(self._open.items()):
            new_rows = part.pending_rows
            if new_rows:
                touched.setdefault(key[0], []).append(part.path)
                written += new_rows
                # only the new rows are converted; earlier ones stay as Arrow batches
                part.batches += part.pending_batches
                if part.pending[0]:
                    part.batches.append(self._batch(part.pending))
                self._write(part.path, pa.Table.from_batches(part.batches, schema=self.schema))
                part.written_rows += new_rows
                part.clear_pending(self._columns())
            if part.rows >= self._roll_rows or now - part.opened_at >= self._roll_seconds:
                del self._open[key]
        self._close_largest()
        for input_partition, paths in touched.items():
            self._record_last_flush(input_partition, paths)
        return written

    def _close_largest(self) -> None:
        """Close the largest open parts (all durable now) while they hold more than ``max_open_rows``,
        down to half of it: the next checkpoints rewrite less."""
        open_rows = sum(part.rows for part in self._open.values())
        if open_rows <= self._max_open_rows:
            return
        for part_key, part in sorted(self._open.items(), key=lambda item: -item[1].rows):
            if open_rows <= self._max_open_rows // 2:
                break
            open_rows -= part.rows
            del self._open[part_key]

    def discard_uncommitted(self) -> None:
        """Forget rows added since the last checkpoint (the input is being rewound)."""
        self._recent = None
        self._unsealed = 0
        for key, part in list(self._open.items()):
            if part.written_rows == 0:
                del self._open[key]
            else:
                part.clear_pending(self._columns())

    def _write(self, path: str, table: pa.Table) -> None:
        self.root.write_parquet(path, table, compression=self._compression)

    def _manifest(self, input_partition: int) -> str:
        return f"{self._dir}/_last_flush-{input_partition}.json"

    def _record_last_flush(self, input_partition: int, paths: list[str]) -> None:
        prefix = self._dir + "/"
        self.root.write_text(self._manifest(input_partition),
                             json.dumps({"files": [p.removeprefix(prefix) for p in paths]}))

    def _load_last_flush(self, input_partition: int) -> set[tuple[Any, ...]]:
        """Identities of the rows an earlier run flushed last from this input partition."""
        manifest = self._manifest(input_partition)
        if not self.root.is_file(manifest):
            return set()
        try:
            files = json.loads(self.root.read_text(manifest))["files"]
        except (ValueError, KeyError) as exc:
            raise OfflineStoreError(f"{self.root.display(manifest)} is damaged ({exc}); delete it to "
                                    "continue") from exc
        seen: set[tuple[Any, ...]] = set()
        for name in files:
            path = f"{self._dir}/{name}"
            if not self.root.is_file(path):
                continue
            table = self.root.read_parquet(path, schema=self.schema)
            columns = [table.column(i if i >= 0 else table.num_columns + i).to_pylist()
                       for i in self.identity_columns]
            for ident in zip(*columns, strict=True):
                seen.add(tuple(_epoch_ms(v) for v in ident))
        log.info("%s: %d row(s) from the last flush of a previous run on input partition %d will "
                 "not be written twice", self.view.name, len(seen), input_partition)
        return seen

    @property
    def skipped(self) -> int:
        return self._skipped



def machine_array(arrow_type: pa.DataType, values: array[int]) -> pa.Array:
    """A non-null 64-bit column (an integer or a time) of machine integers: Arrow takes their buffer as
    it is, with no Python object per value."""
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def _epoch_ms(value: Any) -> Any:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else value
