"""Materialization: the online store rebuilt from the Parquet log, without re-reading Kafka.

For a view (one version), the latest log row per entity - the largest ``feature_ts``,
ties to the larger source offset, then partition: the point-in-time rule of
training sets at "now" - is written to Redis through the pipeline's own newer-wins
script (:class:`freshet.pipelines.online_sink.RedisOnlineWriter`), so it never moves a
fresher live value backwards and can run while the pipeline runs.

Expiry is the pipeline's: a value written at ``produced_at`` lived ``ttl`` from then,
so a row whose ``produced_at + ttl`` has passed is skipped as expired, and the others
get the time they had left (the key expires when it would have expired had Redis
never lost it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from freshet.features.definitions import FeatureView
from freshet.features.log_store import RootLike
from freshet.features.online_layout import online_key
from freshet.features.training import read_view_log
from freshet.pipelines.online_sink import RedisOnlineWriter

BATCH = 5_000  # writes per round trip


@dataclass
class MaterializeSummary:
    view: str
    version: int
    log_rows: int  # rows read from the log (after --since)
    entities: int  # entities with a latest row (after --entities-file)
    written: int  # hashes changed
    skipped_older: int  # Redis already held a value at least as new
    skipped_expired: int  # the value's TTL had passed
    seconds: float
    events_added: int = 0  # request-time views: accepted events Redis did not hold (pipelines.materialize_as_of)
    events_expired: int = 0  # request-time views: entities whose events' keys would have expired

    def json(self) -> dict[str, Any]:
        return asdict(self)


def latest_rows(root: RootLike, view: FeatureView, *, since_ms: int | None = None,
                entities: Iterable[Any] | None = None) -> tuple[pa.Table, int]:
    """The latest log row per entity (and how many rows were read), optionally only rows with
    ``feature_ts >= since_ms`` and only the given entities."""
    columns = ["window_start", "window_end", *view.feature_names(), "produced_at"]
    table = read_view_log(root, view, columns, since_ms, None)
    if since_ms is not None and table.num_rows:
        table = table.filter(pc.greater_equal(pc.cast(table["feature_ts"], pa.int64()), since_ms))
    read = table.num_rows
    key = view.entity_key
    if entities is not None and table.num_rows:
        wanted = pa.array(list(entities), type=table.schema.field(key).type)
        table = table.filter(pc.is_in(table[key], value_set=wanted))
    if table.num_rows == 0:
        return table, read
    # sorted by entity, then the as-of order; an entity's last row is its latest
    table = table.sort_by([(key, "ascending"), ("feature_ts", "ascending"), ("source_offset", "ascending"),
                           ("source_partition", "ascending")])
    keys = table[key].combine_chunks()
    n = len(keys)
    last = pc.not_equal(keys.slice(0, n - 1), keys.slice(1))
    is_last = pa.concat_arrays([pc.fill_null(last, True), pa.array([True])])
    return table.filter(is_last), read


def _ms(column: pa.ChunkedArray) -> list[int]:
    return pc.cast(column, pa.int64()).to_pylist()  # type: ignore[no-any-return]


def materialize_view(root: RootLike, view: FeatureView, writer: RedisOnlineWriter, *,
                     since_ms: int | None = None, entities: Iterable[Any] | None = None,
                     now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                     progress: Callable[[int, int], None] | None = None) -> MaterializeSummary:
    """Write the view's latest log row per entity to Redis (newer wins); ``progress(done, total)``."""
    started = time.monotonic()
    table, read = latest_rows(root, view, since_ms=since_ms, entities=entities)
    names = view.feature_names()
    total = table.num_rows
    expired = 0
    applied_before = writer.applied
    now = now_ms()
    for first in range(0, total, BATCH):
        chunk = table.slice(first, BATCH)
        entity_values = chunk[view.entity_key].to_pylist()
        ts, offsets = _ms(chunk["feature_ts"]), chunk["source_offset"].to_pylist()
        starts, ends, produced = _ms(chunk["window_start"]), _ms(chunk["window_end"]), _ms(chunk["produced_at"])
        features = [chunk[name].to_pylist() for name in names]
        queued = 0
        for i, entity in enumerate(entity_values):
            left = produced[i] + view.ttl - now
            if left <= 0:
                expired += 1
                continue
            writer.add(online_key(view.name, view.version, entity), ts[i], offsets[i], left, names,
                       [column[i] for column in features], starts[i], ends[i])
            queued += 1
        if queued:
            writer.write_pending()
        if progress is not None:
            progress(min(first + BATCH, total), total)
    written = writer.applied - applied_before
    older = total - expired - written
    events_added = events_expired = 0
    if view.as_of == "request":  # reads come from the accepted events: those are refilled too
        from freshet.pipelines.materialize_as_of import materialize_accepted

        _seen, events_expired, events_added = materialize_accepted(root, view, writer, entities=entities,
                                                                   now_ms=now_ms)
    return MaterializeSummary(view.name, view.version, read, total, written, older, expired,
                              round(time.monotonic() - started, 3), events_added, events_expired)
