"""Resolve settings for a command: flags, then FRESHET_* variables, then the local stack."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from freshet.infra.settings import FreshetSettings, load_settings, parse_kafka_overrides


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
        "state_dir": getattr(args, "state_dir", None),
    }
    settings = load_settings({k: v for k, v in overrides.items() if v is not None})
    extra = parse_kafka_overrides(getattr(args, "kafka_overrides", None) or [])
    if extra:
        settings = settings.model_copy(update={"kafka_config": {**settings.kafka_config, **extra}})
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
