"""The accepted-events log of a request-time view: what its training sets are answered from.

Layout and schema: :mod:`freshet.features.as_of_layout`. The writer is the values log's
(:class:`~freshet.pipelines.offline_sink.ParquetLogWriter`) with another schema, directory and row
identity, so it keeps the same guarantees: parts renamed into place at each checkpoint before offsets
are committed, named by source offsets, and no row written twice after a crash (a record the run
before the crash had flushed is recognised by (entity, event time, source partition and offset)).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

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

    def add_accepted(self, record: AcceptedRecord, input_partition: int) -> None:
        """One accepted event as a row, produced now (the fast path of ``add``, as ``add_value`` is)."""
        _view, entity, ts, first_start, event, partition, offset = record
        part = self._row_part(input_partition, partition, offset, ts, entity, ts, ts)
        if part is None:
            return
        columns = part.pending
        columns[0].append(entity)
        columns[1].append(ts)
        columns[2].append(first_start)
        i = 2
        for i, column in enumerate(self._read, 3):
            columns[i].append(event.get(column))
        columns[i + 1].append(partition)
        columns[i + 2].append(offset)
        columns[i + 3].append(time.time_ns() // 1_000_000)
