"""Sliding windows of one view: the accepted events still inside the longest window asked for.

Rules, per key (the same as Quix Streams 3.28's sliding windows where those are
self-consistent; the README lists the two corrections). A sliding window of
``size`` S ends at each accepted event's time ``t`` and holds the events with time
in ``[max(0, t - S), t]``, both ends inclusive. The watermark ``W`` is the largest
event time read. For an event at ``ts``, with ``W' = max(W, ts)``, a window is closed
when its start is at or before ``W' - grace - 1 - S``:

- if even the event's own window would be closed there (``ts <= W' - grace - 1 - S``)
  the event is late for it (``late_by = W' - grace - ts``) and counts nowhere;
- otherwise it counts in every open window that contains it, and is reported late
  for every closed window (ending at an earlier event's time) that contains it. Its
  own window is created, holding every accepted event in its range; if that window
  ended at an earlier event's time and is closed, the event is late for it instead.

``current`` emits the own window on each event (``feature_ts`` = the event's time);
``final`` emits each window once, when it closes (``feature_ts`` = its end), in
order of (start, end), with the source position of the event that closed it.

View state: ``[W, close line, events, queue]``, events ``[ts, *column values, front]`` sorted by
time (ties in arrival order), keeping those later than ``W - grace - 1 - 2S``: the
oldest a window still to be asked for can reach. A window's value is folded from
the events in its range through a queue (see ``_value``).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from functools import partial
from operator import itemgetter
from typing import Any

from freshet.features.definitions import FeatureView
from freshet.pipelines.accepted_events import NOT_COUNTED
from freshet.pipelines.folds import compile_add, compile_tally
from freshet.pipelines.sliding_step import sliding_step_code
from freshet.pipelines.step_code import StepCode, step_function
from freshet.pipelines.tiles import EmittedValue, FoldPlan, LateReport

NEVER = -(2**62)


_time = itemgetter(0)  # an event row's time: the key the events list is sorted by
_new_value = partial(tuple.__new__, EmittedValue)  # EmittedValue from one tuple, without a Python-level call


def _row_builder(columns: list[str]) -> Any:
    """``row(event, ts)``: ``[ts, *values of columns, None]``, as one compiled expression."""
    text = "lambda event, ts: [ts, " + "".join(f"event.get({c!r}), " for c in columns) + "None]"
    return eval(text)  # noqa: S307 - built from the view's column names, repr-quoted


def _counts_builder(n: int, multi: list[tuple[int, int, int]], row_counts: list[int]) -> Any:
    """``counts(multisets, rows)``: a results list with each count_distinct's multiset size and each bare
    count's number of rows (other results None), as one compiled expression."""
    items = ["None"] * n
    for k, i, _s in multi:
        items[i] = f"len(multisets[{k}])"
    for i in row_counts:
        items[i] = "rows"
    return eval("lambda multisets, rows: [" + ", ".join(items) + "]")  # noqa: S307 - built from indices only


