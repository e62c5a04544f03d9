"""Freshet's feature store API: definitions, aggregation semantics, registry, read paths.

This package never imports Kafka.
"""

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

__all__ = [
    "Aggregation",
    "DefinitionError",
    "Entity",
    "FeatureView",
    "FreshetError",
    "HoppingWindow",
    "Registry",
    "RepositoryError",
    "SlidingWindow",
    "Source",
    "TumblingWindow",
    "fingerprint",
]
