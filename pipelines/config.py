"""Resolve settings for a command: flags, then FRESHET_* variables, then the local stack."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from freshet.infra.settings import FreshetSettings, load_settings, parse_kafka_overrides

if TYPE_CHECKING:
    from freshet.infra.object_store import ObjectStoreInfo


def stack_dir() -> Path:
    """Where `freshet dev up` records the local stack: FRESHET_STACK_DIR, else the nearest ``.freshet``
    holding a running stack's ``dev.env`` in this directory or a parent (commands work from any
    subdirectory of the project), else ``./.freshet``."""
    configured = os.environ.get("FRESHET_STACK_DIR")
    if configured:
        return Path(configured)
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / ".freshet" / "dev.env").is_file():
            return directory / ".freshet"
    return Path(".freshet")


def settings_from_args(args: argparse.Namespace, use_local_stack: bool = True) -> FreshetSettings:
    overrides: dict[str, object] = {
        "kafka_bootstrap": getattr(args, "bootstrap", None),
        "redis_url": getattr(args, "redis_url", None),
        "offline_root": getattr(args, "offline_root", None),
        "s3_endpoint": getattr(args, "s3_endpoint", None),
        "state_dir": getattr(args, "state_dir", None),
    }
    settings = load_settings({k: v for k, v in overrides.items() if v is not None})
    extra = parse_kafka_overrides(getattr(args, "kafka_overrides", None) or [])
    if extra:
        settings = settings.model_copy(update={"kafka_config": {**settings.kafka_config, **extra}})
    # whether or not the command needs the broker and Redis
    settings = _object_store_root(settings, named=bool(getattr(args, "offline_root", None)
                                                       or os.environ.get("FRESHET_OFFLINE_ROOT")))
    if use_local_stack and (settings.kafka_bootstrap is None or settings.redis_url is None):
        from freshet.infra.localstack import read_stack
        from freshet.infra.redis_cluster import read_cluster

        info = read_stack(stack_dir())
        if info is not None:
            cluster = read_cluster(stack_dir() / "redis-cluster")  # `freshet dev up --redis-cluster`
            settings = settings.model_copy(update={
                "kafka_bootstrap": settings.kafka_bootstrap or info.kafka_bootstrap,
                "redis_url": settings.redis_url or (cluster.url if cluster else info.redis_url),
            })
    return settings


def local_object_store() -> ObjectStoreInfo | None:
    """The local stack's object store (`freshet dev up --object-store`), if it runs, with its credentials
    put in this process's environment (where the AWS SDK and replay workers find them) unless AWS
    credentials are set already."""
    from freshet.infra.object_store import read_object_store

    store = read_object_store(stack_dir() / "object-store")
    if store is not None and not os.environ.get("AWS_ACCESS_KEY_ID"):
        os.environ.update({name: value for name, value in store.env().items() if name.startswith("AWS_")})
    return store


def _object_store_root(settings: FreshetSettings, *, named: bool) -> FreshetSettings:
    """The local stack's object store as the offline root when neither a flag nor FRESHET_OFFLINE_ROOT
    names one, and as the endpoint of a named s3:// root when no endpoint is configured."""
    from freshet.features.log_store import s3_endpoint_from_env

    if named and not (settings.offline_root.startswith("s3://") and settings.s3_endpoint is None
                      and s3_endpoint_from_env() is None):
        return settings
    store = local_object_store()
    if store is None:
        return settings
    update = {"s3_endpoint": settings.s3_endpoint or store.endpoint}
    if not named:
        update["offline_root"] = store.offline_root
    return settings.model_copy(update=update)
