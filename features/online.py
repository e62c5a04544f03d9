"""The online SDK: typed feature vectors for many entities and views in one Redis round trip.

Features are named ``view:feature``, a whole ``view``, or pinned to a version
``view@2:feature``. Each vector carries, per view, ``feature_ts`` (the event
time from which the value holds) and its age. A missing entity gives nulls,
not an error. A value older than the view's TTL follows the view's
``online_staleness`` policy: ``null`` (the default) returns nulls and reports
it stale; ``flag`` returns the value and reports it stale. TLS (``rediss://``)
and AUTH (``redis://user:password@host``) come from the URL; connections are
pooled.

Request-time views (``as_of: request``) are answered as of an instant, ``at`` (epoch ms) or now, from
the accepted events Redis keeps for them (:mod:`freshet.features.online_as_of`), in the same round
trip. ``at`` is refused when a last-event view is asked for (see there).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import redis.asyncio as aredis
from redis.exceptions import RedisClusterException

from freshet.features.as_of_online_layout import events_key, events_meta_key
from freshet.features.definitions import FeatureView
from freshet.features.errors import OnlineStoreError
from freshet.features.online_as_of import EventsReply, RequestViewReader, WindowRead, check_at, window_read
from freshet.features.online_layout import TS_FIELD, decode_value, marker_key, online_key
from freshet.features.redact import redact_url
from freshet.features.redis_connect import async_client, is_cluster, sync_client
from freshet.features.references import parse_references

_CASTS: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass(frozen=True)
class ViewRequest:
    view: FeatureView
    version: int
    features: tuple[str, ...]
    labels: tuple[str, ...]  # the output name of each feature


@dataclass
class FeatureVector:
    entity: Any
    values: dict[str, Any] = field(default_factory=dict)
    freshness: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "features": self.values, "freshness": self.freshness}


def plan_request(views: dict[str, FeatureView], names: Sequence[str]) -> list[ViewRequest]:
    """Group requested features by (view, version), validating every name (features.references)."""
    grouped: dict[tuple[str, int], tuple[FeatureView, list[str], list[str]]] = {}
    for ref in parse_references(views, names):
        _, feats, labels = grouped.setdefault((ref.view.name, ref.view.version), (views[ref.view.name], [], []))
        for f in ref.features:
            label = f"{ref.head}:{f}"
            if label not in labels:  # one answer per name asked for: view:f and view@N:f may both be asked
                feats.append(f)
                labels.append(label)
    # a pinned older version (view@N) is read as its values hash: the registry holds only the current
    # definition, and every version's pipeline wrote that hash (request-time views keep it too)
    return [ViewRequest(v if ver == v.version else v.model_copy(update={"as_of": "last_event"}), ver, tuple(f),
                        tuple(lbl)) for (_, ver), (v, f, lbl) in grouped.items()]


# One command for a whole request: HMGET on every key inside Redis, so a request for
# 100 entities x 3 views costs one command to build and one reply to parse, not 300.
# ARGV: the number of groups, then per group (one view): 'h', its entity count, its field
# count and its fields (a last-event view's hashes: one key per entity), or 'z', its entity
# count and a score range (a request-time view: two keys per entity, the events' sorted set
# and its meta hash; one reply for the whole group, JSON text built in Redis so that the client
# parses it in one call: per entity [floor or null, score, member, score, member, ...], members
# being JSON arrays themselves);
# KEYS: the keys of group 1, then of group 2, ... (Keys of different entities live in
# different cluster slots: on Redis Cluster the same commands go in a pipeline, per node.)
BATCH_READ_LUA = """
local out = {}
local k = 1
local r = 1
local a = 2
for g = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a + 1])
  if ARGV[a] == 'h' then
    local first = a + 3
    local last = a + 2 + tonumber(ARGV[a + 2])
    for _ = 1, n do
      out[r] = redis.call('HMGET', KEYS[k], unpack(ARGV, first, last))
      k = k + 1
      r = r + 1
    end
    a = last + 1
  else
    local lo = ARGV[a + 2]
    local hi = ARGV[a + 3]
    local entities = {}
    for e = 1, n do
      local z = redis.call('ZRANGEBYSCORE', KEYS[k], lo, hi, 'WITHSCORES')
      local buf = {redis.call('HGET', KEYS[k + 1], 'floor') or 'null'}
      for j = 1, #z, 2 do
        buf[j + 1] = z[j + 1]
        buf[j + 2] = z[j]
      end
      entities[e] = '[' .. table.concat(buf, ',') .. ']'
      k = k + 2
    end
    out[r] = '[' .. table.concat(entities, ',') .. ']'
    r = r + 1
    a = a + 4
  end
