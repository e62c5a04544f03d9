"""Freshet's window operator: per entity key, one state value for all of a source's views.

The operator is a deterministic function ``(state, event) -> (state, emitted values,
late reports)`` with no Kafka, Redis or clock in it. The live runtime (a Quix Streams
application) and the replay driver both run it, so both compute the same values.

State of one key (plain lists and dicts, so any store can serialise it as JSON)::

    [seen, view_state_0, view_state_1, ...]

``seen`` maps a source partition (as text) to the largest source offset applied for
this key: a record delivered twice (the repartition hop is at-least-once) is skipped.

Tumbling and hopping views (:class:`FixedWindows`) keep *tiles*: partial aggregates
of ``gcd(size, step)`` of event time. A window is the ``merge`` of its tiles, so an
event costs one tile update whatever the window size; a hopping window of 1h every
5m merges its 12 tiles once, when it is emitted. Sliding views
(:class:`~pipelines.sliding.SlidingWindows`) keep the accepted events still inside
the longest window that can be asked for.

The rules (the same as Quix Streams 3.28's window operators, which this replaces;
the README writes them down) live with each window kind. Every fold comes from
:mod:`freshet.features.aggregations`: ``initial``, ``add``, ``merge`` and ``result``.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any, NamedTuple

from freshet.features.aggregations import FUNCTIONS
from freshet.features.definitions import FeatureView, SlidingWindow
from freshet.pipelines.accepted_events import NOT_COUNTED, AcceptedEvents, AcceptedRecord
from freshet.pipelines.decode import EVENT_TIME_FIELD
from freshet.pipelines.fixed_step import fixed_step_code
from freshet.pipelines.folds import compile_add, compile_window
from freshet.pipelines.step_code import StepCode, step_function

KeyState = list[Any]


class EmittedValue(NamedTuple):
    """One value of one view for one entity: what the sinks write."""

    view: int  # index of the view in the operator's list
    entity: Any
    feature_ts: int
    window_start: int
    window_end: int
    values: list[Any]  # in the view's feature order
    source_partition: int
    source_offset: int


class LateReport(NamedTuple):
    """An event read after a window it belongs to had closed: it goes to ``<topic>.late``."""

    view: int
    entity: Any
    event: dict[str, Any]
    late_by_ms: int
    window_start: int
    window_end: int
    source_partition: int
    source_offset: int


class FoldPlan:
    """A view's aggregations over lists of states (one per aggregation): initial and result.

    Adding an event and merging tiles are compiled per view (:mod:`freshet.pipelines.folds`)."""

    def __init__(self, view: FeatureView) -> None:
        self.columns = [a.column for a in view.aggregations]
        self.fns = [FUNCTIONS[a.function] for a in view.aggregations]
        self._results = [fn.result for fn in self.fns]
        # when every initial state is immutable (an int, a float, None), a new tile copies this list
        template = [fn.initial() for fn in self.fns]
        self.template = template if all(v is None or v.__class__ in (int, float) for v in template) else None

    def initial(self) -> list[Any]:
        if self.template is not None:
            return self.template.copy()
        return [fn.initial() for fn in self.fns]

    def results(self, states: list[Any], offset: int = 0) -> list[Any]:
        return [result(states[offset + i]) for i, result in enumerate(self._results)]


class FixedWindows:
    """Tumbling and hopping windows of one view, as tiles.

    Rules, per key: the watermark ``W`` is the largest event time counted in any
    window. For an event at ``ts``, with ``W' = max(W, ts)``, the windows
    ``[s, s + size)`` that contain it (``s`` a multiple of ``step``, ``s >= 0``) with
    ``s <= W' - grace - size`` are closed: the event is reported late for each of them
    (``late_by = W' - grace - ts``) and counted in the others. Then every window with
    ``s <= W' - grace - size`` that holds at least one event is closed: ``final``
    emits it (``feature_ts`` = its end) with the triggering event's source position.
    ``current`` emits, on each event, the earliest-starting window containing it,
    unless the event is late for that window (``feature_ts`` = the event's time).

    View state: ``[W, settled, tiles]``; every window starting at or before ``settled``
    has been emitted or can never exist. A tile is ``[start, floor, *aggregates]``
    where ``floor`` is the smallest close line any of its events met, so a window
    ``s`` holds an event of the tile only if ``s > floor``.
    """

    process: Callable[[list[Any], Any, dict[str, Any], int, int, int, list[EmittedValue], list[LateReport]], None]

    def __init__(self, index: int, view: FeatureView, firsts: array[int] | None = None) -> None:
        """``firsts``: for a request-time view, where each applied event's first start goes."""
        self.index = index
        self.size = view.window.size
        self.step = view.window.size if isinstance(view.window, SlidingWindow) else view.window.step
        self.tile = math.gcd(self.size, self.step)
        self.grace = view.grace
        self.final = view.emit == "final"
        self.plan = FoldPlan(view)
        self._fold = compile_add(self.plan.columns, self.plan.fns, offset=2)  # a tile: [start, floor, *states]
        self._merged = compile_window(self.plan.fns, offset=2)
        # for request-time views: each applied event's first start (NOT_COUNTED if it counted nowhere)
        self.firsts = firsts
        # process(vs, entity, event, ts, partition, offset, emitted, late): one event, by the rules above;
        # compiled for this view (the in-order path inline), events before the watermark go to _out_of_order
        self.step_code: StepCode = fixed_step_code(self)
        self.process = step_function(self.step_code, str(index))

    def initial(self) -> list[Any]:
        return [0, -1, []]

    def first_window(self, ts: int) -> int:
        """The earliest-starting window that contains ``ts``."""
        step = self.step
        return max(0, ((ts - self.size) // step + 1) * step)

    def _out_of_order(self, vs: list[Any], entity: Any, event: dict[str, Any], ts: int, partition: int,
                      offset: int, emitted: list[EmittedValue], late: list[LateReport]) -> int:
        """``process`` for an event before the watermark: late for the windows already closed, counted in
        the others. Returns the close line."""
        size, step = self.size, self.step
        tiles = vs[2]
        watermark = ts if ts > vs[0] else vs[0]
        max_end = watermark - self.grace
        closed_start = max_end - size  # a window starting at or before this is closed
        first = ((ts - size) // step + 1) * step  # the earliest-starting window that contains ts
        if first < 0:
            first = 0
        last = ts - ts % step
        if first <= closed_start:
            for start in range(first, min(last, closed_start) + 1, step):
                late.append(LateReport(self.index, entity, event, max_end - ts, start, start + size,
                                       partition, offset))
        if last > closed_start:  # counted in at least one window
            vs[0] = watermark
            self._add(tiles, event, ts, ts - ts % self.tile, closed_start)
            if not self.final and first > closed_start:
                emitted.append(EmittedValue(self.index, entity, ts, first, first + size,
                                            self._window(tiles, first), partition, offset))
            if self.firsts is not None:  # counted from the first window not closed
                self.firsts.append(first if first > closed_start else (closed_start // step + 1) * step)
        elif self.firsts is not None:
            self.firsts.append(NOT_COUNTED)
        return closed_start

    def _add(self, tiles: list[list[Any]], event: dict[str, Any], ts: int, start: int, closed_start: int) -> None:
        """Fold the event into the tile starting at ``start`` (made when missing; tiles stay sorted)."""
        i = len(tiles) - 1
        while i >= 0 and tiles[i][0] > start:
            i -= 1
        if i >= 0 and tiles[i][0] == start:
            tile = tiles[i]
            if closed_start < tile[1]:
                tile[1] = closed_start
        else:
            tile = [start, closed_start, *self.plan.initial()]
            tiles.insert(i + 1, tile)
        self._fold(tile, event, ts)

    def _window(self, tiles: list[list[Any]], start: int) -> list[Any]:
        """The results of the window starting at ``start``: its tiles merged in order."""
        end = start + self.size
        lo = 0
        n = len(tiles)
        while lo < n and tiles[lo][0] < start:
            lo += 1
        hi = lo
        while hi < n and tiles[hi][0] < end:
            hi += 1
        return self._merged(tiles, lo, hi) if hi > lo else self.plan.results(self.plan.initial())

    def _close(self, vs: list[Any], entity: Any, closed_start: int, partition: int, offset: int,
               emitted: list[EmittedValue]) -> None:
        size, step = self.size, self.step
        settled = vs[1]
        tiles = vs[2]
        if self.final:
            merged = self._merged
            if self.tile == size:  # tumbling: a window is one tile
                for k, tile in enumerate(tiles):
                    t = tile[0]
                    if t > closed_start:
                        break
                    if t > settled and tile[1] < t:  # else every event here was late for it: it never existed
                        emitted.append(EmittedValue(self.index, entity, t + size, t, t + size,
                                                    merged(tiles, k, k + 1), partition, offset))
            else:
                self._close_hopping(tiles, settled, entity, closed_start, partition, offset, emitted)
        vs[1] = closed_start
        # a tile is needed while a window containing it may still be emitted
        keep = 0
        while keep < len(tiles) and tiles[keep][0] - tiles[keep][0] % step <= closed_start:
            keep += 1
        if keep:
            del tiles[:keep]

    def _close_hopping(self, tiles: list[list[Any]], settled: int, entity: Any, closed_start: int,
                       partition: int, offset: int, emitted: list[EmittedValue]) -> None:
        """Emit, in order of their start, the windows past ``settled`` that close by ``closed_start``: each
        start ``s`` (a multiple of the step) with a tile in ``[s, s + size)``, walked from the first that
        can hold the first tile, jumping over starts that hold none."""
        size, step = self.size, self.step
        n = len(tiles)
        start = ((tiles[0][0] - size) // step + 1) * step  # the first window holding the first tile
        if start < 0:
            start = 0
        settled_next = (settled // step + 1) * step
        if settled_next > start:
            start = settled_next
        lo = hi = 0
        while start <= closed_start:
            while lo < n and tiles[lo][0] < start:
                lo += 1
            if lo == n:
                break
            end = start + size
            t = tiles[lo][0]
            if t >= end:  # no tile in this window: on to the first one holding tiles[lo]
                start = ((t - size) // step + 1) * step
                continue
            if hi < lo:
                hi = lo
            while hi < n and tiles[hi][0] < end:
                hi += 1
            for k in range(lo, hi):
                if tiles[k][1] < start:  # an event of this tile counted in the window
                    emitted.append(EmittedValue(self.index, entity, end, start, end, self._merged(tiles, lo, hi),
                                                partition, offset))
                    break
            # else every event here was late for this window: it never existed
            start += step


def compile_views(views: list[FeatureView], firsts: list[array[int] | None]) -> list[Any]:
    """Each view's windows; ``firsts[i]``: where view i logs each applied event's first start, or None."""
    from freshet.pipelines.sliding import SlidingWindows

    return [SlidingWindows(i, v, f) if isinstance(v.window, SlidingWindow) else FixedWindows(i, v, f)
            for i, (v, f) in enumerate(zip(views, firsts, strict=True))]


class SourceOperator:
    """All views of one source, over one state value per entity key.

    ``process(state, event, partition, offset, emitted, late) -> bool`` applies one valid event to its
    key's ``state`` (changed in place) and appends what it emits and the windows it is late for; it
    returns False for a record already applied (a redelivery). It is compiled per operator
    (:func:`_compile_process`)."""

    process: Callable[[KeyState, dict[str, Any], int, int, list[EmittedValue], list[LateReport]], bool]

    def __init__(self, views: list[FeatureView]) -> None:
        if not views:
            raise ValueError("an operator needs at least one view")
        self.views = views
        self.entity_key = views[0].entity_key
        # the events request-time views counted, in arrival order; the drivers take them (take_accepted, or
        # accepted.take() for the columns)
        self.accepted = AcceptedEvents([v.as_of == "request" for v in views])
        self._windows = compile_views(views, self.accepted.firsts)
        self.any_request_time = any(v.as_of == "request" for v in views)
        self._accepted_rows = self.accepted.rows if self.any_request_time else None
        self.process = _compile_process(self.entity_key, [w.step_code for w in self._windows], self._accepted_rows)

    def initial(self) -> KeyState:
        return [{}, *[w.initial() for w in self._windows]]

    def take_accepted(self) -> list[AcceptedRecord]:
        """The accepted events of request-time views since the last call (empties the list)."""
        return self.accepted.take_records()


_SLOTS = [str(p) for p in range(1024)]  # a partition's key in a state's offsets (made once)


def _compile_process(entity_key: str, steps: list[StepCode],
                     accepted_rows: list[Any] | None) -> Callable[..., bool]:
    """The operator's ``process`` as one function with its views' steps inline, in turn (no loop over
    them, no call: :mod:`freshet.pipelines.step_code`) and the entity field inlined: it runs once per
    event, so its own overhead counts."""
    lines = ["def process(state, event, partition, offset, emitted, late):",
             "    seen = state[0]",
             f"    slot = slots[partition] if 0 <= partition < {len(_SLOTS)} else str(partition)",
             "    last = seen.get(slot)",
             "    if last is not None and offset <= last:",
             "        return False",  # a redelivery: already applied
             "    seen[slot] = offset",
             f"    ts = event[{EVENT_TIME_FIELD!r}]",
             f"    entity = event[{entity_key!r}]"]
    env: dict[str, Any] = {}
    for i, step in enumerate(steps):
        lines.append(f"    vs = state[{i + 1}]")
        lines += step.lines
        env.update(step.env)
    if accepted_rows is not None:  # the event's share of its accepted records (views add theirs)
        lines.append("    accepted_append((entity, ts, event, partition, offset))")
    lines.append("    return True")
    env["slots"] = _SLOTS
    env["accepted_append"] = accepted_rows.append if accepted_rows is not None else None
    text = "\n".join(lines) + "\n"
    exec(compile(text, "<freshet operator>", "exec"), env)  # noqa: S102 - built from fixed templates, repr-quoted names
    process: Any = env["process"]
    process.__source__ = text
    return process  # type: ignore[no-any-return]
