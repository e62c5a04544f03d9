"""Plain-text tables for people (commands print them; `--json` is for scripts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def format_table(rows: Sequence[Sequence[str]], *, right_from: int | None = None) -> list[str]:
    """Rows (the first is the header) as aligned lines; columns from ``right_from`` on are right-aligned
    (numbers), the others left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if right_from is not None and i >= right_from else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]


def format_value(value: Any) -> str:
    """A feature value for people: floats to 6 significant digits (no ``25.380000000000003``)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_time(ms: int | None) -> str:
    """Epoch milliseconds as ISO-8601 UTC to the millisecond."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def format_age(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    if abs(seconds) < 120:
        return f"{seconds:.1f}s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.1f}m"
    if abs(seconds) < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def per_view(vector: Any) -> dict[str, dict[str, Any]]:
    """A feature vector regrouped by view: its features and its freshness."""
    out: dict[str, dict[str, Any]] = {}
    for label, fresh in vector.freshness.items():
        prefix = label + ":"
        out[label] = {"features": {k.removeprefix(prefix): v for k, v in vector.values.items()
                                   if k.startswith(prefix)}, **fresh}
    return out


FEATURE_HEADER = ["entity", "view", "features", "feature_ts (UTC)", "age", "stale"]


def feature_rows(vectors: Sequence[Any]) -> list[list[str]]:
    """One row per entity and view, sorted: features as name=value, or ``(no value)``."""
    rows = []
    for vector in vectors:
        for view, value in per_view(vector).items():
            features = ", ".join(f"{k}={format_value(v)}" for k, v in value["features"].items())
            rows.append([str(vector.entity), view, features if value["found"] else "(no value)",
                         format_time(value["feature_ts"]), format_age(value["age_ms"]),
                         ("yes" if value["stale"] else "no") if value["found"] else "-"])
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows
