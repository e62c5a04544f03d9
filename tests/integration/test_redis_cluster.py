"""The pipeline on a Redis Cluster of 3 masters: values readable through `get`, the SDK (1 and 100
entities) and the HTTP server, equal to the log; entities spread over the nodes by their hash tags."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from freshet.features.online import AsyncOnlineClient, OnlineClient
from freshet.features.online_layout import online_key
from freshet.features.redis_connect import node_url
from freshet.features.registry import Registry
from freshet.infra.localstack import free_port
from freshet.infra.redis_cluster import ClusterInfo
from freshet.pipelines.materialize import latest_rows
from freshet.synthetic import StreamSpec
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import pipeline_config, provision, run_until_caught_up
from tests.integration.test_read_paths import request, wait_until_serving
from tests.integration.test_replay import write_repo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fraud"


def without_age(vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Vectors read at different instants differ only in age_ms."""
    return [{**v, "freshness": {k: {f: x for f, x in fresh.items() if f != "age_ms"}
                                for k, fresh in v["freshness"].items()}} for v in vectors]


def test_pipeline_sdk_get_and_server_on_a_cluster(servers: Servers, cluster: ClusterInfo, unique: str,
                                                  tmp_path: Path) -> None:
    topic = f"cluster-{unique}"
    repo = write_repo(tmp_path / "repo", topic)
    views = Registry.load(repo).views
    provision(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=4_000, cards=150, span_ms=20 * 60_000,
                                                             end_ms=int(time.time() * 1000), seed=41))
    config = pipeline_config(servers, tmp_path, f"cluster-{unique}")
    config.redis_url = cluster.url
    stats = run_until_caught_up(list(views.values()), config)
    assert stats["online_writes"] > 0

    # what the log says each entity's latest value is
    expected: dict[str, dict[str, dict[str, object]]] = {}
    for view in views.values():
        table, _ = latest_rows(tmp_path / "offline", view)
        for row in table.to_pylist():
            expected.setdefault(view.name, {})[row[view.entity_key]] = row
    entities = sorted(expected["spend_5m"])[:100]
    assert len(entities) == 100

    # last-event views hold the log's latest row; request-time views are read as of one instant, T, by all
    last_event = [name for name, view in views.items() if view.as_of == "last_event"]
    request_time = [name for name, view in views.items() if view.as_of == "request"]
    assert last_event and request_time
    at = int(time.time() * 1000)
    client = OnlineClient(cluster.url, views)
    try:
        for batch in (entities[:1], entities):
            for vector in client.get_online_features(batch, last_event):
                for name in last_event:
                    view = views[name]
                    row = expected[name].get(vector.entity)
                    fresh = vector.freshness[name]
                    assert fresh["found"] == (row is not None), (vector.entity, name)
                    if row is None:
                        continue
                    assert fresh["feature_ts"] == int(row["feature_ts"].timestamp() * 1000)
                    for feature in view.feature_names():
                        assert vector.values[f"{name}:{feature}"] == pytest.approx(row[feature])
        sdk = client.get_online_features(entities, last_event)
        sdk_at = client.get_online_features(entities, request_time, at=at)
        assert any(v.values[f"{name}:n"] for v in sdk_at for name in request_time)
    finally:
        client.close()

    async def read_async() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        aclient = AsyncOnlineClient(cluster.url, views)
        try:
            return ([v.as_dict() for v in await aclient.get(entities, aclient.plan(last_event))],
                    [v.as_dict() for v in await aclient.get(entities, aclient.plan(request_time), at=at)])
        finally:
            await aclient.close()

    read_last, read_at = asyncio.run(read_async())
    assert without_age(read_last) == without_age([v.as_dict() for v in sdk])
    assert without_age(read_at) == without_age([v.as_dict() for v in sdk_at])

    env = {**os.environ, "FRESHET_REDIS_URL": cluster.url}
    got = subprocess.run([sys.executable, "-m", "freshet", "get", "--repo", str(repo), "--view", "spend_5m", "--json",
                          *entities[:3]], env=env, capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr[-2000:]
    printed = json.loads(got.stdout)
    for vector in sdk[:3]:
        assert printed[vector.entity]["spend_5m"]["features"] == {
            k.split(":", 1)[1]: v for k, v in vector.values.items() if k.startswith("spend_5m:")}

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "freshet", "serve", "--repo", str(repo), "--port", str(port),
                               "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_serving(port)
        status, body = request(port, "POST", "/features", {"entities": entities, "features": last_event})
        assert status == 200
        assert without_age(body["vectors"]) == without_age(json.loads(json.dumps([v.as_dict() for v in sdk])))
        status, body = request(port, "POST", "/features", {"entities": entities, "features": request_time, "at": at})
        assert status == 200
        assert without_age(body["vectors"]) == without_age(json.loads(json.dumps([v.as_dict() for v in sdk_at])))
        assert request(port, "GET", "/readyz") == (200, {"redis": "ok"})
    finally:
        server.terminate()
        server.wait(10)

    # the keys spread over the masters: an entity's hash tag picks its slot
    raw = RedisCluster.from_url(node_url(cluster.url))
    try:
        owners = {raw.get_node_from_key(online_key("spend_5m", 1, e)).name for e in entities}
        assert len(owners) == 3, owners
        per_entity = {e: {raw.keyslot(online_key(name, 1, e)) for name in views} for e in entities[:10]}
        assert all(len(slots) == 1 for slots in per_entity.values())  # one entity, one slot
    finally:
        raw.close()
