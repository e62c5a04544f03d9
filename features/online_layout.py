"""How feature values are laid out in Redis (shared by the writer and the readers).

One hash per (view, version, entity): ``freshet:{<entity>}:<view>:v<version>``.
The braces are a Redis Cluster hash tag, so all of an entity's views live in one
slot and one round trip reads them. Fields: one per feature (JSON text),
``__ts`` (feature_ts, ms), ``__off`` (source offset), ``__ws``/``__we`` (window).
"""

from __future__ import annotations

import json
from typing import Any

KEY_PREFIX = "freshet"
TS_FIELD = "__ts"
OFFSET_FIELD = "__off"
WINDOW_START_FIELD = "__ws"
WINDOW_END_FIELD = "__we"
META_FIELDS = (TS_FIELD, OFFSET_FIELD, WINDOW_START_FIELD, WINDOW_END_FIELD)


def online_key(view: str, version: int, entity: object) -> str:
    return f"{KEY_PREFIX}:{{{entity}}}:{view}:v{version}"


def marker_key(view: str, version: int) -> str:
    """The key whose presence says the store still holds what the pipeline wrote for a view
    (pipelines.store_guard): a store that lost it lost the view's values too."""
    return f"{KEY_PREFIX}:__marker__:{view}:v{version}"


def encode_value(value: Any) -> str:
    """JSON text of a feature value (fast paths for the common scalar types)."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float and value == value and value not in (_INF, -_INF):
        return repr(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"))


_INF = float("inf")


def decode_value(text: str | bytes | None) -> Any:
    if text is None:
        return None
    return json.loads(text)


# Newer-wins compare-and-set, for many hashes in one call. KEYS: the hashes. ARGV: per key, in order:
# feature_ts, source offset, ttl ms, the number of field/value items that follow, then those items. A
# write whose (feature_ts, offset) is not strictly newer than its hash's stored one changes nothing, so
# retries, replays and out-of-order flushes never move a value backwards. Returns how many hashes
# changed. (On a Redis Cluster every key of one call must share a slot: the writer groups them by hash
# tag; on a single node a call carries up to a few hundred keys of any entities.)
NEWER_WINS_LUA = """
local applied = 0
local a = 1
for k = 1, #KEYS do
  local ts, off, ttl = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local first = a + 4
  local last = a + 3 + tonumber(ARGV[a + 3])
  a = last + 1
  local cur = redis.call('HMGET', KEYS[k], '__ts', '__off')
  local newer = true
  if cur[1] then
    local cts = tonumber(cur[1])
    local coff = tonumber(cur[2]) or -1
    local nts = tonumber(ts)
    if cts > nts or (cts == nts and coff >= tonumber(off)) then
      newer = false
    end
  end
  if newer then
    redis.call('HSET', KEYS[k], '__ts', ts, '__off', off, unpack(ARGV, first, last))
    redis.call('PEXPIRE', KEYS[k], ttl)
    applied = applied + 1
  end
end
return applied
"""
