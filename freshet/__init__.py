"""Freshet: streaming-first feature pipeline (Kafka windows -> Redis online values + a Parquet log).

The public API. Feature repositories import their definitions from here::

    from freshet import Aggregation, Entity, FeatureView, Source, TumblingWindow

Read paths: :class:`OnlineClient` (fresh vectors from Redis) and
:func:`get_historical_features` (point-in-time training sets from the log). They are
imported on first use, so a service that only defines or reads features never loads
the stream processor (Quix Streams, RocksDB) or DuckDB.

The packages: ``freshet.features`` (definitions and read side), ``freshet.pipelines``
(the engine), ``freshet.replay`` (bounded replays), ``freshet.infra`` (how it runs);
this package holds the application layer (CLI, HTTP server, demo).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from freshet.features.definitions import (
    Aggregation,
    Entity,
    FeatureView,
    HoppingWindow,
    SlidingWindow,
    Source,
    TumblingWindow,
)
from freshet.features.errors import DefinitionError, FreshetError, RepositoryError
from freshet.features.registry import Registry, fingerprint

if TYPE_CHECKING:
    from freshet.features.online import AsyncOnlineClient, OnlineClient
    from freshet.features.training import get_historical_features

try:
    __version__ = version("freshet")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "OnlineClient": "freshet.features.online",
    "AsyncOnlineClient": "freshet.features.online",
    "get_historical_features": "freshet.features.training",
}

__all__ = [
    "Aggregation",
    "AsyncOnlineClient",
    "DefinitionError",
    "Entity",
    "FeatureView",
    "FreshetError",
    "HoppingWindow",
    "OnlineClient",
    "Registry",
    "RepositoryError",
    "SlidingWindow",
    "Source",
    "TumblingWindow",
    "__version__",
    "fingerprint",
    "get_historical_features",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'freshet' has no attribute {name!r}")
    return getattr(import_module(module), name)