end
return out
"""


@dataclass(frozen=True)
class ReadPlan:
    """What one request reads: per view, its hash fields (last-event views) or its window (request-time
    views; None when no window has ended by ``t``: nothing is read)."""

    requests: list[ViewRequest]
    windows: list[WindowRead | None]  # one per request; None for last-event views too
    t: int  # the instant request-time views are read as of
    now_ms: int

    def reads(self, i: int) -> bool:
        return self.requests[i].view.as_of != "request" or self.windows[i] is not None


def read_plan(requests: list[ViewRequest], at: int | None, now_ms: int) -> ReadPlan:
    """``at``: epoch ms, or None for ``now_ms``; raises RequestError for an ``at`` the views cannot take."""
    checked = check_at([r.view for r in requests], at)
    t = now_ms if checked is None else checked
    windows = [window_read(r.view, t) if r.view.as_of == "request" else None for r in requests]
    return ReadPlan(requests, windows, t, now_ms)


def _script_args(plan: ReadPlan, entities: Sequence[Any]) -> tuple[list[str], list[Any]]:
    keys: list[str] = []
    argv: list[Any] = [0]
    for i, req in enumerate(plan.requests):
        if not plan.reads(i):
            continue
        argv[0] += 1
        window = plan.windows[i]
        if window is None:
            prefix = online_key(req.view.name, req.version, "\x00").split("\x00")
            keys.extend(f"{prefix[0]}{e}{prefix[1]}" for e in entities)
            argv += ["h", len(entities), len(req.features) + 1, TS_FIELD, *req.features]
        else:
            for e in entities:
                keys.append(events_key(req.view.name, req.version, e))
                keys.append(events_meta_key(req.view.name, req.version, e))
            argv += ["z", len(entities), *window.score_range]
    return keys, argv


def _script_replies(plan: ReadPlan, raw: list[Any], entities: Sequence[Any]) -> list[Any]:
    """The script's replies with a request-time view's turned into :class:`EventsReply`."""
    out: list[Any] = []
    i = 0
    for g, _req in enumerate(plan.requests):
        if not plan.reads(g):
            continue
        if plan.windows[g] is None:
            out.extend(raw[i:i + len(entities)])
            i += len(entities)
        else:  # one JSON text for the group
            out.extend(EventsReply.from_script(r) for r in orjson.loads(raw[i]))
            i += 1
    return out


def _queue_reads(pipe: Any, plan: ReadPlan, entities: Sequence[Any]) -> None:
    """The script's reads as pipelined commands (Redis Cluster: redis-py sends them per node)."""
    for i, req in enumerate(plan.requests):
        window = plan.windows[i]
        if not plan.reads(i):
            continue
        if window is None:
            fields = [TS_FIELD, *req.features]
            for e in entities:
                pipe.hmget(online_key(req.view.name, req.version, e), fields)
        else:
            lo, hi = window.score_range
            for e in entities:
                pipe.hget(events_meta_key(req.view.name, req.version, e), "floor")
                pipe.zrangebyscore(events_key(req.view.name, req.version, e), lo, hi, withscores=True)


