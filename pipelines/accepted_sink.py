"""The accepted-events log of a request-time view: what its training sets are answered from.

Layout and schema: :mod:`freshet.features.as_of_layout`. The writer is the values log's
(:class:`~freshet.pipelines.offline_sink.ParquetLogWriter`) with another schema, directory and row
identity, so it keeps the same guarantees: parts renamed into place at each checkpoint before offsets
are committed, named by source offsets, and no row written twice after a crash (a record the run
before the crash had flushed is recognised by (entity, event time, source partition and offset)).
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from freshet.features.as_of_layout import accepted_dir, accepted_schema, read_columns
from freshet.pipelines.accepted_columns import AcceptedColumns, CountedRows
from freshet.pipelines.int64_arrays import INT64
from freshet.pipelines.offline_sink import DAY_MS, ParquetLogWriter, machine_array

if TYPE_CHECKING:
    from freshet.pipelines.accepted_events import AcceptedRecord


class AcceptedLogWriter(ParquetLogWriter):
    """Appends the events one request-time view counted to ``<root>/_accepted/<view>/v<version>``."""

    identity_columns = (0, 1, 1, -3, -2)  # entity, event_ts (twice: the shape of a value's), source position

    def _schema(self) -> pa.Schema:
        self._read = read_columns(self.view)
        return accepted_schema(self.view)

    def _directory(self) -> str:
        return accepted_dir(self.root, self.view)

    def _part_path(self, date: str, partition: int, first_offset: int) -> str:
        return f"{self._dir}/date={date}/part-{partition}-{first_offset}.parquet"

    def _columns(self) -> list[Any]:
        """Pending rows kept as the operator's records and their production times, made into columns
        once per checkpoint (appending a record is one call; a row of columns took ten)."""
        return [[], array(INT64)]

    def _batch(self, columns: list[Any]) -> pa.RecordBatch:
        records, produced_at = columns
        if not records:
            return self._arrow_batch([array(INT64) if machine else [] for machine in self._machine])
        # one transposition in C: (view, entity, ts, first start, event, partition, offset) as columns
        _view, entities, times, firsts, events, partitions, offsets = zip(*records, strict=True)
        lists: list[Any] = [list(entities), times, firsts, *([e.get(c) for e in events] for c in self._read),
                            list(partitions), offsets]
        arrays = [array(INT64, c) if machine else c for c, machine in zip(lists, self._machine, strict=False)]
        return self._arrow_batch([*arrays, produced_at])

    def add(self, row: tuple[Any, ...], input_partition: int, partition: int, offset: int,
            feature_ts: int) -> None:
        raise TypeError("the accepted-event log takes the operator's records: use add_records")

    def add_accepted(self, record: AcceptedRecord, input_partition: int) -> None:
        """One accepted event as a row, produced now."""
        self.add_records([record], array(INT64, [time.time_ns() // 1_000_000]), input_partition)

    def add_records(self, records: Sequence[AcceptedRecord], produced_at: Sequence[int],
                    input_partition: int) -> None:
        """This view's accepted events read from ``input_partition``, in arrival order, with the times
        they were produced (epoch ms). Records the run before a crash flushed already are skipped.

        Runs of records from one source partition and date go to their open part in one step: a record
        costs a comparison here, and its columns are built at the checkpoint (``_batch``)."""
        seen = self._already_written_on(input_partition)
        if seen:
            keep = [i for i, r in enumerate(records) if (r[1], r[2], r[2], r[5], r[6]) not in seen]
            self._skipped += len(records) - len(keep)
            records, produced_at = [records[i] for i in keep], [produced_at[i] for i in keep]
        n = len(records)
        i = 0
        while i < n:
            first = records[i]
            partition, ts = first[5], first[2]
            day = ts - ts % DAY_MS
            end = day + DAY_MS
            j = i + 1
            while j < n:
                record = records[j]
                if record[5] != partition or record[2] < day or record[2] >= end:
                    break
                j += 1
            pending = self._open_part(input_partition, partition, first[6], ts).pending
            if i == 0 and j == n:
                pending[0].extend(records)
                pending[1].extend(produced_at)
            else:
                pending[0].extend(records[i:j])
                pending[1].extend(produced_at[i:j])
            i = j

    def add_columns(self, columns: AcceptedColumns, view: int) -> None:
        """The accepted events of view ``view`` among ``columns`` (each with the partition it was read
        from: ``columns.inputs``), in arrival order. Each run of one input partition, source partition
        and date goes to its open part as one Arrow batch of slices of the shared columns; rows the run
        before a crash flushed already are skipped."""
        if not columns.size:
            return
        firsts = columns.firsts(view)
        fields = self.schema
        arrays = [columns.array_of(fields[0].name, "entity", fields[0].type),
                  columns.array_of(fields[1].name, "event_ts", fields[1].type),
                  machine_array(fields[2].type, firsts),
                  *(columns.array_of(f.name, "column", f.type) for f in list(fields)[3:-3]),
                  columns.array_of(fields[-3].name, "partition", fields[-3].type),
                  columns.array_of(fields[-2].name, "offset", fields[-2].type),
                  columns.array_of(fields[-1].name, "produced_at", fields[-1].type)]
        whole = pa.RecordBatch.from_arrays(arrays, schema=fields)
        counted = CountedRows(firsts)
        entities, times, partitions, offsets = columns.entities, columns.times, columns.partitions, columns.offsets
        inputs = columns.inputs
        for lo, hi in columns.runs:
            partition, input_partition = partitions[lo], inputs[lo]
            seen = self._already_written_on(input_partition)
            if seen:  # after a crash: skip the rows the run before it flushed last
                mine = counted.rows(lo, hi)
                rows = [i for i in mine if (entities[i], times[i], times[i], partition, offsets[i]) not in seen]
                self._skipped += len(mine) - len(rows)
                if not rows:
                    continue
                batch, first = whole.take(pa.array(rows, type=pa.int64())), rows[0]
            elif counted.all_counted(lo, hi):
                batch, first = whole.slice(lo, hi - lo), lo
            else:
                found = counted.first(lo, hi)
                if found is None:
                    continue
                batch, first = whole.slice(lo, hi - lo).filter(counted.mask.slice(lo, hi - lo)), found
            part = self._open_part(input_partition, partition, offsets[first], times[first])
            self._seal(part)
            part.add_batch(batch)
