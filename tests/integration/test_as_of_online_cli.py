"""`at` through `freshet get --at` and `freshet serve` (POST /features with "at"), on a real Redis:
the answers equal the SDK's at the same instant; bad values are exit 2 / HTTP 400, an instant before
what Redis keeps is exit 2 / HTTP 422, each naming the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from freshet.features.as_of_layout import read_columns
from freshet.features.online import OnlineClient
from freshet.features.registry import Registry
from freshet.infra.localstack import free_port
from freshet.pipelines.online_sink import RedisOnlineWriter
from freshet.tables import format_time
from tests.integration.conftest import Servers
from tests.integration.test_read_paths import request, wait_until_serving

BASE = 1_700_000_000_000
REPO_YAML = """\
sources:
  - name: tx
    topic: tx-{suffix}
    partitions: 2
    key: card_id
    timestamp: ts
    schema: {{card_id: str, amount: float, merchant: str, ts: int}}
views:
  - name: tum_{suffix}
    source: tx
    window: {{type: tumbling, size: 1m}}
    as_of: request
    ttl: 1m
    aggregations:
      - {{function: count, name: n}}
      - {{function: sum, column: amount, name: total}}
  - name: sli_{suffix}
    source: tx
    window: {{type: sliding, size: 2m}}
    as_of: request
    ttl: 1d
    aggregations:
      - {{function: count, name: n}}
      - {{function: count_distinct, column: merchant, name: merchants}}
  - name: last_{suffix}
    source: tx
    window: {{type: tumbling, size: 1m}}
    ttl: 1d
    aggregations:
      - {{function: count, name: n}}
"""


@dataclass(frozen=True)
class Filled:
    repo: Path
    env: dict[str, str]
    tum: str
    sli: str
    last: str


@pytest.fixture(scope="module")
def filled(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    base = tmp_path_factory.mktemp("as-of-cli")
    suffix = base.name.replace("-", "_")[-12:]
    repo = base / "repo"
    repo.mkdir()
    (repo / "views.yaml").write_text(REPO_YAML.format(suffix=suffix))
    views = Registry.load(repo).views
    writer = RedisOnlineWriter(servers.redis_url, background=False)
    try:
        for name in (f"tum_{suffix}", f"sli_{suffix}"):
            view = views[name]
            for i in range(30):  # card-1: one event every 10 s from BASE; then one 10 minutes later
                ts = BASE + i * 10_000 if i < 29 else BASE + 900_000
                event = {"amount": float(i), "merchant": f"m{i % 4}"}
                first = ts - ts % 60_000 if name.startswith("tum") else ts
                writer.add_accepted(view, "card-1", ts, first, 0, i, [event[c] for c in read_columns(view)])
        writer.flush()
    finally:
        writer.close()
    env = {**os.environ, "FRESHET_REDIS_URL": servers.redis_url, "FRESHET_KAFKA_BOOTSTRAP": servers.kafka_bootstrap}
    yield Filled(repo, env, f"tum_{suffix}", f"sli_{suffix}", f"last_{suffix}")


def freshet(filled: Filled, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "freshet", *args], env=filled.env, capture_output=True, text=True,
                          timeout=60)


def sdk(filled: Filled, at: int) -> list[dict[str, object]]:
    client = OnlineClient(filled.env["FRESHET_REDIS_URL"], Registry.load(filled.repo).views)
    try:
        return [v.as_dict() for v in client.get_online_features(["card-1", "card-2"], [filled.tum, filled.sli],
                                                                at=at)]
    finally:
        client.close()


def test_get_at(filled: Filled) -> None:
    at = BASE + 930_000  # the 10-minutes-later event's windows: tumbling [BASE+840 s, +900 s) is empty
    iso = format_time(at)
    got = freshet(filled, "get", "--repo", str(filled.repo), "--view", filled.tum, "--view", filled.sli, "--at",
                  iso, "--json", "card-1", "card-2")
    assert got.returncode == 0, got.stderr
    printed = json.loads(got.stdout)
    for vector in sdk(filled, at):
        for view in (filled.tum, filled.sli):
            mine = printed[vector["entity"]][view]
            assert mine["features"] == {k.split(":", 1)[1]: v for k, v in vector["features"].items()  # type: ignore[attr-defined]
                                        if k.startswith(view + ":")}
            assert mine["feature_ts"] == vector["freshness"][view]["feature_ts"]  # type: ignore[index]
    assert printed["card-1"][filled.sli]["features"] == {"n": 1, "merchants": 1}
    assert printed["card-1"][filled.tum]["features"] == {"n": 0, "total": 0.0}
    assert printed["card-2"][filled.sli]["features"] == {"n": 0, "merchants": 0}

    bad = freshet(filled, "get", "--repo", str(filled.repo), "--view", filled.tum, "--at", "yesterday", "card-1")
    assert bad.returncode == 2 and "--at: timestamp 'yesterday' is neither epoch milliseconds nor ISO-8601" in bad.stderr
    old = freshet(filled, "get", "--repo", str(filled.repo), "--view", filled.tum, "--at", str(BASE + 120_000),
                  "card-1")
    assert old.returncode == 2, old.stderr
    assert f"--at {BASE + 120_000}: view '{filled.tum}', entity 'card-1': cannot answer" in old.stderr
    assert "training set" in old.stderr


def strip_age(vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reads at different moments differ only in age_ms (now - feature_ts)."""
    return [{**v, "freshness": {k: {f: x for f, x in fresh.items() if f != "age_ms"}
                                for k, fresh in v["freshness"].items()}} for v in vectors]


