"""The online half of the accepted-events layout (:mod:`freshet.features.as_of_layout`), without pyarrow.

Per (view, version, entity) of a request-time view, Redis holds a sorted set :func:`events_key` of the
accepted events (score: the event time; member: :func:`encode_member`, unique per source record) and a
hash :func:`events_meta_key` with ``wm`` (the largest event time written) and ``floor`` (every accepted
event with a time at or after it is in the set; a read whose window starts before it is refused).

- Retention (:func:`retention_ms`): events more than ``max(ttl, size + step + grace)`` behind ``wm`` are
  trimmed, and the floor follows.
- Cap: at most :data:`MAX_ONLINE_EVENTS` per set; past it the oldest go (at least an eighth of the cap)
  and the floor moves past them.
- Expiry (:func:`expire_ms`): both keys expire ``retention + ttl`` after the entity's last write (wall
  time); an expired entity reads as one without events, as an entity never seen does. (So a read far in
  the past of an entity quiet for longer than that is answered as empty, not refused.)
- Writes: :data:`ACCEPT_EVENTS_LUA`, idempotent and monotone (see there).
"""

from __future__ import annotations

from typing import Any

import orjson

from freshet.features.definitions import FeatureView, SlidingWindow

MAX_ONLINE_EVENTS = 10_000  # per (entity, view) online: past it the oldest go and the floor moves up


def read_columns(view: FeatureView) -> list[str]:
    """The event columns the view's aggregations read, sorted (the order members and rows keep them in)."""
    return sorted({a.column for a in view.aggregations if a.column is not None})


def reach_ms(view: FeatureView) -> int:
    """How far back from the watermark a read at the watermark (within grace) needs events."""
    window = view.window
    step = 0 if isinstance(window, SlidingWindow) else window.step
    return window.size + step + view.grace


def retention_ms(view: FeatureView) -> int:
    """How far behind an entity's newest accepted event the online store keeps its events."""
    return max(view.ttl, reach_ms(view))


def events_key(view: str, version: int, entity: object) -> str:
    return f"freshet:{{{entity}}}:{view}:v{version}:ev"


def events_meta_key(view: str, version: int, entity: object) -> str:
    return f"freshet:{{{entity}}}:{view}:v{version}:evm"


def encode_member(partition: int, offset: int, first_start: int, values: list[Any]) -> bytes:
    """An accepted event's sorted-set member (its score is the event time): unique per source record."""
    return orjson.dumps([partition, offset, first_start, *values])


def decode_member(member: bytes) -> tuple[int, int, int, list[Any]]:
    """``(source partition, source offset, first_window_start, column values)`` of a member."""
    partition, offset, first_start, *values = orjson.loads(member)
    return partition, offset, first_start, values


def expire_ms(view: FeatureView) -> int:
    """How long an entity's event keys live after its last write (Redis PEXPIRE, wall-clock time):
    ``retention_ms + ttl``, so a key outlives every read that can still reach its newest event. An
    expired entity reads as one with no event (the empty window), as one never seen does."""
    return retention_ms(view) + view.ttl


# The accepted-events write: many event sets per call (pipelines.online_calls: any entities on a single
# node, one entity's views on a Redis Cluster, whose keys share a slot). KEYS: per set, the events'
# sorted set and its meta hash. ARGV: the cap, then per set: retention ms, expire ms, the number of
# score/member pairs and the pairs (score: the event time). Per set: wm' = max(wm, newest time given); floor' = max(floor,
# wm' - retention); members with a time below floor' are not added and are removed; past the cap the
# oldest go (at least an eighth of the cap) and floor' moves past the newest of them (taking its ties
# along). Members name their source record, so a repeated write adds nothing, and wm and floor never
# move back: retries, replays and out-of-order flushes leave the store as the newest write left it.
# Returns the members added. (Numbers leave Lua through %d: its default %.14g would round times past
# 14 digits.)
ACCEPT_EVENTS_LUA = """
local cap = tonumber(ARGV[1])
local a = 2
local total = 0
for v = 1, #KEYS, 2 do
  local key, meta_key = KEYS[v], KEYS[v + 1]
  local retention = tonumber(ARGV[a])
  local expire = ARGV[a + 1]
  local first = a + 3
  local last = a + 2 + 2 * tonumber(ARGV[a + 2])
  a = last + 1
  local meta = redis.call('HMGET', meta_key, 'wm', 'floor')
  local wm = tonumber(meta[1]) or -1
  local floor = tonumber(meta[2]) or 0
  for i = first, last, 2 do
    local ts = tonumber(ARGV[i])
    if ts > wm then wm = ts end
  end
  if wm - retention > floor then floor = wm - retention end
  local pairs_ = {}
  for i = first, last, 2 do
    if tonumber(ARGV[i]) >= floor then
      pairs_[#pairs_ + 1] = ARGV[i]
      pairs_[#pairs_ + 1] = ARGV[i + 1]
      if #pairs_ >= 1000 then
        total = total + redis.call('ZADD', key, unpack(pairs_))
        pairs_ = {}
      end
    end
  end
  if #pairs_ > 0 then
    total = total + redis.call('ZADD', key, unpack(pairs_))
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', floor))
  local n = redis.call('ZCARD', key)
  if n > cap then
    local drop = n - cap + math.floor(cap / 8)
    local dropped = redis.call('ZRANGE', key, drop - 1, drop - 1, 'WITHSCORES')
    floor = tonumber(dropped[2]) + 1
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', floor))
  end
  redis.call('HSET', meta_key, 'wm', string.format('%d', wm), 'floor', string.format('%d', floor))
  redis.call('PEXPIRE', key, expire)
  redis.call('PEXPIRE', meta_key, expire)
end
return total
"""