def _pipeline_replies(plan: ReadPlan, raw: list[Any], entities: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    i = 0
    for g, _req in enumerate(plan.requests):
        if not plan.reads(g):
            continue
        if plan.windows[g] is None:
            out.extend(raw[i:i + len(entities)])
            i += len(entities)
        else:
            for _ in entities:
                out.append(EventsReply.from_pipeline(raw[i], raw[i + 1]))
                i += 2
    return out


def _caster(kind: str) -> Callable[[bytes], Any]:
    """A stored JSON value back to its type (numbers without a JSON parse)."""
    if kind == "int":
        return lambda raw: None if raw == b"null" else int(raw)
    if kind == "float":
        return lambda raw: None if raw == b"null" else float(raw)
    cast = _CASTS[kind]
    return lambda raw: None if raw == b"null" else cast(decode_value(raw))


def _decode(plan: ReadPlan, entities: Sequence[Any], replies: list[Any]) -> list[FeatureVector]:
    vectors = [FeatureVector(e) for e in entities]
    now_ms = plan.now_ms
    i = 0
    for req, window in zip(plan.requests, plan.windows, strict=True):
        label = req.view.name if req.version == req.view.version else f"{req.view.name}@{req.version}"
        if req.view.as_of == "request":
            if window is None:  # no window has ended by t: no value
                for vector in vectors:
                    vector.freshness[label] = {"found": False, "feature_ts": None, "age_ms": None, "stale": False}
                    vector.values.update(dict.fromkeys(req.labels))
                continue
            reader = RequestViewReader(req.view, req.features, window)
            fresh = {"found": True, "feature_ts": window.feature_ts, "age_ms": now_ms - window.feature_ts,
                     "stale": False}
            for vector in vectors:
                vector.freshness[label] = dict(fresh)
                vector.values.update(zip(req.labels, reader.values(vector.entity, replies[i]), strict=True))
                i += 1
            continue
        types = req.view.feature_types()
        casts = [_caster(types[f]) for f in req.features]
        for vector in vectors:
            reply = replies[i]
            i += 1
            raw_ts = reply[0]
            if raw_ts is None:
                vector.freshness[label] = {"found": False, "feature_ts": None, "age_ms": None, "stale": False}
                for lbl in req.labels:
                    vector.values[lbl] = None
                continue
            ts = int(raw_ts)
            age = now_ms - ts
            stale = age > req.view.ttl
            vector.freshness[label] = {"found": True, "feature_ts": ts, "age_ms": age, "stale": stale}
            hide = stale and req.view.online_staleness == "null"
            values = vector.values
            for lbl, cast, raw in zip(req.labels, casts, reply[1:], strict=True):
                values[lbl] = None if hide or raw is None else cast(raw)
    return vectors


class _ClientBase:
    """Pooled connection (blocking pool: a burst waits for a free connection instead of opening more)."""

    def __init__(self, module: Any, url: str, views: dict[str, FeatureView], *, max_connections: int = 50,
                 timeout_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self._views = views
        self._clock = clock
        self._url = url
        # a cluster refuses one script over many entities' keys (CROSSSLOT): there, a pipeline of HMGETs,
        # which redis-py sends as one batch per node
        self._cluster = is_cluster(url)
        if module is redis and self._cluster:
            try:  # a cluster client connects when built
                self._client = sync_client(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            except RedisClusterException as exc:
                raise OnlineStoreError(f"Redis Cluster at {_safe(url)} is unreachable or refused: {exc}") from None
        elif module is redis:
            self._client = (sync_client(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
                            if self._cluster else module.Redis(connection_pool=module.BlockingConnectionPool.from_url(
                                url, max_connections=max_connections, socket_timeout=timeout_s,
                                socket_connect_timeout=timeout_s, timeout=timeout_s)))
        else:
            self._client = async_client(url, max_connections=max_connections, timeout_s=timeout_s)
        self._script: Any = None if self._cluster else self._client.register_script(BATCH_READ_LUA)

    def _plan(self, requests: list[ViewRequest], at: int | None) -> ReadPlan:
        return read_plan(requests, at, int(self._clock() * 1000))


class OnlineClient(_ClientBase):
    """Synchronous client for services; ``AsyncOnlineClient`` is the same for asyncio."""

    def __init__(self, url: str, views: dict[str, FeatureView], **options: Any) -> None:
        super().__init__(redis, url, views, **options)

    def get_online_features(self, entities: Sequence[Any], features: Sequence[str],
                            at: int | None = None) -> list[FeatureVector]:
        """Vectors for ``entities`` in order. ``at`` (UTC epoch ms): the instant request-time views are read
        as of (default: now); refused (RequestError) when a last-event view is asked for. A window before
        what Redis keeps raises AsOfHorizonError."""
        plan = self._plan(plan_request(self._views, features), at)
        try:
            if self._cluster:
                pipe = self._client.pipeline()
                _queue_reads(pipe, plan, entities)
                replies = _pipeline_replies(plan, pipe.execute(), entities)
            else:
                keys, argv = _script_args(plan, entities)
                replies = _script_replies(plan, self._script(keys=keys, args=argv) if argv[0] else [], entities)
        except (redis.RedisError, RedisClusterException) as exc:
            raise OnlineStoreError(f"Redis at {_safe(self._url)} is unreachable or failed: {exc}") from exc
        return _decode(plan, entities, replies)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except (redis.RedisError, RedisClusterException):
            return False

    def close(self) -> None:
        self._client.close()


class AsyncOnlineClient(_ClientBase):
    def __init__(self, url: str, views: dict[str, FeatureView], **options: Any) -> None:
        super().__init__(aredis, url, views, **options)

    def plan(self, features: Sequence[str]) -> list[ViewRequest]:
        return plan_request(self._views, features)

    async def get(self, entities: Sequence[Any], requests: list[ViewRequest],
                  at: int | None = None) -> list[FeatureVector]:
        """As :meth:`OnlineClient.get_online_features`, for requests planned by :meth:`plan`."""
        plan = self._plan(requests, at)
        try:
            if self._cluster:
                pipe = self._client.pipeline()
                _queue_reads(pipe, plan, entities)
                replies = _pipeline_replies(plan, await pipe.execute(), entities)
            else:
                keys, argv = _script_args(plan, entities)
                replies = _script_replies(plan, await self._script(keys=keys, args=argv) if argv[0] else [],
                                          entities)
        except (redis.RedisError, RedisClusterException) as exc:
            raise OnlineStoreError(f"Redis at {_safe(self._url)} is unreachable or failed: {exc}") from exc
        return _decode(plan, entities, replies)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (redis.RedisError, RedisClusterException):
            return False

    async def markers(self) -> dict[tuple[str, int], bool]:
        """Per (view, version): does Redis hold the pipeline's marker? A missing one means the store lost
        (or never had) the view's values (pipelines.store_guard); empty when Redis does not answer."""
        try:
            return {(v.name, v.version): bool(await self._client.exists(marker_key(v.name, v.version)))
                    for v in self._views.values()}
        except (redis.RedisError, RedisClusterException):
            return {}

    async def close(self) -> None:
        await self._client.aclose()


def _safe(url: str) -> str:
    """The URL without its password."""
    return redact_url(url)
