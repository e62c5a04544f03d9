"""The tiled operator against the brute-force model of the window rules, on random streams.

Hypothesis draws keys, event times (in order, out of order, far behind, duplicates,
near 0) and values; every view kind and emit mode runs over the same events. The
operator must emit exactly the model's rows (floats within 1e-9) and late reports,
and conserve events: in final mode each accepted event is in exactly one emitted
value of each window holding it, or reported late for that window.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from freshet.features import Aggregation, FeatureView, HoppingWindow, SlidingWindow, Source, TumblingWindow
from tests.operator_harness import row_differences, run_operator
from tests.window_reference import Event, reference

SOURCE = Source(name="ev", topic="ev", partitions=2, key="k", timestamp="ts",
                schema={"k": "str", "x": "float", "q": "int", "m": "str", "ts": "int"})
AGGS = [Aggregation(function=f, column=c, name=n) for f, c, n in [
    ("count", None, "n"), ("sum", "x", "sx"), ("sum", "q", "sq"), ("mean", "x", "mx"), ("min", "x", "lo"),
    ("max", "q", "hi"), ("last", "m", "lm"), ("stddev", "x", "sd"), ("stddev_pop", "q", "sdp"),
    ("count_distinct", "m", "dm")]]
WINDOWS = {"tum": TumblingWindow(size=10), "hop": HoppingWindow(size=20, step=5),
           "hop3": HoppingWindow(size=9, step=6), "sli": SlidingWindow(size=10)}
# counts and count_distincts alone: a sliding view of these keeps multisets and no fold (its own path)
COUNTS = {"all": AGGS, "counts": [Aggregation(function="count", name="n"),
                                  Aggregation(function="count_distinct", column="m", name="dm"),
                                  Aggregation(function="count_distinct", column="q", name="dq")],
          "count": [Aggregation(function="count", name="n")]}
VIEWS = [FeatureView(name=f"{w}_{emit}_g{grace}", source=SOURCE, window=window, grace=grace, emit=emit,
                     aggregations=AGGS, ttl="1d")
         for w, window in WINDOWS.items() for emit in ("final", "current") for grace in (0, 3)] + [
    FeatureView(name=f"sli_{emit}_g{grace}_{aggs}", source=SOURCE, window=WINDOWS["sli"], grace=grace, emit=emit,
                aggregations=COUNTS[aggs], ttl="1d")
    for emit in ("final", "current") for grace in (0, 3) for aggs in ("counts", "count")]

event = st.tuples(st.integers(0, 2), st.integers(0, 70), st.floats(-100, 100, allow_nan=False),
                  st.integers(-5, 5), st.sampled_from("abc"))


def to_events(drawn: list[tuple[int, int, float, int, str]]) -> list[Event]:
    out: list[Event] = []
    for i, (key, ts, x, q, m) in enumerate(drawn):
        body: dict[str, Any] = {"k": f"k{key}", "x": x, "q": q, "m": m, "ts": ts}
        out.append((ts, body, key % 2, i))
    return out


@settings(max_examples=300, deadline=None)
@given(drawn=st.lists(event, min_size=1, max_size=40))
def test_operator_follows_the_rules(drawn: list[tuple[int, int, float, int, str]]) -> None:
    events = to_events(drawn)
    rows, late = run_operator(VIEWS, events)
    ref_rows, ref_late = reference(VIEWS, events)
    assert row_differences(ref_rows, rows) == []
    assert sorted(late) == sorted(ref_late)


@settings(max_examples=200, deadline=None)
@given(drawn=st.lists(event, min_size=1, max_size=40))
def test_final_windows_conserve_events(drawn: list[tuple[int, int, float, int, str]]) -> None:
    """Each event is counted once in each window holding it, or reported late for it, never both.

    ``sq`` sums 2**i for the i-th event of a key, so a window's sum says which events it counted."""
    drawn = [(k, ts, x, 0, m) for k, ts, x, _q, m in drawn]
    events = to_events(drawn)
    per_key: dict[str, int] = {}
    for _ts, body, _p, _o in events:
        index = per_key.get(body["k"], 0)
        per_key[body["k"]] = index + 1
        body["q"] = 1 << index
    final = [v for v in VIEWS if v.emit == "final" and "sq" in v.feature_names()]
    rows, late = run_operator(final, events)
    bit_of = {o: body["q"] for _ts, body, _p, o in events}
    for view in final:
        counted: dict[tuple[str, int, int], int] = {}
        for (name, entity, start, end, *_rest), values in rows.items():
            if name == view.name:
                counted[(entity, start, end)] = values["sq"]
        for name, entity, _ts, _by, start, end, _p, offset in late:
            if name == view.name:
                window = (entity, start, end)
                assert counted.get(window, 0) & bit_of[offset] == 0, f"{view.name}: {window} counted and late"
