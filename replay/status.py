"""`freshet status`: per view and version, the live group's lag and the range its log covers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException

from freshet.features.as_of_layout import EVENT_TS, list_accepted_parts
from freshet.features.log_store import RootLike, open_log_root
from freshet.features.offline_layout import list_parts
from freshet.features.registry import Registry
from freshet.pipelines.offsets import GroupLag
from freshet.replay.plan import find_plans


def log_range(root: RootLike, view: Any, *, accepted: bool = False) -> dict[str, Any]:
    """Files, rows and the time range of a view's values log (``accepted``: its accepted-event log,
    the range then being of event times)."""
    log_root = open_log_root(root)
    files = list_accepted_parts(log_root, view) if accepted else list_parts(log_root, view)
    rows, low, high = 0, None, None
    for path in files:
        meta = log_root.parquet_metadata(path)
        rows += meta.num_rows
        index = meta.schema.to_arrow_schema().get_field_index(EVENT_TS if accepted else "feature_ts")
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(index).statistics
            if stats is not None and stats.has_min_max:
                lo, hi = _ms(stats.min), _ms(stats.max)
                low = lo if low is None else min(low, lo)
                high = hi if high is None else max(high, hi)
    if accepted:
        return {"files": len(files), "rows": rows, "event_ts_from": _iso(low), "event_ts_to": _iso(high)}
    return {"files": len(files), "rows": rows, "feature_ts_from": _iso(low), "feature_ts_to": _iso(high)}


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def group_lag(kafka: dict[str, Any], group: str, topic: str, partitions: int) -> dict[str, Any]:
    lag = GroupLag(kafka, group, [topic])
    try:
        found = lag.per_partition()
    except KafkaException as exc:
        return {"group": group, "lag": None, "by_partition": {}, "started": False,
                "error": f"topic {topic!r} cannot be read: {exc.args[0].str() if exc.args else exc}"}
    finally:
        lag.close()
    if found is None:
        return {"group": group, "lag": None, "by_partition": {}, "started": False,
                "error": f"topic {topic!r} does not exist (`freshet topics` creates it)"}
    behind, started = found
    per = {p: n for (_t, p), n in sorted(behind.items())}
    return {"group": group, "lag": sum(per.values()) if started else None, "by_partition": per, "started": started}


def view_status(registry: Registry, kafka: dict[str, Any] | None, root: RootLike, group: str | None) -> list[dict[str, Any]]:
    plans = find_plans(root)
    out = []
    for view in registry.views.values():
        row: dict[str, Any] = {"view": view.name, "version": view.version, "topic": view.source.topic,
                               "as_of": view.as_of, "log": log_range(root, view)}
        if view.as_of == "request":
            row["accepted_log"] = log_range(root, view, accepted=True)
        if kafka is not None:
            row["live"] = group_lag(kafka, group or f"freshet.{view.source.topic}", view.source.topic,
                                    view.source.partitions)
        row["replays"] = [{"plan": p.plan_id, "status": p.status, "created_at": p.created_at,
                           "group": p.group, "end": p.end} for p in plans if [view.name, view.version] in
                          [list(x) for x in p.views]]
        out.append(row)
    return out



