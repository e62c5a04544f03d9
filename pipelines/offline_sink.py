"""The Parquet offline log writer: durable at every checkpoint, no duplicates after a crash.

Rows are kept per (source partition, date) in an *open part* named by its first
source offset. At each checkpoint, before offsets are committed, every open part
that changed is written whole to a temporary name and renamed over
``part-<partition>-<first offset>.parquet``; a part is closed (dropped from
memory) once it holds ``roll_rows`` rows or is ``roll_seconds`` old, so a long
run makes few, large files.

After a crash the pipeline reprocesses from the last committed offset and,
being deterministic, emits again exactly the rows whose source offset is at or
after the first row it emits now. So the first time a source partition shows
up in this process, rows at or after that offset are removed from the files
already on disk: the log never holds a row twice and never loses one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.definitions import FeatureView
from features.errors import OfflineStoreError
from features.offline_layout import date_of, list_parts, part_path, view_schema

log = logging.getLogger(__name__)


@dataclass
class OpenPart:
    path: Path
    first_offset: int
    opened_at: float
    columns: list[list[Any]]
    written_rows: int = 0  # rows already durable in the file on disk
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.columns[0])


class ParquetLogWriter:
    """Appends one view's emitted values to its offline log."""

    def __init__(self, root: Path, view: FeatureView, *, roll_rows: int = 200_000,
                 roll_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 compression: str = "zstd") -> None:
        self.root = Path(root)
        self.view = view
        self.schema = view_schema(view)
        self._roll_rows = roll_rows
        self._roll_seconds = roll_seconds
        self._clock = clock
        self._compression = compression
        self._open: dict[tuple[int, str], OpenPart] = {}
        self._recovered: set[int] = set()

    def add(self, row: tuple[Any, ...], partition: int, offset: int, feature_ts: int) -> None:
        """``row`` holds the schema's columns in order (times as epoch ms)."""
        if partition not in self._recovered:
            self._recover(partition, offset)
        date = date_of(feature_ts)
        part = self._open.get((partition, date))
        if part is None:
            part = OpenPart(
                part_path(self.root, self.view, date, partition, offset), offset, self._clock(),
                [[] for _ in self.schema],
            )
            self._open[(partition, date)] = part
        for column, value in zip(part.columns, row, strict=True):
            column.append(value)

    def checkpoint(self) -> int:
        """Make every changed open part durable; close parts that are full or old. Returns rows written."""
        written = 0
        now = self._clock()
        for key, part in list(self._open.items()):
            if part.rows > part.written_rows:
                written += part.rows - part.written_rows
                self._write(part.path, pa.Table.from_arrays(
                    [pa.array(c, type=f.type) for c, f in zip(part.columns, self.schema, strict=True)],
                    schema=self.schema,
                ))
                part.written_rows = part.rows
            if part.rows >= self._roll_rows or now - part.opened_at >= self._roll_seconds:
                del self._open[key]
        return written

    def discard_uncommitted(self) -> None:
        """Forget rows added since the last checkpoint (the input is being rewound)."""
        for key, part in list(self._open.items()):
            if part.written_rows == 0:
                del self._open[key]
            else:
                for column in part.columns:
                    del column[part.written_rows:]

    def _write(self, path: Path, table: pa.Table) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            pq.write_table(table, tmp, compression=self._compression)
            os.replace(tmp, path)
        except OSError as exc:
            raise OfflineStoreError(f"cannot write {path}: {exc}") from exc

    def _recover(self, partition: int, first_offset: int) -> None:
        """Remove rows at or after ``first_offset`` that an interrupted run left behind."""
        self._recovered.add(partition)
        for path in list_parts(self.root, self.view, partition):
            if _max_offset(path) < first_offset:
                continue
            table = pq.read_table(path, schema=self.schema)
            keep = table.filter(pc.less(table["source_offset"], first_offset))
            log.info("recovery: %s keeps %d of %d rows (offsets before %d)", path, keep.num_rows,
                     table.num_rows, first_offset)
            if keep.num_rows == 0:
                path.unlink()
            else:
                self._write(path, keep)


def _max_offset(path: Path) -> int:
    meta = pq.ParquetFile(path).metadata
    index = meta.schema.to_arrow_schema().get_field_index("source_offset")
    best = -1
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(index).statistics
        if stats is None or not stats.has_min_max:
            return 1 << 62  # unknown: treat as possibly overlapping
        best = max(best, int(stats.max))
    return best
