"""One Quix Streams aggregator per view: all of its aggregations in one state value.

Keeping every aggregation of a view in one list means one state read and one
write per window update, however many features the view has. The folds
themselves are the engine-independent ones in :mod:`features.aggregations`.
"""

from __future__ import annotations

from typing import Any

from quixstreams.dataframe.windows.aggregations import BaseAggregator

from features.aggregations import FUNCTIONS
from features.definitions import FeatureView


class ViewAggregator(BaseAggregator):  # type: ignore[type-arg]
    """Folds an event into every aggregation of ``view`` at once."""

    def __init__(self, view: FeatureView) -> None:
        self._names = [a.name for a in view.aggregations]
        self._columns = [a.column for a in view.aggregations]
        self._fns = [FUNCTIONS[a.function] for a in view.aggregations]
        self._plan = list(zip(self._columns, self._fns, strict=True))
        # the state key changes whenever the aggregation list changes
        self._suffix = "view/" + ",".join(f"{a.function}:{a.column or ''}" for a in view.aggregations)

    @property
    def state_suffix(self) -> str:
        return self._suffix

    def initialize(self) -> list[Any]:
        return [fn.initial() for fn in self._fns]

    def agg(self, old: list[Any], new: dict[str, Any], timestamp: int) -> list[Any]:
        out = []
        for (column, fn), state in zip(self._plan, old, strict=True):
            if column is None:
                out.append(fn.add(state, None, timestamp))
                continue
            value = new.get(column)
            out.append(state if value is None else fn.add(state, value, timestamp))
        return out

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [fn.merge(x, y) for fn, x, y in zip(self._fns, a, b, strict=True)]

    def result(self, value: list[Any]) -> dict[str, Any]:
        return {name: fn.result(state) for name, fn, state in zip(self._names, self._fns, value, strict=True)}
