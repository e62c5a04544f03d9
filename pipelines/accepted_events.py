"""The events request-time views counted, as the operator hands them over: shared rows, one column per view.

A request-time view (``as_of: request``) logs every event it counted with the earliest window it
counts in (its *first start*). Most events count in every such view, so the event's part of a record
(entity, time, the event, its source position) is kept once, in :attr:`AcceptedEvents.rows`, and
each request-time view adds one integer per applied event to its own column of first starts:
:data:`NOT_COUNTED` where the event counted in none of its windows. Per event and view that is one
append of a machine integer, instead of a record built, queued and routed per view.

Both shapes come out of it: :meth:`AcceptedEvents.take_records` gives :class:`AcceptedRecord` tuples,
:meth:`AcceptedEvents.take` the columns themselves (the accepted-event logs turn them into Arrow
columns once per flush: :mod:`freshet.pipelines.accepted_columns`).

The live run also keeps each event's input partition (:meth:`AcceptedEvents.track_inputs`: the
partition the operator read, which the log's parts go by) and leaves the events here between
checkpoints: the Redis writer's thread takes what has come so far before each batch it sends, and the
checkpoint the rest (:meth:`AcceptedEvents.take_ready`). The operator's thread appends without a lock:
an event's first starts first, then its row, then its input partition, so the events counted on the
column appended last are whole in every column.
"""

from __future__ import annotations

from array import array
from functools import partial
from typing import Any, NamedTuple

from freshet.pipelines.int64_arrays import INT64

NOT_COUNTED = -(2**63)  # a first start meaning: the event counted in none of the view's windows


class AcceptedRecord(NamedTuple):
    """An event a request-time view (``as_of: request``) counted: what its as-of reads are answered from."""

    view: int
    entity: Any
    ts: int
    first_start: int  # the earliest window start it counts in (sliding views: its own time)
    event: dict[str, Any]
    source_partition: int
    source_offset: int


new_accepted_record = partial(tuple.__new__, AcceptedRecord)  # an AcceptedRecord from one tuple, without a Python call

AcceptedRow = tuple[Any, int, dict[str, Any], int, int]  # entity, event time, event, source partition, offset


class AcceptedEvents:
    """Per applied event, ``rows[i]``; per request-time view ``v``, ``firsts[v][i]`` (None for other views)."""

    def __init__(self, request_time: list[bool]) -> None:
        self.rows: list[AcceptedRow] = []
        self.firsts: list[array[int] | None] = [array(INT64) if r else None for r in request_time]
        self._columns = [(v, f) for v, f in enumerate(self.firsts) if f is not None]
        self.inputs: array[int] | None = None  # per row, its input partition (track_inputs)
        self.first_at = 0.0  # when the oldest row still here arrived (the live run's clock; track_inputs)

    def track_inputs(self) -> array[int]:
        """Keep an input partition per row from now on (the caller appends it after each row); returns the
        column."""
        if self.rows:
            raise ValueError(f"track_inputs() on a holder that already has {len(self.rows)} rows")
        self.inputs = array(INT64)
        return self.inputs

    def take_ready(self) -> AcceptedEvents | None:
        """The events whole so far (counted on the input partitions, appended last) as a new holder,
        removed from this one; None when there are none. Events the operator's thread appends meanwhile
        stay here. Callers that take must not run at the same time (the live run's outputs lock them)."""
        inputs = self.inputs
        if inputs is None:
            raise ValueError("take_ready() needs track_inputs() first")
        # read before counting: an event the operator's thread appends once the holder is empty sets a
        # newer time, which must not be given to the events taken here
        first_at = self.first_at
        n = len(inputs)
        if not n:
            return None
        out = AcceptedEvents([f is not None for f in self.firsts])
        out.rows = self.rows[:n]
        del self.rows[:n]
        for v, firsts in self._columns:
            taken = out.firsts[v]
            if taken is not None:
                taken.extend(firsts[:n])
                del firsts[:n]
        out.inputs = inputs[:n]
        del inputs[:n]
        out.first_at = first_at
        return out

    def take(self) -> AcceptedEvents:
        """The events since the last take, as a new holder; this one is emptied (the views keep
        appending to the same columns)."""
        out = AcceptedEvents([f is not None for f in self.firsts])
        out.rows = self.rows.copy()
        for v, firsts in self._columns:
            taken = out.firsts[v]
            if taken is not None:  # extended in place: out._columns holds the same arrays
                taken.extend(firsts)
        if self.inputs is not None:
            out.inputs = self.inputs[:]
        self.clear()
        return out

    @property
    def columns(self) -> list[tuple[int, array[int]]]:
        """``(view, its first starts)`` of each request-time view."""
        return self._columns

    def records(self) -> list[AcceptedRecord]:
        """One record per (event, view that counted it), in arrival order, then view order."""
        out: list[AcceptedRecord] = []
        columns = self._columns
        for i, (entity, ts, event, partition, offset) in enumerate(self.rows):
            for v, firsts in columns:
                first = firsts[i]
                if first != NOT_COUNTED:
                    out.append(new_accepted_record((v, entity, ts, first, event, partition, offset)))
        return out

    def take_records(self) -> list[AcceptedRecord]:
        """:meth:`records` since the last take; empties the holder."""
        out = self.records()
        self.clear()
        return out

    def clear(self) -> None:
        self.rows.clear()
        for _v, firsts in self._columns:
            del firsts[:]
        if self.inputs is not None:
            del self.inputs[:]
