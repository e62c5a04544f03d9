"""The accepted events of a flush as Arrow columns, built once and shared by every request-time view's log.

The replay driver hands the operator's :class:`~freshet.pipelines.accepted_events.AcceptedEvents`
over in chunks (one per ``consume`` batch, each with the time it was produced). At the flush they
are joined and turned into Arrow arrays here: the entity, event time, source position and each
column a view reads are converted once, whichever views log the event, and each view's log takes
slices of them with its own first starts (:meth:`AcceptedColumns.batches`). The rows are split
into runs of one source partition and one date (a log part each) once, too.

Before, each view's writer built every row of its own from a record: three times the Python work
for the three request-time views of the example repository.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import repeat
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from freshet.pipelines.accepted_events import NOT_COUNTED, AcceptedEvents, AcceptedRow
from freshet.pipelines.int64_arrays import INT64
from freshet.pipelines.offline_sink import DAY_MS, machine_array


class AcceptedColumns:
    """The rows of several :class:`AcceptedEvents` chunks, in order, with their production times."""

    def __init__(self, chunks: list[tuple[AcceptedEvents, int]]) -> None:
        """``chunks``: (events, produced at in epoch ms), in the order they were taken."""
        rows: list[AcceptedRow] = []
        produced = array(INT64)
        inputs: array[int] | None = array(INT64)
        for events, produced_at in chunks:
            rows += events.rows
            produced += array(INT64, [produced_at]) * len(events.rows)
            if inputs is not None and events.inputs is not None:
                inputs += events.inputs
            else:  # a chunk without input partitions (a replay's): each row's is its source partition
                inputs = None
        self.size = len(rows)
        self._firsts = [[events.firsts[v] for events, _t in chunks] for v in range(len(chunks[0][0].firsts))] \
            if chunks else []
        entities, times, events_, partitions, offsets = zip(*rows, strict=True) if rows else ((),) * 5
        self.entities: tuple[Any, ...] = entities
        self.times = array(INT64, times)
        self.events: tuple[dict[str, Any], ...] = events_
        self.partitions: tuple[int, ...] = partitions
        self.offsets = array(INT64, offsets)
        self.produced_at = produced
        self._partition_array = pa.array(partitions, type=pa.int64())
        # per row, the partition the operator read it from: the live run's (the source's, or the
        # repartition topic's), or a replay's (its source partition)
        self.inputs: tuple[int, ...] | array[int] = partitions
        input_array = None
        if inputs is not None and rows:
            self.inputs, input_array = inputs, machine_array(pa.int64(), inputs)
        self.runs = _runs(self._partition_array, self.times, input_array)
        self._arrays: dict[tuple[str, pa.DataType], pa.Array] = {}

    def firsts(self, view: int) -> array[int]:
        """A view's first starts over every row (NOT_COUNTED where it counted the event nowhere)."""
        out = array(INT64)
        for firsts in self._firsts[view]:
            if firsts is None:
                raise ValueError(f"view {view} is not a request-time view: it has no accepted events")
            out += firsts
        return out

    def array_of(self, name: str, kind: str, arrow_type: pa.DataType) -> pa.Array:
        """The whole column ``name`` as Arrow: ``kind`` is ``entity``, ``event_ts``, ``partition``,
        ``offset``, ``produced_at`` or ``column`` (an event field). Built once per flush, whichever views ask."""
        cached = self._arrays.get((name, arrow_type))
        if cached is not None:
            return cached
        if kind == "event_ts":
            made = machine_array(arrow_type, self.times)
        elif kind == "offset":
            made = machine_array(arrow_type, self.offsets)
        elif kind == "produced_at":
            made = machine_array(arrow_type, self.produced_at)
        elif kind == "entity":
            made = pa.array(self.entities, type=arrow_type)
        elif kind == "partition":
            made = self._partition_array.cast(arrow_type)
        else:  # dict.get mapped over the events: no Python frame per event
            made = pa.array(list(map(dict.get, self.events, repeat(name))), type=arrow_type)
        self._arrays[(name, arrow_type)] = made
        return made


class CountedRows:
    """Which rows of a flush a view counted (its first start is not NOT_COUNTED), found once per view."""

    def __init__(self, firsts: array[int]) -> None:
        self.firsts = firsts
        counted = pc.not_equal(machine_array(pa.int64(), firsts), NOT_COUNTED)
        self.mask = counted
        self._skipped = pc.indices_nonzero(pc.invert(counted)).to_pylist()  # sorted, usually few

    def all_counted(self, lo: int, hi: int) -> bool:
        i = bisect_left(self._skipped, lo)
        return i == len(self._skipped) or self._skipped[i] >= hi

    def rows(self, lo: int, hi: int) -> list[int]:
        """The indices in ``lo:hi`` of the rows counted."""
        firsts = self.firsts
        return [i for i in range(lo, hi) if firsts[i] != NOT_COUNTED]

    def first(self, lo: int, hi: int) -> int | None:
        """The first row counted in ``lo:hi``, or None."""
        i = bisect_left(self._skipped, lo)
        row = lo
        while row < hi and i < len(self._skipped) and self._skipped[i] == row:
            row += 1
            i += 1
        return row if row < hi else None


def _runs(partitions: pa.Array, times: array[int], inputs: pa.Array | None = None) -> list[tuple[int, int]]:
    """``(lo, hi)`` of each run of rows with one source partition, one date and (``inputs``) one input
    partition, in order (the rows where any changes are found with Arrow compute: event times are never
    negative)."""
    n = len(partitions)
    if n == 0:
        return []
    days = pc.divide(machine_array(pa.int64(), times), DAY_MS)
    changed = pc.or_(pc.not_equal(partitions[1:], partitions[:-1]), pc.not_equal(days[1:], days[:-1]))
    if inputs is not None:
        changed = pc.or_(changed, pc.not_equal(inputs[1:], inputs[:-1]))
    starts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist())]
    return list(zip(starts, [*starts[1:], n], strict=True))
