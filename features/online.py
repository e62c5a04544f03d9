"""The online SDK: typed feature vectors for many entities and views in one Redis round trip.

Features are named ``view:feature``, a whole ``view``, or pinned to a version
``view@2:feature``. Each vector carries, per view, ``feature_ts`` (the event
time from which the value holds) and its age. A missing entity gives nulls,
not an error. A value older than the view's TTL follows the view's
``online_staleness`` policy: ``null`` (the default) returns nulls and reports
it stale; ``flag`` returns the value and reports it stale. TLS (``rediss://``)
and AUTH (``redis://user:password@host``) come from the URL; connections are
pooled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis
from redis.exceptions import RedisClusterException

from freshet.features.definitions import FeatureView
from freshet.features.errors import OnlineStoreError
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
    return [ViewRequest(v, ver, tuple(f), tuple(lbl)) for (_, ver), (v, f, lbl) in grouped.items()]


# One command for a whole request: HMGET on every key inside Redis, so a request for
# 100 entities x 3 views costs one command to build and one reply to parse, not 300.
# ARGV: the number of groups, then per group (one view): its key count, its field
# count and its fields; KEYS: the keys of group 1, then of group 2, ... (Keys of
# different entities live in different cluster slots: on Redis Cluster call it per entity.)
BATCH_HMGET_LUA = """
local out = {}
local k = 1
local a = 2
for g = 1, tonumber(ARGV[1]) do
  local nkeys = tonumber(ARGV[a])
  local nfields = tonumber(ARGV[a + 1])
  local first = a + 2
  local last = a + 1 + nfields
  for _ = 1, nkeys do
    out[k] = redis.call('HMGET', KEYS[k], unpack(ARGV, first, last))
    k = k + 1
  end
  a = last + 1
end
return out
"""


def _key_fields(requests: list[ViewRequest], entities: Sequence[Any]) -> list[tuple[str, list[str]]]:
    """Per key, in the order the batch script reads them: the hash and the fields (feature_ts first)."""
    out: list[tuple[str, list[str]]] = []
    for req in requests:
        fields = [TS_FIELD, *req.features]
        out.extend((online_key(req.view.name, req.version, e), fields) for e in entities)
    return out


def _script_args(requests: list[ViewRequest], entities: Sequence[Any]) -> tuple[list[str], list[Any]]:
    keys: list[str] = []
    argv: list[Any] = [len(requests)]
    for req in requests:
        prefix = online_key(req.view.name, req.version, "\x00").split("\x00")
        keys.extend(f"{prefix[0]}{e}{prefix[1]}" for e in entities)
        argv.append(len(entities))
        argv.append(len(req.features) + 1)
        argv.append(TS_FIELD)
        argv.extend(req.features)
    return keys, argv


def _caster(kind: str) -> Callable[[bytes], Any]:
    """A stored JSON value back to its type (numbers without a JSON parse)."""
    if kind == "int":
        return lambda raw: None if raw == b"null" else int(raw)
    if kind == "float":
        return lambda raw: None if raw == b"null" else float(raw)
    cast = _CASTS[kind]
    return lambda raw: None if raw == b"null" else cast(decode_value(raw))


def _decode(requests: list[ViewRequest], entities: Sequence[Any], replies: list[list[bytes | None]],
            now_ms: int) -> list[FeatureVector]:
    vectors = [FeatureVector(e) for e in entities]
    i = 0
    for req in requests:
        types = req.view.feature_types()
        casts = [_caster(types[f]) for f in req.features]
        label = req.view.name if req.version == req.view.version else f"{req.view.name}@{req.version}"
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
        self._script: Any = None if self._cluster else self._client.register_script(BATCH_HMGET_LUA)


class OnlineClient(_ClientBase):
    """Synchronous client for services; ``AsyncOnlineClient`` is the same for asyncio."""

    def __init__(self, url: str, views: dict[str, FeatureView], **options: Any) -> None:
        super().__init__(redis, url, views, **options)

    def get_online_features(self, entities: Sequence[Any], features: Sequence[str]) -> list[FeatureVector]:
        requests = plan_request(self._views, features)
        try:
            if self._cluster:
                pipe = self._client.pipeline()
                for key, fields in _key_fields(requests, entities):
                    pipe.hmget(key, fields)
                replies = pipe.execute()
            else:
                keys, argv = _script_args(requests, entities)
                replies = self._script(keys=keys, args=argv)
        except (redis.RedisError, RedisClusterException) as exc:
            raise OnlineStoreError(f"Redis at {_safe(self._url)} is unreachable or failed: {exc}") from exc
        return _decode(requests, entities, replies, int(self._clock() * 1000))

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

    async def get(self, entities: Sequence[Any], requests: list[ViewRequest]) -> list[FeatureVector]:
        try:
            if self._cluster:
                pipe = self._client.pipeline()
                for key, fields in _key_fields(requests, entities):
                    pipe.hmget(key, fields)
                replies = await pipe.execute()
            else:
                keys, argv = _script_args(requests, entities)
                replies = await self._script(keys=keys, args=argv)
        except (redis.RedisError, RedisClusterException) as exc:
            raise OnlineStoreError(f"Redis at {_safe(self._url)} is unreachable or failed: {exc}") from exc
        return _decode(requests, entities, replies, int(self._clock() * 1000))

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