class SlidingWindows:
    process: Callable[[list[Any], Any, dict[str, Any], int, int, int, list[EmittedValue], list[LateReport]], None]

    def __init__(self, index: int, view: FeatureView, firsts: array[int] | None = None) -> None:
        """``firsts``: for a request-time view, where each applied event's first start goes."""
        self.index = index
        self.size = view.window.size
        self.grace = view.grace
        self.final = view.emit == "final"
        self.plan = FoldPlan(view)
        # the columns an event keeps: each aggregation's column (None for a bare count)
        self.columns = sorted({c for c in self.plan.columns if c is not None})
        slot = {c: i + 1 for i, c in enumerate(self.columns)}
        self._front = len(self.columns) + 1  # a row's slot for its front-stack aggregate
        # count_distinct aggregations, as (position, aggregation index, row slot)
        self.multi = [(k, i, slot[c]) for k, (i, c) in enumerate(
            (i, c) for i, (c, fn) in enumerate(zip(self.plan.columns, self.plan.fns, strict=True))
            if fn.name == "count_distinct" and c is not None)]
        multi = {i for _k, i, _s in self.multi}
        # a bare count is the number of rows in the window: no fold needed
        self.row_counts = [i for i, (c, fn) in enumerate(zip(self.plan.columns, self.plan.fns, strict=True))
                            if fn.name == "count" and c is None]
        multi |= set(self.row_counts)
        self.stacked = len(multi) < len(self.plan.fns)  # anything that needs the two-stack queue
        self._add_row_into = compile_add(self.plan.columns, self.plan.fns, offset=0, slots=slot, skip=multi)
        self._folded_merges = [(i, fn.merge) for i, fn in enumerate(self.plan.fns) if i not in multi]
        # _counts(multisets, rows): the results when every aggregation is a count or a count_distinct
        self._counts = _counts_builder(len(self.plan.fns), self.multi, self.row_counts)
        self._row = _row_builder(self.columns)
        # _tally(multisets, rows, lo, hi, delta): the count_distinct multisets, for rows[lo:hi]
        self._tally = compile_tally([s for _k, _i, s in self.multi])
        # for request-time views: each applied event's first start (NOT_COUNTED if it counted nowhere)
        self.firsts = firsts
        # process(vs, entity, event, ts, partition, offset, emitted, late): one event, by the rules above;
        # compiled for this view (the in-order path inline), events before the watermark go to _out_of_order
        self.step_code: StepCode = sliding_step_code(self)
        self.process = step_function(self.step_code, str(index))

    def initial(self) -> list[Any]:
        return [0, NEVER, [], None]

    def _out_of_order(self, vs: list[Any], entity: Any, event: dict[str, Any], ts: int, partition: int,
                      offset: int, emitted: list[EmittedValue], late: list[LateReport]) -> None:
        """``process`` for an event before the watermark (the compiled step takes the others)."""
        size = self.size
        watermark = vs[0]  # ts is before it
        close_end = watermark - self.grace - 1
        closed_start = close_end - size
        late_by = close_end + 1 - ts
        if ts <= closed_start:
            late.append(LateReport(self.index, entity, event, late_by, max(0, ts - size), ts, partition, offset))
            if self.firsts is not None:
                self.firsts.append(NOT_COUNTED)
            return
        vs[0] = watermark
        if self.firsts is not None:  # counted in at least one window, from its own
            self.firsts.append(ts)
        events = vs[2]
        n = len(events)
        # in order (the common case): nothing ends after ts, the row goes at the end
        at = n if n == 0 or events[-1][0] <= ts else bisect_right(events, ts, key=_time)
        # closed windows ending after ts that contain it
        previous = None
        j = at
        while j < n:
            t = events[j][0]
            start = t - size if t > size else 0
            if t > ts + size or start > closed_start:
                break
            if t != previous:
                late.append(LateReport(self.index, entity, event, late_by, start, t, partition, offset))
                previous = t
            j += 1
        own_exists = at > 0 and events[at - 1][0] == ts
        own_start = ts - size if ts > size else 0
        own_late = own_exists and own_start <= closed_start
        if own_late:
            late.append(LateReport(self.index, entity, event, late_by, own_start, ts, partition, offset))
        row = self._row(event, ts)
        if at == n:
            events.append(row)  # after every row the queue covers: nothing to adjust
        else:
            self._on_insert(vs, at, row)
            events.insert(at, row)
        if not self.final:
            if not own_late:  # in order, the own window's rows end at the last row
                emitted.append(_new_value((self.index, entity, ts, own_start, ts,
                                           self._value(vs, own_start, ts, n + 1 if at == n else None),
                                           partition, offset)))
        else:
            self._close(vs, entity, closed_start, partition, offset, emitted,
                        born_closed=None if own_exists or own_start > vs[1] - size else ts)
        if close_end > vs[1]:
            vs[1] = close_end
        if events[0][0] <= close_end - 2 * size:
            self._evict(vs, close_end - 2 * size)

    def _evict(self, vs: list[Any], horizon: int) -> None:
        """Drop the rows at or before ``horizon`` (the first one is): each row is passed over once, when
        it leaves, so O(1) amortised."""
        events: list[list[Any]] = vs[2]
        cut = 1
        while cut < len(events) and events[cut][0] <= horizon:
            cut += 1
        self._on_evict(vs, cut)
        del events[:cut]

    def _close(self, vs: list[Any], entity: Any, closed_start: int, partition: int, offset: int,
               emitted: list[EmittedValue], born_closed: int | None) -> None:
        """Emit the windows that close now, in order of (start, end)."""
        size = self.size
        events: list[list[Any]] = vs[2]
        ends: list[int] = []
        if born_closed is not None:  # the event's own window, created behind the close line
            ends.append(born_closed)
        before = vs[1] - size  # windows starting at or before this were closed already
        if closed_start > before:
            j = 0 if before < 0 else bisect_right(events, before + size, key=_time)
            previous = None
            while j < len(events):
                t = events[j][0]
                if (t - size if t > size else 0) > closed_start:
                    break
                if t != previous:
                    ends.append(t)
                    previous = t
                j += 1
        for t in ends:
            start = t - size if t > size else 0
            emitted.append(EmittedValue(self.index, entity, t, start, t, self._value(vs, start, t),
                                        partition, offset))

    # --- window aggregates: a two-stack queue over the sorted events ----------------------
    #
    # Queries come in order (current: [ts - S, ts] for in-order events; final: windows closing
    # in order of their end), so the events in the window form a queue: rows enter at the back
    # and leave at the front. The back keeps one running aggregate; the front keeps, in each
    # of its rows, the aggregate of that row and every later front row, so a row leaving costs
    # nothing and the window is merge(front row's aggregate, back aggregate): O(1) amortised
    # per event with only the folds' add and merge (min, max, last and stddev included).
    # count_distinct keeps a multiset instead (count per value). A query that is not in order
    # (an out-of-order event's own window) is folded from its rows, without the queue.
    #
    # The queue, stored in the view state as [lo, mid, hi, back aggregate, multisets], covers
    # rows lo..hi-1 of the events list; rows lo..mid-1 are the front.

    def _single(self, row: list[Any]) -> list[Any]:
        return self._add_row(self.plan.initial(), row)

    def _add_row(self, states: list[Any], row: list[Any]) -> list[Any]:
        out = list(states)
        self._add_row_into(out, row, row[0])
        return out

    def _merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        out = list(b)
        for i, merge in self._folded_merges:
            out[i] = merge(a[i], b[i])
        return out

    def _count(self, queue: list[Any], row: list[Any], delta: int) -> None:
        self._tally(queue[4], (row,), 0, 1, delta)

    def _new_queue(self, at: int) -> list[Any]:
        return [at, at, at, self.plan.initial(), [{} for _ in self.multi]]

    def _pop_front(self, queue: list[Any], events: list[list[Any]]) -> None:
        lo, mid, hi = queue[0], queue[1], queue[2]
        if not self.stacked:  # no front aggregates: the front is empty, mid follows lo
            self._count(queue, events[lo], -1)
            queue[0] = queue[1] = lo + 1
            return
        if lo == mid:  # the front is empty: every back row moves to the front with its suffix aggregate
            acc: list[Any] | None = None
            for j in range(hi - 1, lo - 1, -1):
                single = self._single(events[j])
                acc = single if acc is None else self._merge(single, acc)
                events[j][self._front] = acc
            queue[1] = mid = hi
            queue[3] = self.plan.initial()
        self._count(queue, events[lo], -1)
        events[lo][self._front] = None
        queue[0] = lo + 1

    def _on_insert(self, vs: list[Any], at: int, row: list[Any]) -> None:
        """Keep the queue right when ``row`` is inserted at index ``at`` (call before inserting)."""
        queue = vs[3]
        if queue is None:
            return
        lo, mid, hi = queue[0], queue[1], queue[2]
        if at <= lo:
            queue[0], queue[1], queue[2] = lo + 1, mid + 1, hi + 1
        elif at < mid:
            vs[3] = None  # inside the front: its suffix aggregates are wrong now; start over
            for j in range(lo, mid):
                vs[2][j][self._front] = None
        elif at < hi:
            if self.stacked:
                queue[3] = self._add_row(queue[3], row)
            self._count(queue, row, 1)
            queue[2] = hi + 1

    def _on_evict(self, vs: list[Any], count: int) -> None:
        """Keep the queue right when the first ``count`` events are deleted (call before deleting)."""
        queue = vs[3]
        if queue is None:
            return
        events = vs[2]
        while queue[0] < count and queue[0] < queue[2]:
            self._pop_front(queue, events)
        if queue[0] < count:  # the queue is empty and entirely before the cut
            vs[3] = None
            return
        queue[0] -= count
        queue[1] = max(queue[1] - count, queue[0])
        queue[2] -= count

    def _value(self, vs: list[Any], start: int, end: int, hi: int | None = None) -> list[Any]:
        """The aggregates of the events with time in [start, end] (``hi``: the index after the
        last of them, when the caller knows it)."""
        events: list[list[Any]] = vs[2]
        if hi is None:
            hi = bisect_right(events, end, key=_time)
        queue = vs[3]
        if queue is None:
            lo = bisect_left(events, start, key=_time)
            queue = vs[3] = self._new_queue(lo)
        else:  # in order, the window starts at or after the queue's front: walk there
            lo = queue[0]
            if lo > 0 and lo <= len(events) and events[lo - 1][0] >= start:
                lo = bisect_left(events, start, key=_time)  # starts before the front: out of order
            else:
                while lo < hi and events[lo][0] < start:
                    lo += 1
        if lo < queue[0] or hi < queue[2]:
            return self._fold(events, lo, hi)  # out of order: fold its rows
        multisets = queue[4]
        if not self.stacked:  # counts and count_distincts only: the queue is the multisets alone
            if self.multi:
                if hi > queue[2]:  # rows entering at the back
                    self._tally(multisets, events, queue[2], hi, 1)
                if lo > queue[0]:  # rows leaving at the front
                    self._tally(multisets, events, queue[0], lo, -1)
            queue[2] = hi
            queue[0] = queue[1] = lo
            return self._counts(multisets, hi - lo)  # type: ignore[no-any-return]
        else:
            for j in range(queue[2], hi):
                row = events[j]
                queue[3] = self._add_row(queue[3], row)
                self._count(queue, row, 1)
            if hi > queue[2]:
                queue[2] = hi
            while queue[0] < lo:
                self._pop_front(queue, events)
            if queue[0] < queue[1]:
                out = self.plan.results(self._merge(events[queue[0]][self._front], queue[3]))
            else:
                out = self.plan.results(queue[3])
        for k, i, _s in self.multi:
            out[i] = len(multisets[k])
        for i in self.row_counts:
            out[i] = hi - lo
        return out

    def _fold(self, events: list[list[Any]], lo: int, hi: int) -> list[Any]:
        states = self.plan.initial()  # this fold's own: added to in place
        add = self._add_row_into if self.stacked else None
        counts: list[set[str]] = [set() for _ in self.multi]
        for j in range(lo, hi):
            row = events[j]
            if add is not None:
                add(states, row, row[0])
            for k, _i, s in self.multi:
                value = row[s]
                if value is not None:
                    counts[k].add(value if value.__class__ is str else str(value))
        out = self.plan.results(states)
        for k, i, _s in self.multi:
            out[i] = len(counts[k])
        for i in self.row_counts:
            out[i] = hi - lo
        return out
