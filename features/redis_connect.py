"""Redis clients for a single node or a Redis Cluster, from one URL.

``redis://`` / ``rediss://`` name one node; ``redis+cluster://host:port`` (or ``rediss+cluster://``)
names a cluster by any of its nodes (the client discovers the others). Every key of one entity
carries the entity as a hash tag (``freshet:{<entity>}:...``), so an entity's views share a slot:
the writer's newer-wins script touches one key, and reads group keys by node.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def node_url(url: str) -> str:
    """The URL with its scheme as redis-py expects (``redis+cluster://`` -> ``redis://``)."""
    scheme, sep, rest = url.partition("://")
    return f"{CLUSTER_SCHEMES.get(scheme.lower(), scheme)}{sep}{rest}"


def cluster_url(url: str) -> str:
    """The same URL naming the cluster (``redis://`` -> ``redis+cluster://``)."""
    scheme, sep, rest = url.partition("://")
    return url if is_cluster(url) else f"{scheme}+cluster{sep}{rest}"


def sync_client(url: str, **options: Any) -> Any:
    """A ``redis.Redis`` for one node or a ``RedisCluster``; ``options`` are socket settings."""
    if is_cluster(url):
        cluster_options = {k: v for k, v in options.items() if k not in ("health_check_interval",)}
        return RedisCluster.from_url(node_url(url), **cluster_options)
    return redis.Redis.from_url(url, **options)


def async_client(url: str, *, max_connections: int, timeout_s: float) -> Any:
    """The online SDK's asyncio client: a blocking pool for one node, a cluster client otherwise."""
    if is_cluster(url):
        return AsyncRedisCluster.from_url(node_url(url), socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s, max_connections=max_connections)
    return aredis.Redis(connection_pool=aredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        timeout=timeout_s))
