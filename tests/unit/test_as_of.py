"""Reads as of an instant (features/as_of.py): the incremental state against brute force.

The accepted events of a stream (and, for tumbling and hopping views, the earliest window
each counts in) come from the real window operator's late reports, so the as-of rule reads
what the streaming engine counted. Hypothesis draws streams of several entities with
out-of-order, late and duplicate-time events and long silences; every window kind and all
nine functions run over them; reads happen between events, on window edges, after
silences and before the first window. The brute force selects the window's events by the
rule and folds them with tests/window_reference.py's ``fold``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshet.features import Aggregation, FeatureView, HoppingWindow, SlidingWindow, TumblingWindow
from freshet.features.as_of import (
    AcceptedEvent,
    AsOfHorizonError,
    AsOfState,
    AsOfValue,
    SlidingAsOf,
    as_of_state,
    load_as_of_state,
    read_as_of,
    window_at,
)
from tests.as_of_reference import Accepted, accepted_by_reference, brute
from tests.operator_harness import run_operator, same_value
from tests.unit.test_operator_rules import AGGS, SOURCE, to_events
from tests.window_reference import Event

WINDOWS = {"tum": TumblingWindow(size=10), "hop": HoppingWindow(size=20, step=5),
           "hop3": HoppingWindow(size=9, step=6), "sli": SlidingWindow(size=10)}
VIEWS = [FeatureView(name=f"{w}_g{grace}", source=SOURCE, window=window, grace=grace, aggregations=AGGS,
                     ttl="1d") for w, window in WINDOWS.items() for grace in (0, 3)]
BY_NAME = {v.name: v for v in VIEWS}

# times: mostly close together (out of order, late), some after a long silence
event = st.tuples(st.integers(0, 2), st.integers(0, 60) | st.integers(200, 260),
                  st.floats(-100, 100, allow_nan=False), st.integers(-5, 5), st.sampled_from("abc"))
streams = st.lists(event, min_size=1, max_size=40)

def accepted_events(views: list[FeatureView], events: list[Event]) -> Accepted:
    """Per view and entity, the events the operator counted (derived from its late reports)."""
    return accepted_by_reference(views, events, model=run_operator)


def same(a: AsOfValue | None, b: AsOfValue | None) -> bool:
    if a is None or b is None:
        return a is b
    return a[:3] == b[:3] and a.values.keys() == b.values.keys() and all(
        same_value(a.values[k], b.values[k]) for k in a.values)


def instants(view: FeatureView, times: list[int], extra: list[int]) -> list[int]:
    """Between and on events, on every window edge (and next to it), after silences, far away."""
    size = view.window.size
    step = size if isinstance(view.window, SlidingWindow) else view.window.step
    top = max(times) + 2 * size
    edges = {e + d for s in range(0, top + 1, step) for e in (s, s + size) for d in (-1, 0, 1)}
    near = {ts + d for ts in times for d in (-1, 0, 1, size, size + 1)}
    return sorted(t for t in edges | near | set(extra) | {0, 10**7} if t >= 0)


def check_reads(view: FeatureView, state: AsOfState, accepted: list[AcceptedEvent], ts: list[int]) -> None:
    for t in ts:
        expected = brute(view, accepted, t)
        assert same(read_as_of(view, accepted, t), expected), (view.name, t)
        if t < state.floor:
            with pytest.raises(AsOfHorizonError):
                state.read_at(t)
        else:
            assert same(state.read_at(t), expected), (view.name, t, state.read_at(t), expected)


@settings(max_examples=80, deadline=None)
@given(drawn=streams, extra=st.lists(st.integers(0, 400), max_size=10), horizon=st.integers(0, 4) | st.integers(0, 60),
       cut=st.floats(0, 1), block_rows=st.sampled_from([1, 2, 3, 64]))
def test_state_reads_equal_brute_force(drawn: list[Any], extra: list[int], horizon: int, cut: float,
                                       block_rows: int) -> None:
    """At a cut of the stream: reads equal brute force over the events accepted so far, the state
    survives JSON, and it is pruned; at the end, reads at or after the floor equal brute force over
    every accepted event, reads before it are refused. Sliding states use small blocks too."""
    events = to_events(drawn)
    accepted = accepted_events(VIEWS, events)
    cut_at = int(cut * len(events))
    for name, entities in accepted.items():
        view = BY_NAME[name]
        for pairs in entities.values():
            times = [e.ts for _o, e in pairs]
            ts = instants(view, times, extra)
            state = as_of_state(view, block_rows=block_rows)
            before = [e for o, e in pairs if o < cut_at]
            for e in before:
                state.add(e)
            check_reads(view, state, before, ts)
            state = load_as_of_state(view, json.loads(json.dumps(state.to_json())), block_rows=block_rows)
            state.prune(horizon)
            assert state.floor == max(0, (max(e.ts for e in before) - horizon) if before else 0)
            for o, e in pairs:
                if o >= cut_at:
                    state.add(e)
            check_reads(view, state, [e for _o, e in pairs], ts)


@settings(max_examples=100, deadline=None)
@given(drawn=streams, extra=st.lists(st.integers(0, 400), max_size=10), cap=st.integers(1, 6),
       block_rows=st.integers(1, 3))
def test_hot_entity_cap_refuses_rather_than_answers_wrong(drawn: list[Any], extra: list[int], cap: int,
                                                          block_rows: int) -> None:
    view = BY_NAME["sli_g3"]
    accepted = accepted_events([view], to_events(drawn))[view.name]
    for pairs in accepted.values():
        state = as_of_state(view, max_events=cap, block_rows=block_rows)
        for _o, e in pairs:
            state.add(e)
        assert isinstance(state.to_json()["items"], list) and len(state.to_json()["items"]) <= cap
        check_reads(view, state, [e for _o, e in pairs], instants(view, [e.ts for _o, e in pairs], extra))
        assert state.read_at(state.watermark + view.window.size + 1).values["n"] == 0  # always answers later


@settings(max_examples=100, deadline=None)
@given(drawn=streams)
def test_emitted_values_are_as_of_reads(drawn: list[Any]) -> None:
    """Every final row equals the as-of read at its end over the events accepted up to the one that
    closed it; every current sliding row, the read at the event's time: the rule reads what the
    streaming engine counts."""
    events = to_events(drawn)
    views = [v.model_copy(update={"emit": emit}) for v in VIEWS for emit in ("final", "current")]
    names = {(v.name, v.emit): v for v in views}
    for emit in ("final", "current"):
        chosen = [v for v in views if v.emit == emit]
        rows, _late = run_operator(chosen, events)
        accepted = accepted_events(chosen, events)
        for (name, entity, start, end, feature_ts, _p, offset), values in rows.items():
            view = names[(name, emit)]
            if emit == "current" and not isinstance(view.window, SlidingWindow):
                continue  # a current fixed row is an open window, not an as-of read
            so_far = [e for o, e in accepted[name][entity] if o <= offset]
            got = read_as_of(view, so_far, feature_ts)
            assert got is not None and (got.window_start, got.window_end) == (start, end)
            assert same(got, AsOfValue(feature_ts, start, end, values)), (name, emit, start, end)


# --- the edge rules, by example ---------------------------------------------------------------------

COUNT_X = (Aggregation(function="count", name="n"), Aggregation(function="mean", column="x", name="mx"),
           Aggregation(function="last", column="m", name="lm"))


def view_of(window: Any, aggregations: tuple[Aggregation, ...] = COUNT_X) -> FeatureView:
    return FeatureView(name="v", source=SOURCE, window=window, aggregations=aggregations, ttl="1d")


def fed(view: FeatureView, *events: tuple[int, int], **kwargs: Any) -> AsOfState:
    """A state fed (ts, first_start) events with x = ts and m = 'm<ts>'."""
    state = as_of_state(view, **kwargs)
    for ts, first in events:
        state.add(AcceptedEvent(ts, {"k": "a", "x": float(ts), "m": f"m{ts}", "ts": ts}, first))
    return state


def test_sliding_window_ends_are_both_included() -> None:
    state = fed(view_of(SlidingWindow(size=10)), (0, 0), (5, 0), (10, 0))
    counts = {t: state.read_at(t).values["n"] for t in (0, 4, 10, 11, 15, 16, 20, 21)}
    assert counts == {0: 1, 4: 1, 10: 3, 11: 2, 15: 2, 16: 1, 20: 1, 21: 0}
    assert state.read_at(10) == AsOfValue(10, 0, 10, {"n": 3, "mx": 5.0, "lm": "m10"})
    assert state.read_at(13) == AsOfValue(13, 3, 13, {"n": 2, "mx": 7.5, "lm": "m10"})


def test_fixed_windows_start_included_end_excluded_and_before_the_first_window() -> None:
    view = view_of(TumblingWindow(size=10))
    state = fed(view, (0, 0), (9, 0), (10, 10))
    assert state.read_at(0) is None and state.read_at(9) is None  # no window has ended: no value
    assert window_at(view, 9) is None
    assert state.read_at(10) == AsOfValue(10, 0, 10, {"n": 2, "mx": 4.5, "lm": "m9"})
    assert state.read_at(19) == state.read_at(10)  # still the latest window that has ended
    assert state.read_at(20) == AsOfValue(20, 10, 20, {"n": 1, "mx": 10.0, "lm": "m10"})


def test_an_empty_window_reads_the_folds_of_nothing() -> None:
    columns = {"count": None, "last": "m", "count_distinct": "m"}
    every = tuple(Aggregation(function=f, column=columns.get(f, "x"), name=f)
                  for f in ("count", "sum", "mean", "min", "max", "last", "stddev", "stddev_pop",
                            "count_distinct"))
    empty = {"count": 0, "sum": 0, "mean": None, "min": None, "max": None, "last": None, "stddev": None,
             "stddev_pop": None, "count_distinct": 0}
    for window in (TumblingWindow(size=10), HoppingWindow(size=20, step=5), SlidingWindow(size=10)):
        view = view_of(window, every)
        state = fed(view, (3, 0))
        value = state.read_at(1_000)
        assert value is not None and value.values == empty and value.feature_ts == 1_000
        assert value == read_as_of(view, [AcceptedEvent(3, {"x": 3.0, "m": "m3"}, 0)], 1_000)


def test_hopping_event_late_for_its_earliest_windows_counts_in_the_later_ones() -> None:
    state = fed(view_of(HoppingWindow(size=20, step=5)), (12, 5), (13, 0))  # 12: late for [0, 20)
    assert state.read_at(20).values["n"] == 1  # [0, 20): only 13
    assert state.read_at(25).values["n"] == 2  # [5, 25): both
    assert state.read_at(34).values == {"n": 2, "mx": 12.5, "lm": "m13"}  # [10, 30)
    assert state.read_at(35).values["n"] == 0  # [15, 35)
    with pytest.raises(ValueError, match="first_start 10 is not the start of a window"):
        fed(view_of(HoppingWindow(size=20, step=5)), (8, 10))


def test_the_card_that_went_quiet() -> None:
    """5 transactions 8 minutes ago: a 10-minute count reads 5 now and 0 three minutes later (the
    value of the last event, today's read, would still say 5)."""
    minute = 60_000
    now = 1_700_000_000_000
    view = view_of(SlidingWindow(size="10m"))
    state = fed(view, *[(now - 8 * minute + i * 1_000, 0) for i in range(5)])
    assert state.read_at(now).values["n"] == 5
    assert state.read_at(now + 3 * minute).values["n"] == 0
    assert state.read_at(now + 3 * minute).window_start == now - 7 * minute


def test_reads_before_the_pruned_horizon_are_refused() -> None:
    for window in (SlidingWindow(size=10), TumblingWindow(size=10)):
        state = fed(view_of(window), *[(ts, ts - ts % 10) for ts in range(0, 100, 3)])
        before = state.read_at(80)
        state.prune(horizon=20)  # watermark 99: reads from 79 on stay exact
        assert state.floor == 79 and state.read_at(80) == before
        with pytest.raises(AsOfHorizonError, match=r"cannot read as of 78: .* from 79 on \(pruned"):
            state.read_at(78)
        kept = state.to_json()["items"]
        assert min(item[0] for item in kept) == (69 if isinstance(window, SlidingWindow) else 60)
        with pytest.raises(ValueError, match=">= 0"):
            state.prune(-1)


def test_hot_entity_beyond_the_cap_is_refused_with_the_reason() -> None:
    view = view_of(SlidingWindow(size="10m"))
    state = fed(view, *[(ts, 0) for ts in range(1_000_000, 1_000_000 + 160)], max_events=100)
    assert len(state.to_json()["items"]) <= 100
    with pytest.raises(AsOfHorizonError, match="cap of 100 events kept"):
        state.read_at(1_000_159)
    later = 1_000_159 + 600_001
    assert state.read_at(later).values["n"] == 0


@pytest.mark.parametrize("seed", range(12))
def test_long_out_of_order_streams_with_small_blocks(seed: int) -> None:
    """Long streams (hypothesis draws short ones): block aggregates follow inserts, prunes and the cap."""
    rng = random.Random(seed)
    view = view_of(SlidingWindow(size=rng.choice([5, 10, 30])), AGGS)
    block_rows, cap = rng.randint(1, 4), rng.choice([12, 40, 10_000])
    state, accepted = as_of_state(view, max_events=cap, block_rows=block_rows), []
    for i in range(120):
        ts = max(0, i * 2 - rng.choice([0, 0, 0, 1, 7, 25]))
        ev = AcceptedEvent(ts, {"x": rng.uniform(-9, 9), "q": rng.randint(0, 3), "m": rng.choice("abcd")})
        state.add(ev)
        accepted.append(ev)
        if i % 17 == 16:
            state = load_as_of_state(view, json.loads(json.dumps(state.to_json())), cap, block_rows)
            state.prune(rng.randint(0, 80))
        assert isinstance(state, SlidingAsOf) and all(b * block_rows >= state.base for b in state.blocks)
        if i % 5 == 4:
            check_reads(view, state, accepted, list(range(max(0, ts - 60), ts + 40)))


def test_state_json_round_trip_and_kind_check() -> None:
    for window in (SlidingWindow(size=10), HoppingWindow(size=20, step=5)):
        view = view_of(window, AGGS)
        state = as_of_state(view)
        for ts in (3, 17, 9, 22):
            state.add(AcceptedEvent(ts, {"k": "a", "x": ts / 3, "q": ts, "m": "abc"[ts % 3]},
                                    0 if isinstance(window, SlidingWindow) else max(0, (ts - 20) // 5 * 5 + 5)))
        data = json.loads(json.dumps(state.to_json()))
        loaded = load_as_of_state(view, data)
        assert all(loaded.read_at(t) == state.read_at(t) for t in range(0, 60))
        other = view_of(TumblingWindow(size=10) if isinstance(window, SlidingWindow) else SlidingWindow(size=10))
        with pytest.raises(ValueError, match="as-of state"):
            load_as_of_state(other, data)
    with pytest.raises(ValueError, match=">= 0"):
        as_of_state(view_of(SlidingWindow(size=10))).read_at(-1)


@settings(max_examples=60, deadline=None)
@given(streams)
def test_operator_hands_over_exactly_the_accepted_events(drawn: list[Any]) -> None:
    """With ``as_of: request`` the operator itself hands over each counted event with its first window
    (pipelines.tiles.AcceptedRecord): the same events, in the same order, as derived from its late reports."""
    from freshet.pipelines.tiles import SourceOperator

    events = to_events(drawn)
    views = [v.model_copy(update={"as_of": "request"}) for v in VIEWS]
    expected = accepted_events(views, events)
    operator = SourceOperator(views)
    states: dict[str, Any] = {}
    got: dict[str, dict[Any, list[tuple[int, AcceptedEvent]]]] = {v.name: defaultdict(list) for v in views}
    for ts, body, partition, offset in events:
        event = {**body, "__event_ts": ts}
        state = states.setdefault(str(body["k"]), operator.initial())
        operator.process(state, event, partition, offset, [], [])
        for rec in operator.take_accepted():
            view = views[rec.view]
            first = 0 if isinstance(view.window, SlidingWindow) else rec.first_start
            assert rec.source_offset == offset and rec.event is event and rec.ts == ts
            got[view.name][rec.entity].append((offset, AcceptedEvent(rec.ts, body, first)))
    assert operator.accepted.rows == [] and not any(operator.accepted.firsts[i] for i in range(len(views)))
    for view in views:
        assert dict(got[view.name]) == dict(expected[view.name]), view.name
