"""Brute force for reads as of an instant, for tests: which events were accepted, and the rule itself.

``accepted_by_reference`` derives the accepted events (and each one's first window) from the late
reports of a window model (``tests/window_reference.py`` by default: it shares nothing with the operator
but the folds); ``brute`` selects a window's accepted events by the rule and folds them again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from freshet.features.as_of import AcceptedEvent, AsOfValue
from freshet.features.definitions import FeatureView, SlidingWindow
from tests.window_reference import Event, Late, fold, reference

# view -> entity -> [(source offset, event)], in arrival order
Accepted = dict[str, dict[Any, list[tuple[int, AcceptedEvent]]]]
Model = Callable[[list[FeatureView], list[Event]], tuple[Any, list[Late]]]


def accepted_by_reference(views: list[FeatureView], events: list[Event], key: str = "k",
                          model: Model = reference) -> Accepted:
    """Per view and entity, the events the window model counted, in arrival order, with their offsets."""
    _rows, late = model(views, events)
    late_windows: dict[tuple[str, int, int], list[tuple[int, int]]] = defaultdict(list)
    for name, _entity, _ts, late_by, start, _end, partition, offset in late:
        late_windows[(name, partition, offset)].append((start, late_by))
    out: Accepted = {v.name: defaultdict(list) for v in views}
    for view in views:
        size = view.window.size
        for ts, body, partition, offset in events:
            reports = late_windows[(view.name, partition, offset)]
            if isinstance(view.window, SlidingWindow):
                if any(late_by > size for _s, late_by in reports):  # late for its own window
                    continue
                first = 0
            else:
                step = view.window.step
                starts = [s for s in range(ts - ts % step, ts - size, -step) if s >= 0][::-1]
                late_starts = sorted(s for s, _by in reports)
                if late_starts != starts[:len(late_starts)]:
                    raise AssertionError(f"{view.name}: late for windows {late_starts} of {starts}: "
                                         "only the earliest windows of an event can be closed")
                if len(late_starts) == len(starts):
                    continue
                first = starts[len(late_starts)]
            out[view.name][body[key]].append((offset, AcceptedEvent(ts, body, first)))
    return out


def brute(view: FeatureView, accepted: list[AcceptedEvent], t: int) -> AsOfValue | None:
    """The rule, written again: select the window's accepted events, fold them."""
    size = view.window.size
    if isinstance(view.window, SlidingWindow):
        start, end = max(0, t - size), t
        members = [e for e in accepted if start <= e.ts <= end]
        return AsOfValue(t, start, end, fold(view, [(e.ts, dict(e.event), 0, 0) for e in members]))
    if t < size:
        return None
    step = view.window.step
    start = (t - size) // step * step
    members = [e for e in accepted if start <= e.ts < start + size and e.first_start <= start]
    return AsOfValue(start + size, start, start + size,
                     fold(view, [(e.ts, dict(e.event), 0, 0) for e in members]))