def test_http_at(filled: Filled) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "freshet", "serve", "--repo", str(filled.repo), "--port",
                               str(port), "--quiet"], env=filled.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_serving(port)
        body = {"entities": ["card-1", "card-2"], "features": [filled.tum, filled.sli]}
        for at in (BASE + 960_000, format_time(BASE + 960_000)):
            status, answer = request(port, "POST", "/features", {**body, "at": at})
            assert status == 200, answer
            assert strip_age(answer["vectors"]) == strip_age(json.loads(json.dumps(sdk(filled, BASE + 960_000))))
        assert answer["vectors"][0]["features"] == {f"{filled.tum}:n": 1, f"{filled.tum}:total": 29.0,
                                                    f"{filled.sli}:n": 1, f"{filled.sli}:merchants": 1}
        status, answer = request(port, "POST", "/features", {"entities": ["card-1"], "features": [filled.sli],
                                                             "at": BASE + 200_000})
        assert status == 200 and answer["vectors"][0]["features"][f"{filled.sli}:n"] == 13  # BASE+80 s..+200 s
        status, answer = request(port, "POST", "/features", {**body, "at": "noon"})
        assert status == 400 and "at: timestamp 'noon' is neither" in answer["error"]
        status, answer = request(port, "POST", "/features", {**body, "at": True})
        assert status == 400 and answer["error"].startswith("at True is not an instant")
        status, answer = request(port, "POST", "/features", {**body, "at": -5})
        assert status == 400 and "at -5 is not an instant" in answer["error"]
        status, answer = request(port, "POST", "/features", {"entities": ["card-1"], "features": [filled.last],
                                                             "at": BASE})
        assert status == 400 and f"view '{filled.last}' answers with the value" in answer["error"]
        status, answer = request(port, "POST", "/features", {**body, "at": BASE + 120_000})
        assert status == 422 and "Redis keeps this entity's events only from" in answer["error"]
        status, doc = request(port, "GET", "/openapi.json")
        schema = doc["paths"]["/features"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "request-time views" in schema["properties"]["at"]["description"]
        assert "422" in doc["paths"]["/features"]["post"]["responses"]
    finally:
        server.terminate()
        server.wait(10)
