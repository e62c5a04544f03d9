"""A brute-force reference model of Freshet's window rules, written from the README, for tests.

It keeps every event of every key and recomputes each window from scratch with the
folds of ``features/aggregations.py`` in event-time order, so it shares nothing with
the tiled operator but the folds. The rules it encodes are the README's "Window rules".
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from freshet.features.aggregations import FUNCTIONS
from freshet.features.definitions import FeatureView, SlidingWindow

# (view, entity, window_start, window_end, feature_ts, source_partition, source_offset) -> features
Row = tuple[str, Any, int, int, int, int, int]
# (view, entity, event_ts, late_by_ms, window_start, window_end, source_partition, source_offset)
Late = tuple[str, Any, int, int, int, int, int, int]
# an event: (ts, event dict, partition, offset)
Event = tuple[int, dict[str, Any], int, int]


def fold(view: FeatureView, events: list[Event]) -> dict[str, Any]:
    """The view's features over ``events``, folded in order of (event time, arrival)."""
    ordered = sorted(range(len(events)), key=lambda i: (events[i][0], i))
    out = {}
    for agg in view.aggregations:
        fn = FUNCTIONS[agg.function]
        state = fn.initial()
        for i in ordered:
            ts, event, _p, _o = events[i]
            value = None if agg.column is None else event.get(agg.column)
            if agg.column is None or value is not None:
                state = fn.add(state, value, ts)
        out[agg.name] = fn.result(state)
    return out


def _fixed(view: FeatureView, entity: Any, events: list[Event], rows: dict[Row, dict[str, Any]],
           late: list[Late]) -> None:
    size, step, grace = view.window.size, view.window.step, view.grace
    watermark = 0
    open_windows: dict[int, list[Event]] = {}
    for ts, event, p, o in events:
        top = max(watermark, ts)
        closed_start = top - grace - size
        starts = [s for s in range(ts - ts % step, ts - size, -step) if s >= 0][::-1]
        counted = False
        for s in starts:
            if s <= closed_start:
                late.append((view.name, entity, ts, top - grace - ts, s, s + size, p, o))
            else:
                open_windows.setdefault(s, []).append((ts, event, p, o))
                counted = True
        if counted:
            watermark = top
        if view.emit == "current" and starts and starts[0] > closed_start:
            s = starts[0]
            rows[(view.name, entity, s, s + size, ts, p, o)] = fold(view, open_windows[s])
        for s in sorted(open_windows):
            if s <= closed_start:
                members = open_windows.pop(s)
                if view.emit == "final":
                    rows[(view.name, entity, s, s + size, s + size, p, o)] = fold(view, members)


def _sliding(view: FeatureView, entity: Any, events: list[Event], rows: dict[Row, dict[str, Any]],
             late: list[Late]) -> None:
    size, grace = view.window.size, view.grace
    watermark = 0
    accepted: list[Event] = []
    emitted: set[int] = set()

    def start_of(t: int) -> int:
        return max(0, t - size)

    def value(t: int) -> dict[str, Any]:
        return fold(view, [e for e in accepted if start_of(t) <= e[0] <= t])

    for ts, event, p, o in events:
        top = max(watermark, ts)
        close_end = top - grace - 1
        closed_start = close_end - size
        late_by = close_end + 1 - ts
        if ts <= closed_start:
            late.append((view.name, entity, ts, late_by, start_of(ts), ts, p, o))
            continue
        watermark = top
        times = sorted({e[0] for e in accepted})
        for t in times:
            if ts < t <= ts + size and start_of(t) <= closed_start:
                late.append((view.name, entity, ts, late_by, start_of(t), t, p, o))
        own_late = ts in times and start_of(ts) <= closed_start
        if own_late:
            late.append((view.name, entity, ts, late_by, start_of(ts), ts, p, o))
        accepted.append((ts, event, p, o))
        if view.emit == "current":
            if not own_late:
                rows[(view.name, entity, start_of(ts), ts, ts, p, o)] = value(ts)
        else:
            for t in sorted({e[0] for e in accepted}):
                if t not in emitted and start_of(t) <= closed_start:
                    emitted.add(t)
                    rows[(view.name, entity, start_of(t), t, t, p, o)] = value(t)


def reference(views: list[FeatureView], events: list[Event]) -> tuple[dict[Row, dict[str, Any]], list[Late]]:
    """Rows and late reports of ``views`` over valid ``events`` given in the order they are read."""
    by_key: dict[Any, list[Event]] = defaultdict(list)
    for ev in events:
        by_key[ev[1][views[0].entity_key]].append(ev)
    rows: dict[Row, dict[str, Any]] = {}
    late: list[Late] = []
    for view in views:
        for entity, evs in by_key.items():
            (_sliding if isinstance(view.window, SlidingWindow) else _fixed)(view, entity, evs, rows, late)
    return rows, late
