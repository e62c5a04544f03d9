"""Where request-time views (``as_of: request``) keep their accepted events, online and offline.

A request-time read (:mod:`freshet.features.as_of`) is answered from the events the window operator
*accepted* for the view (valid, and counted in at least one window), so both stores keep those:

- **Offline**, a second log per view beside the values log, with the same crash guarantees (written by
  the same writer, named by source offsets)::

      <root>/_accepted/<view>/v<version>/date=YYYY-MM-DD/part-<partition>-<first source offset>.parquet

  one row per accepted event: the entity key, ``event_ts``, ``first_window_start`` (the earliest window
  the event counts in; sliding views: the event's time), the columns the view's aggregations read (the
  source's types), ``source_partition``, ``source_offset``, ``produced_at``. The leading underscore keeps
  it out of dataset discovery over ``<root>`` (pyarrow, Spark and Hive skip ``_`` names).
- **Online**, per (view, version, entity), a sorted set ``freshet:{<entity>}:<view>:v<version>:ev`` of
  the accepted events (score: the event time; member: :func:`encode_member`) and a hash
  ``...:evm`` with ``wm`` (the largest event time written) and ``floor`` (reads whose window starts
  before it are refused: events before it were trimmed). Same hash tag as the values hash, so an
  entity's keys share a slot.

Retention (:func:`retention_ms`): events older than ``wm`` minus the view's ``ttl`` (at least the
longest reach a read at the watermark needs) are trimmed online; ``at`` reads reach back that far.

The online half (keys, members, retention, the write script) is in
:mod:`freshet.features.as_of_online_layout`, which the online SDK imports without pyarrow.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from freshet.features.as_of_online_layout import (
    ACCEPT_EVENTS_LUA,
    MAX_ONLINE_EVENTS,
    decode_member,
    encode_member,
    events_key,
    events_meta_key,
    expire_ms,
    reach_ms,
    read_columns,
    retention_ms,
)
from freshet.features.definitions import FeatureView
from freshet.features.log_store import LogRoot, open_log_root
from freshet.features.offline_layout import ARROW_TYPES, TS_TYPE, parts_under

# the online half lives in as_of_online_layout (no pyarrow: the online SDK imports it); named here too
__all__ = ["ACCEPTED_DIR", "ACCEPT_EVENTS_LUA", "EVENT_TS", "FIRST_WINDOW_START", "MAX_ONLINE_EVENTS",
           "accepted_dir", "accepted_schema", "decode_member", "encode_member", "events_key", "events_meta_key",
           "expire_ms", "list_accepted_parts", "reach_ms", "read_columns", "retention_ms"]

ACCEPTED_DIR = "_accepted"
EVENT_TS = "event_ts"
FIRST_WINDOW_START = "first_window_start"


def accepted_schema(view: FeatureView) -> pa.Schema:
    schema = view.source.event_schema
    fields = [
        pa.field(view.entity_key, ARROW_TYPES[schema[view.entity_key]], nullable=False),
        pa.field(EVENT_TS, TS_TYPE, nullable=False),
        pa.field(FIRST_WINDOW_START, TS_TYPE, nullable=False),
        *(pa.field(c, ARROW_TYPES[schema[c]]) for c in read_columns(view)),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("produced_at", TS_TYPE, nullable=False),
    ]
    return pa.schema(fields, metadata={"freshet.view": view.name, "freshet.version": str(view.version),
                                       "freshet.log": "accepted"})


def accepted_dir(root: LogRoot | str | Path, view: FeatureView) -> str:
    return open_log_root(root).join(ACCEPTED_DIR, view.name, f"v{view.version}")


def list_accepted_parts(root: LogRoot | str | Path, view: FeatureView, partition: int | None = None) -> list[str]:
    log_root = open_log_root(root)
    return parts_under(log_root, accepted_dir(log_root, view), partition)
