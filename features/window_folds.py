"""A view's aggregations over rows of events, for reads as of an instant (features.as_of, online_as_of).

Rows are ``[ts, *values of the columns the aggregations read]``; the folds are those of
:mod:`freshet.features.aggregations`. Adding a row is compiled once per set of functions: reads fold a
few events per entity and view, so a per-row loop over the aggregations is what a read of many
entities would cost (``exec`` of code built from indices only; no library compiles folds for us).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from freshet.features.aggregations import FUNCTIONS
from freshet.features.definitions import FeatureView


class WindowFolds:
    """A view's aggregations over rows ``[ts, *values of the columns they read]``."""

    def __init__(self, view: FeatureView) -> None:
        self.names = view.feature_names()
        self.fns = [FUNCTIONS[a.function] for a in view.aggregations]
        self.columns = sorted({a.column for a in view.aggregations if a.column is not None})
        self.slots = [None if a.column is None else 1 + self.columns.index(a.column)
                      for a in view.aggregations]
        self.only_counts = all(s is None for s in self.slots)  # every aggregation a bare count
        functions = tuple(a.function for a in view.aggregations)
        self.add = _compile_add(functions, tuple(self.slots))  # add(states, row): fold row into states, in place
        # add_member(states, member, ts): an online event [partition, offset, first_start, *values]
        self.add_member = _compile_add(functions, tuple(None if s is None else s + 2 for s in self.slots),
                                       ts_arg=True)

    def row(self, ts: int, event: Mapping[str, Any]) -> list[Any]:
        """An event as the row the folds read: ``[ts, *values of the columns read]``."""
        return [ts, *(event.get(c) for c in self.columns)]

    def initial(self) -> list[Any]:
        return [fn.initial() for fn in self.fns]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [fn.merge(x, y) for fn, x, y in zip(self.fns, a, b, strict=True)]

    def results(self, states: list[Any]) -> dict[str, Any]:
        return {name: fn.result(s) for name, fn, s in zip(self.names, self.fns, states, strict=True)}

    def fold(self, rows: Iterable[list[Any]]) -> dict[str, Any]:
        states = self.initial()
        for row in rows:
            self.add(states, row)
        return self.results(states)


@lru_cache(maxsize=1024)
def _compile_add(functions: tuple[str, ...], slots: tuple[int | None, ...], *, ts_arg: bool = False) -> Any:
    """``add(states, row)`` folding a row ``[ts, *column values]`` into ``states`` in place (null values
    skipped), as one compiled function: reads fold a few events per entity and view, so the per-row loop
    over the aggregations is what a read of many entities costs. Same result as calling each fold's add.
    ``ts_arg``: ``add(states, row, ts)``, the time given apart (``slots`` then index the row as it is)."""
    lines = ["def add(states, row, ts):"] if ts_arg else ["def add(states, row):", "    ts = row[0]"]
    namespace: dict[str, Any] = {}
    for i, (function, slot) in enumerate(zip(functions, slots, strict=True)):
        namespace[f"add{i}"] = FUNCTIONS[function].add
        if slot is None:
            lines.append(f"    states[{i}] = add{i}(states[{i}], None, ts)")
        else:
            lines.append(f"    value = row[{int(slot)}]")
            lines.append(f"    if value is not None: states[{i}] = add{i}(states[{i}], value, ts)")
    exec("\n".join(lines), namespace)  # noqa: S102 - built from indices only
    return namespace["add"]
