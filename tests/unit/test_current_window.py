"""`current` emission of tumbling/hopping views picks, per event, the window that contains it and ends soonest.

(Sliding windows end at the event: tests/unit/test_operator_rules.py checks them against the rules model.)"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from freshet.features import Aggregation, FeatureView, Source
from freshet.pipelines.tiles import FixedWindows

SOURCE = Source(name="s", topic="s", key="k", timestamp="ts", schema={"k": "str", "ts": "int"})


def view(window: dict[str, object]) -> FeatureView:
    return FeatureView(name="v", source=SOURCE, window=window, emit="current",
                       aggregations=[Aggregation(function="count", name="n")])


@given(st.integers(0, 10**13), st.sampled_from([(60_000, 60_000), (3_600_000, 300_000), (10_000, 3_000)]))
def test_window_contains_ts_and_no_earlier_one_does(ts: int, size_step: tuple[int, int]) -> None:
    size, step = size_step
    kind = "tumbling" if size == step else "hopping"
    window = {"type": kind, "size": size} if kind == "tumbling" else {"type": kind, "size": size, "step": step}
    start = FixedWindows(0, view(window)).first_window(ts)
    assert start % step == 0
    assert start <= ts < start + size
    earlier = start - step
    assert earlier < 0 or not earlier + size > ts

