"""Materialization of request-time views: their accepted events written back to Redis from the log.

A request-time view (``as_of: request``) is read from the events it accepted
(:mod:`freshet.features.as_of_layout`), so a store that lost them is refilled from the
accepted-event log, not from the values log: per entity, the events within the view's online
retention of its newest one, through the pipeline's own accept script (an event already there is
not added twice, and nothing moves backwards, so it can run while the pipeline runs).

Expiry is the pipeline's: an entity's keys live ``expire_ms(view)`` after its last write, so an entity
whose newest event was logged (``produced_at``) longer ago than that is skipped as expired.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from freshet.features.as_of_layout import (
    EVENT_TS,
    FIRST_WINDOW_START,
    accepted_schema,
    expire_ms,
    list_accepted_parts,
    read_columns,
    retention_ms,
)
from freshet.features.definitions import FeatureView
from freshet.features.log_store import RootLike, open_log_root
from freshet.pipelines.online_sink import RedisOnlineWriter

BATCH = 20_000  # events per round trip


def _ms(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pc.cast(column, pa.int64())


def retained_events(root: RootLike, view: FeatureView, *, entities: Iterable[Any] | None = None,
                    now_ms: int) -> tuple[pa.Table, int, int]:
    """The accepted events Redis would still hold: per entity not expired, those within the retention of
    its newest event, sorted by entity and time. Also the entities seen and the entities expired."""
    log_root = open_log_root(root)
    files = list_accepted_parts(log_root, view)
    schema = accepted_schema(view)
    key = view.entity_key
    if not files:
        return schema.empty_table(), 0, 0
    table = log_root.dataset(files, schema).to_table()
    if entities is not None:
        wanted = pa.array(list(entities), type=schema.field(key).type)
        table = table.filter(pc.is_in(table[key], value_set=wanted))
    if table.num_rows == 0:
        return table, 0, 0
    per_entity = table.group_by(key).aggregate([(EVENT_TS, "max"), ("produced_at", "max")])
    newest = _ms(per_entity[f"{EVENT_TS}_max"])
    alive = pc.greater(pc.add(_ms(per_entity["produced_at_max"]), expire_ms(view)), now_ms)
    seen = per_entity.num_rows
    keep = per_entity.filter(alive)
    cutoff = pa.table({key: keep[key], "cut": pc.subtract(newest.filter(alive), retention_ms(view))})
    joined = table.join(cutoff, key, join_type="inner")
    joined = joined.filter(pc.greater_equal(_ms(joined[EVENT_TS]), joined["cut"]))
    joined = joined.sort_by([(key, "ascending"), (EVENT_TS, "ascending"), ("source_partition", "ascending"),
                             ("source_offset", "ascending")])
    return joined, seen, seen - keep.num_rows


def materialize_accepted(root: RootLike, view: FeatureView, writer: RedisOnlineWriter, *,
                         entities: Iterable[Any] | None = None,
                         now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                         progress: Callable[[int, int], None] | None = None) -> tuple[int, int, int]:
    """Write the retained accepted events of ``view`` to Redis. Returns (entities seen, entities expired,
    events added: those Redis did not hold already)."""
    table, seen, expired = retained_events(root, view, entities=entities, now_ms=now_ms())
    columns = read_columns(view)
    added_before = writer.events_added
    total = table.num_rows
    for first in range(0, total, BATCH):
        chunk = table.slice(first, BATCH)
        keys = chunk[view.entity_key].to_pylist()
        ts = _ms(chunk[EVENT_TS]).to_pylist()
        starts = _ms(chunk[FIRST_WINDOW_START]).to_pylist()
        partitions, offsets = chunk["source_partition"].to_pylist(), chunk["source_offset"].to_pylist()
        values = [chunk[c].to_pylist() for c in columns]
        for i, entity in enumerate(keys):
            writer.add_accepted(view, entity, ts[i], starts[i], partitions[i], offsets[i], [v[i] for v in values])
        writer.write_pending()
        if progress is not None:
            progress(min(first + BATCH, total), total)
    return seen, expired, writer.events_added - added_before
