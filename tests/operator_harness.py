"""Drive the window operator directly (no Kafka) and compare outputs with a tolerance, for tests."""

from __future__ import annotations

import math
from typing import Any

from freshet.features.definitions import FeatureView
from freshet.pipelines.tiles import EmittedValue, LateReport, SourceOperator
from tests.window_reference import Event, Late, Row


def run_operator(views: list[FeatureView], events: list[Event]) -> tuple[dict[Row, dict[str, Any]], list[Late]]:
    """Rows and late reports of the operator over valid ``events`` in read order (state per key)."""
    operator = SourceOperator(views)
    states: dict[str, Any] = {}
    rows: dict[Row, dict[str, Any]] = {}
    late: list[Late] = []
    for ts, event, partition, offset in events:
        event = {**event, "__event_ts": ts}
        key = str(event[operator.entity_key])
        state = states.setdefault(key, operator.initial())
        emitted: list[EmittedValue] = []
        reports: list[LateReport] = []
        operator.process(state, event, partition, offset, emitted, reports)
        for e in emitted:
            view = views[e.view]
            row = (view.name, e.entity, e.window_start, e.window_end, e.feature_ts, e.source_partition,
                   e.source_offset)
            assert row not in rows, f"emitted twice: {row}"
            rows[row] = dict(zip(view.feature_names(), e.values, strict=True))
        for r in reports:
            late.append((views[r.view].name, r.entity, ts, r.late_by_ms, r.window_start, r.window_end,
                         r.source_partition, r.source_offset))
    return rows, late


def same_value(a: Any, b: Any, rel: float = 1e-9, abs_tol: float = 1e-9) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)
    return bool(a == b) and type(a) is type(b)


def row_differences(expected: dict[Row, dict[str, Any]], actual: dict[Row, dict[str, Any]]) -> list[str]:
    """Human-readable differences (missing, extra, different values), empty when equal."""
    out = [f"missing {k}" for k in expected.keys() - actual.keys()]
    out += [f"extra {k}: {actual[k]}" for k in actual.keys() - expected.keys()]
    for k in expected.keys() & actual.keys():
        bad = {n: (v, actual[k].get(n)) for n, v in expected[k].items() if not same_value(v, actual[k].get(n))}
        if bad:
            out.append(f"differs {k}: {bad}")
    return sorted(out)
