"""The offline log's layout: paths and the explicit Arrow schema of each view.

``<root>/<view>/v<version>/date=YYYY-MM-DD/part-<partition>-<first source offset>.parquet``
(the root a local directory or an ``s3://`` prefix: :mod:`freshet.features.log_store`)
with columns: the entity key, ``feature_ts``, ``window_start``, ``window_end``,
the features, ``source_partition``, ``source_offset``, ``produced_at``.
Times are UTC millisecond timestamps.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from freshet.features.definitions import FeatureView
from freshet.features.log_store import LogRoot, open_log_root

ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
TS_TYPE = pa.timestamp("ms", tz="UTC")
PART_NAME = re.compile(r"^part-(\d+)-(\d+)\.parquet$")


def view_schema(view: FeatureView) -> pa.Schema:
    entity_type = ARROW_TYPES[view.source.event_schema[view.entity_key]]
    fields = [
        pa.field(view.entity_key, entity_type, nullable=False),
        pa.field("feature_ts", TS_TYPE, nullable=False),
        pa.field("window_start", TS_TYPE, nullable=False),
        pa.field("window_end", TS_TYPE, nullable=False),
    ]
    fields += [pa.field(name, ARROW_TYPES[kind]) for name, kind in view.feature_types().items()]
    fields += [
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("produced_at", TS_TYPE, nullable=False),
    ]
    return pa.schema(fields, metadata={"freshet.view": view.name, "freshet.version": str(view.version)})


def view_dir(root: LogRoot | str | Path, view: FeatureView) -> str:
    return open_log_root(root).join(view.name, f"v{view.version}")


_DAY_MS = 86_400_000


@lru_cache(maxsize=4096)
def _date_of_day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


def date_of(ts_ms: int) -> str:
    """The UTC date (YYYY-MM-DD) of an epoch-millisecond time: the log's partition."""
    return _date_of_day(ts_ms // _DAY_MS)


def part_path(root: LogRoot | str | Path, view: FeatureView, date: str, partition: int, first_offset: int) -> str:
    return f"{view_dir(root, view)}/date={date}/part-{partition}-{first_offset}.parquet"


def list_parts(root: LogRoot | str | Path, view: FeatureView, partition: int | None = None, *,
               from_ms: int | None = None, to_ms: int | None = None) -> list[str]:
    """Every finished part file of a view: optionally of one source partition, and of the dates that
    can hold a feature_ts in [from_ms, to_ms]."""
    log_root = open_log_root(root)
    return parts_under(log_root, view_dir(log_root, view), partition, from_ms=from_ms, to_ms=to_ms)


def parts_under(root: LogRoot, version_dir: str, partition: int | None = None, *, from_ms: int | None = None,
                to_ms: int | None = None) -> list[str]:
    """The finished part files below one ``<view>/v<version>`` directory (the one log-file lister)."""
    first = date_of(from_ms) if from_ms is not None else None
    last = date_of(to_ms) if to_ms is not None else None
    out = []
    prefix = version_dir.rstrip("/") + "/"
    for path in root.files(version_dir):
        date_dir, _, name = path[len(prefix):].partition("/")
        match = PART_NAME.match(name)
        if not match or not date_dir.startswith("date=") or (partition is not None and int(match.group(1)) != partition):
            continue
        date = date_dir.removeprefix("date=")
        if (first is None or date >= first) and (last is None or date <= last):
            out.append(path)
    return out
