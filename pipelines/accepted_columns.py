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
from typing import Any

import pyarrow as pa

from freshet.pipelines.accepted_events import NOT_COUNTED, AcceptedEvents, AcceptedRow
from freshet.pipelines.offline_sink import DAY_MS, machine_array


class AcceptedColumns:
    """The rows of several :class:`AcceptedEvents` chunks, in order, with their production times."""

    def __init__(self, chunks: list[tuple[AcceptedEvents, int]]) -> None:
        """``chunks``: (events, produced at in epoch ms), in the order they were taken."""
        rows: list[AcceptedRow] = []
        produced = array("q")
        for events, produced_at in chunks:
            rows += events.rows
            produced += array("q", [produced_at]) * len(events.rows)
        self.size = len(rows)
        self._firsts = [[events.firsts[v] for events, _t in chunks] for v in range(len(chunks[0][0].firsts))] \
            if chunks else []
        entities, times, events_, partitions, offsets = zip(*rows, strict=True) if rows else ((),) * 5
        self.entities: tuple[Any, ...] = entities
        self.times = array("q", times)
        self.events: tuple[dict[str, Any], ...] = events_
        self.partitions: tuple[int, ...] = partitions
        self.offsets = array("q", offsets)
        self.produced_at = produced
        self.runs = _runs(self.partitions, self.times)
        self._arrays: dict[tuple[str, pa.DataType], pa.Array] = {}

    def firsts(self, view: int) -> array[int]:
        """A view's first starts over every row (NOT_COUNTED where it counted the event nowhere)."""
        out = array("q")
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
            made = pa.array(self.partitions, type=arrow_type)
        else:
            made = pa.array([e.get(name) for e in self.events], type=arrow_type)
        self._arrays[(name, arrow_type)] = made
        return made


def counted_rows(firsts: array[int], lo: int, hi: int) -> list[int] | None:
    """Indices in ``lo:hi`` of the rows a view counted, or None when it counted all of them."""
    if NOT_COUNTED not in firsts[lo:hi]:
        return None
    return [i for i in range(lo, hi) if firsts[i] != NOT_COUNTED]


def _runs(partitions: tuple[int, ...], times: array[int]) -> list[tuple[int, int]]:
    """``(lo, hi)`` of each run of rows with one source partition and one date, in order."""
    runs: list[tuple[int, int]] = []
    n = len(partitions)
    lo = 0
    while lo < n:
        partition, ts = partitions[lo], times[lo]
        day = ts - ts % DAY_MS
        end = day + DAY_MS
        hi = lo + 1
        while hi < n and partitions[hi] == partition and day <= times[hi] < end:
            hi += 1
        runs.append((lo, hi))
        lo = hi
    return runs

