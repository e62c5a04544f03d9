"""The aggregation folds against direct computations over the same values."""

from __future__ import annotations

import math
import statistics

from hypothesis import given
from hypothesis import strategies as st

from freshet.features.aggregations import FUNCTIONS

values = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=0, max_size=40)


def fold(name: str, xs: list[object]) -> object:
    fn = FUNCTIONS[name]
    state = fn.initial()
    for i, x in enumerate(xs):
        state = fn.add(state, x, i)
    return fn.result(state)


def fold_split_merge(name: str, xs: list[object], cut: int) -> object:
    fn = FUNCTIONS[name]
    a, b = fn.initial(), fn.initial()
    for i, x in enumerate(xs[:cut]):
        a = fn.add(a, x, i)
    for i, x in enumerate(xs[cut:], start=cut):
        b = fn.add(b, x, i)
    return fn.result(fn.merge(a, b))


@given(values)
def test_folds_match_direct_computation(xs: list[float]) -> None:
    assert fold("count", xs) == len(xs)
    assert math.isclose(fold("sum", xs), math.fsum(xs), rel_tol=1e-9, abs_tol=1e-6)  # type: ignore[arg-type]
    assert fold("min", xs) == (min(xs) if xs else None)
    assert fold("max", xs) == (max(xs) if xs else None)
    assert fold("last", xs) == (xs[-1] if xs else None)
    mean = fold("mean", xs)
    assert (mean is None) if not xs else math.isclose(mean, statistics.fmean(xs), rel_tol=1e-9, abs_tol=1e-6)  # type: ignore[arg-type]
    sd = fold("stddev", xs)
    if len(xs) < 2:
        assert sd is None
    else:
        assert math.isclose(sd, statistics.stdev(xs), rel_tol=1e-6, abs_tol=1e-6)  # type: ignore[arg-type]
    pop = fold("stddev_pop", xs)
    assert (pop is None) if not xs else math.isclose(pop, statistics.pstdev(xs), rel_tol=1e-6, abs_tol=1e-6)  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(["a", "b", "c", "d", 1, 2]), max_size=30))
def test_count_distinct(xs: list[object]) -> None:
    assert fold("count_distinct", xs) == len({str(x) for x in xs})


@given(values, st.integers(min_value=0, max_value=40))
def test_merge_equals_one_fold(xs: list[float], cut: int) -> None:
    cut = min(cut, len(xs))
    for name in ("count", "min", "max", "last", "count_distinct"):
        assert fold_split_merge(name, xs, cut) == fold(name, xs)
    for name in ("sum", "mean", "stddev", "stddev_pop"):  # float addition is not associative
        a, b = fold_split_merge(name, xs, cut), fold(name, xs)
        assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)  # type: ignore[arg-type]


def test_last_prefers_latest_event_time_not_arrival() -> None:
    fn = FUNCTIONS["last"]
    state = fn.initial()
    for value, ts in (("late-arrival-early-time", 5), ("on-time", 10), ("older", 7)):
        state = fn.add(state, value, ts)
    assert fn.result(state) == "on-time"


def test_count_distinct_does_not_mutate_shared_state() -> None:
    fn = FUNCTIONS["count_distinct"]
    shared = fn.add(fn.initial(), "m1", 0)
    branch = fn.add(shared, "m2", 1)
    assert fn.result(shared) == 1 and fn.result(branch) == 2


@given(st.lists(st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False)), max_size=30))
def test_inline_add_expressions_equal_the_folds(values: list[float]) -> None:
    """An engine may inline ``add_expr`` instead of calling ``add``: both must fold the same."""
    for fn in FUNCTIONS.values():
        if fn.add_expr is None:
            continue
        inline = eval("lambda s, v: " + fn.add_expr.format(s="s", v="v"))  # noqa: S307 - fixed templates
        by_add, by_expr = fn.initial(), fn.initial()
        for i, v in enumerate(values):
            by_add = fn.add(by_add, v, i)
            by_expr = inline(by_expr, v)
            assert by_add == by_expr, (fn.name, values[: i + 1])


@given(st.lists(st.lists(st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False)), max_size=5),
                max_size=8))
def test_inline_merge_and_result_expressions_equal_the_folds(tiles: list[list[float]]) -> None:
    """An engine may inline ``merge_expr`` and ``result_expr``: merging tiles (some empty: a state still
    initial) left to right, then taking the result, must give the same as ``merge`` and ``result``."""
    for fn in FUNCTIONS.values():
        if fn.merge_expr is None and fn.result_expr is None:
            continue
        merge = eval("lambda a, b: " + fn.merge_expr.format(a="a", b="b")) if fn.merge_expr else fn.merge  # noqa: S307
        result = eval("lambda s: " + fn.result_expr.format(s="s")) if fn.result_expr else fn.result  # noqa: S307
        states = []
        for tile in tiles:
            state = fn.initial()
            for i, v in enumerate(tile):
                state = fn.add(state, v, i)
            states.append(state)
        by_fn, by_expr = fn.initial(), fn.initial()
        for state in states:
            by_fn, by_expr = fn.merge(by_fn, state), merge(by_expr, state)
            assert by_fn == by_expr and type(by_fn) is type(by_expr), (fn.name, tiles)
        assert fn.result(by_fn) == result(by_expr), (fn.name, tiles)
