"""The semantics of the aggregation functions, independent of any engine.

Each function is a small fold over the events of one window: ``initial()``
gives the empty state, ``add(state, value, ts)`` folds one event's column value
in, ``merge(a, b)`` combines two states, and ``result(state)`` gives the
feature value. States are plain JSON values (numbers, lists, dicts) so any
state store can persist them. Null column values are skipped (as SQL does);
``count`` without a column counts events.

The stream processor wraps these folds; tests and read paths use them as the
reference. Nothing here imports Kafka, Redis or Arrow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

State = Any

NUMERIC_TYPES = frozenset({"int", "float"})
FIELD_TYPES = frozenset({"str", "int", "float", "bool"})


@dataclass(frozen=True)
class AggregationFunction:
    """One aggregation function: its fold and what it accepts and returns."""

    name: str
    needs_column: bool
    numeric_only: bool
    initial: Callable[[], State]
    add: Callable[[State, Any, int], State]
    merge: Callable[[State, State], State]
    result: Callable[[State], Any]
    output_type: Callable[[str | None], str]
    description: str
    # the same ``add`` as a Python expression over ``{s}`` (state) and ``{v}`` (value), for engines
    # that compile a view's folds into one function; tests check it equals ``add``
    add_expr: str | None = None
    # likewise ``merge`` over ``{a}`` and ``{b}``, and ``result`` over ``{s}`` (each operand may be
    # written more than once: engines pass plain names or subscripts)
    merge_expr: str | None = None
    result_expr: str | None = None


def _same_type(column_type: str | None) -> str:
    return column_type or "int"


def _always(kind: str) -> Callable[[str | None], str]:
    return lambda _column_type: kind


# count ---------------------------------------------------------------------
def _count_add(state: int, value: Any, _ts: int) -> int:
    return state + 1


# sum -------------------------------------------------------------------------
def _sum_add(state: float, value: Any, _ts: int) -> float:
    total: float = state + value
    return total


# mean: [sum, n] --------------------------------------------------------------
def _mean_add(state: list[float], value: Any, _ts: int) -> list[float]:
    return [state[0] + value, state[1] + 1]


def _mean_result(state: list[float]) -> float | None:
    return state[0] / state[1] if state[1] else None


# min / max -------------------------------------------------------------------
def _min_add(state: Any, value: Any, _ts: int) -> Any:
    return value if state is None or value < state else state


def _max_add(state: Any, value: Any, _ts: int) -> Any:
    return value if state is None or value > state else state


def _pick(fn: Callable[[Any, Any, int], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: a if b is None else fn(a, b, 0)


# last: [ts, value]; the latest event time wins, a tie goes to the later arrival
def _last_add(state: list[Any] | None, value: Any, ts: int) -> list[Any]:
    return [ts, value] if state is None or ts >= state[0] else state


def _last_merge(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b[0] >= a[0] else a


# stddev (sample, ddof=1, as SQL STDDEV): Welford's [n, mean, m2] -------------
def _welford_add(state: list[float], value: Any, _ts: int) -> list[float]:
    n, mean, m2 = state
    n += 1
    delta = value - mean
    mean += delta / n
    m2 += delta * (value - mean)
    return [n, mean, m2]


def _welford_merge(a: list[float], b: list[float]) -> list[float]:
    na, ma, m2a = a
    nb, mb, m2b = b
    n = na + nb
    if n == 0:
        return [0, 0.0, 0.0]
    delta = mb - ma
    return [n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n]


def _stddev_result(state: list[float]) -> float | None:
    n, _mean, m2 = state
    return math.sqrt(max(m2, 0.0) / (n - 1)) if n >= 2 else None


def _stddev_pop_result(state: list[float]) -> float | None:
    n, _mean, m2 = state
    return math.sqrt(max(m2, 0.0) / n) if n >= 1 else None


# count_distinct: the set of seen values, as a dict keyed by their text -------
def _distinct_add(state: dict[str, int], value: Any, _ts: int) -> dict[str, int]:
    key = str(value)
    # never mutate: an engine may share one state object between two windows
    return state if key in state else {**state, key: 1}


def _distinct_merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {**a, **b}


FUNCTIONS: dict[str, AggregationFunction] = {
    f.name: f
    for f in (
        AggregationFunction(
            "count", False, False, lambda: 0, _count_add, lambda a, b: a + b,
            lambda s: s, _always("int"), "number of events (non-null values when a column is given)",
            "{s} + 1", "{a} + {b}", "{s}",
        ),
        AggregationFunction(
            "sum", True, True, lambda: 0, _sum_add, lambda a, b: a + b,
            lambda s: s, _same_type, "sum of the column (0 for no values)", "{s} + {v}", "{a} + {b}", "{s}",
        ),
        AggregationFunction(
            "mean", True, True, lambda: [0, 0], _mean_add,
            lambda a, b: [a[0] + b[0], a[1] + b[1]], _mean_result, _always("float"),
            "arithmetic mean of the column (null for no values)",
        ),
        AggregationFunction(
            "min", True, True, lambda: None, _min_add, _pick(_min_add),
            lambda s: s, _same_type, "smallest value of the column", "{v} if {s} is None or {v} < {s} else {s}",
            "{a} if {b} is None else {b} if {a} is None or {b} < {a} else {a}", "{s}",
        ),
        AggregationFunction(
            "max", True, True, lambda: None, _max_add, _pick(_max_add),
            lambda s: s, _same_type, "largest value of the column", "{v} if {s} is None or {v} > {s} else {s}",
            "{a} if {b} is None else {b} if {a} is None or {b} > {a} else {a}", "{s}",
        ),
        AggregationFunction(
            "last", True, False, lambda: None, _last_add, _last_merge,
            lambda s: None if s is None else s[1], _same_type,
            "value of the event with the latest event time",
        ),
        AggregationFunction(
            "stddev", True, True, lambda: [0, 0.0, 0.0], _welford_add, _welford_merge,
            _stddev_result, _always("float"), "sample standard deviation (null below 2 values)",
        ),
        AggregationFunction(
            "stddev_pop", True, True, lambda: [0, 0.0, 0.0], _welford_add, _welford_merge,
            _stddev_pop_result, _always("float"), "population standard deviation",
        ),
        AggregationFunction(
            "count_distinct", True, False, dict, _distinct_add, _distinct_merge,
            len, _always("int"), "number of distinct values of the column",
        ),
    )
}
