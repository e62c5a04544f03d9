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
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from freshet.features.as_of_layout import accepted_dir, accepted_schema, read_columns
from freshet.pipelines.offline_sink import ParquetLogWriter

if TYPE_CHECKING:
    from freshet.pipelines.tiles import AcceptedRecord


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
        return [[], array("q")]

    def _batch(self, columns: list[Any]) -> pa.RecordBatch:
        records, produced_at = columns
        lists: list[Any] = [[r[1] for r in records], [r[2] for r in records], [r[3] for r in records],
                            *([r[4].get(c) for r in records] for c in self._read),
                            [r[5] for r in records], [r[6] for r in records]]
        arrays = [array("q", c) if machine else c for c, machine in zip(lists, self._machine, strict=False)]
        return super()._batch([*arrays, produced_at])

    def add(self, row: tuple[Any, ...], input_partition: int, partition: int, offset: int,
            feature_ts: int) -> None:
        raise TypeError("the accepted-event log takes the operator's records: use add_accepted")

    def add_accepted(self, record: AcceptedRecord, input_partition: int) -> None:
        """One accepted event as a row, produced now (the fast path of ``add``, as ``add_value`` is)."""
        partition, offset, ts = record[5], record[6], record[2]
        part = self._row_part(input_partition, partition, offset, ts, record[1], ts, ts)
        if part is None:
            return
        pending = part.pending
        pending[0].append(record)
        pending[1].append(time.time_ns() // 1_000_000)
