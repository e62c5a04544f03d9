"""Online and offline agree, and the HTTP service serves what the SDK reads.

After `freshet run` over a fresh stream, for every entity the online value of
every view equals the training-set value at the entity's latest event time.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from freshet.features.definitions import FeatureView
from freshet.features.online import OnlineClient
from freshet.features.registry import Registry
from freshet.features.training import get_historical_features
from freshet.infra.localstack import free_port
from freshet.synthetic import StreamSpec, generate
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import pipeline_config, provision, retarget, run_until_caught_up, start_redis

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fraud"


@dataclass
class Ran:
    servers: Servers
    views: dict[str, FeatureView]
    offline: Path
    latest_ts: dict[str, int]
    repo: Path


@pytest.fixture(scope="module")
def ran(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    base = tmp_path_factory.mktemp("read")
    topic = f"read-{uuid.uuid4().hex[:8]}"  # never an earlier session's topic or group on a reused broker
    # read as of the entity's last event: these tests cover that read path (the example's views read as of
    # the request time since 0.4: test_as_of_online*.py and test_as_of_consistency.py cover that one)
    views = [v.model_copy(update={"as_of": "last_event"})
             for v in retarget(list(Registry.load(EXAMPLE).views.values()), topic)]
    provision(servers, topic, 4)
    spec = StreamSpec(events=3_000, cards=80, span_ms=20 * 60_000, end_ms=int(time.time() * 1000), seed=5)
    produce_stream(servers.kafka_config(), topic, spec)
    latest: dict[str, int] = {}
    for _key, value, kind in generate(spec):
        if kind is None:
            event = json.loads(value)
            latest[event["card_id"]] = max(latest.get(event["card_id"], 0), event["ts"])
    run_until_caught_up(views, pipeline_config(servers, base, f"read-{topic}"))
    repo = base / "repo"
    repo.mkdir()
    (repo / "views.py").write_text(  # the same views, on this test's topic, for `freshet serve`
        "from freshet import Registry\n"
        f"_r = Registry.load({str(EXAMPLE)!r})\n"
        + "".join(f"{v.name} = _r.view({v.name!r}).model_copy(update={{'as_of': 'last_event', 'source': "
                  f"_r.view({v.name!r}).source.model_copy(update={{'topic': {topic!r}}})}})\n" for v in views))
    yield Ran(servers, {v.name: v for v in views}, base / "offline", latest, repo)


def test_online_equals_training_set_at_last_event(ran: Ran) -> None:
    names = sorted(ran.views)
    entities = sorted(ran.latest_ts)
    client = OnlineClient(ran.servers.redis_url, ran.views)
    online = {v.entity: v for v in client.get_online_features(entities, names)}
    labels = pa.table({"card_id": entities, "ts": pa.array([ran.latest_ts[e] for e in entities], pa.int64())})
    offline = get_historical_features(labels, names, ran.views, ran.offline, full_feature_names=True).to_pylist()
    compared = 0
    for row in offline:
        vector = online[row["card_id"]]
        for view in ran.views.values():
            fresh = vector.freshness[view.name]
            ts = row[f"{view.name}__feature_ts"]
            # the stream ends now and every TTL is longer than it: nothing is stale on either side
            assert not fresh["stale"], (row["card_id"], view.name)
            assert fresh["found"] == (ts is not None), (row["card_id"], view.name, fresh, row, ran.latest_ts[row["card_id"]])
            if ts is None:
                continue
            assert fresh["feature_ts"] == int(ts.timestamp() * 1000), (row["card_id"], view.name)
            for feature in view.feature_names():
                got, want = vector.values[f"{view.name}:{feature}"], row[f"{view.name}__{feature}"]
                assert got == pytest.approx(want), (row["card_id"], view.name, feature)
                compared += 1
    assert compared > len(entities)  # most entities have values in several views
    missing = client.get_online_features(["no-such-card"], names)[0]
    assert all(v is None for v in missing.values.values())
    assert not any(f["found"] for f in missing.freshness.values())
    client.close()


def request(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    payload = body if isinstance(body, str) or body is None else json.dumps(body)
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode()


def wait_until_serving(port: int, tries: int = 100) -> None:
    """Until GET /healthz answers 200 (the server process is starting)."""
    for _ in range(tries):
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on port {port}")


def test_http_service(ran: Ran) -> None:
    port = free_port()
    env = {**os.environ, "FRESHET_REDIS_URL": ran.servers.redis_url,
           "FRESHET_KAFKA_BOOTSTRAP": ran.servers.kafka_bootstrap}
    proc = subprocess.Popen([sys.executable, "-m", "freshet", "serve", "--repo", str(ran.repo), "--port",
                             str(port), "--token", "s3cret", "--max-entities", "5"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(port)
        assert request(port, "GET", "/readyz") == (200, {"redis": "ok"})
        cards = sorted(ran.latest_ts)[:3]
        status, body = request(port, "POST", "/features", {"entities": cards, "features": ["card_spend_5m"]},
                               token="s3cret")
        assert status == 200
        sdk = OnlineClient(ran.servers.redis_url, ran.views).get_online_features(cards, ["card_spend_5m"])
        assert [v["features"] for v in body["vectors"]] == [v.values for v in sdk]
        assert [v["entity"] for v in body["vectors"]] == cards
        assert request(port, "POST", "/features", {"entities": cards, "features": ["card_spend_5m"]})[0] == 401
        status, body = request(port, "POST", "/features", {"entities": cards, "features": ["nope:x"]}, "s3cret")
        assert status == 400 and "unknown view 'nope'" in body["error"]
        status, body = request(port, "POST", "/features", {"entities": ["c"] * 6, "features": ["card_spend_5m"]},
                               "s3cret")
        assert status == 400 and "over the limit of 5" in body["error"]
        status, body = request(port, "POST", "/features", {"entities": ["x" * 300], "features": ["card_spend_5m"]},
                               "s3cret")
        assert status == 400 and "256" in body["error"]
        status, body = request(port, "POST", "/features", "[" * 5000 + "]" * 5000, "s3cret")
        assert status == 400 and "deeply" in body["error"]
        status, body = request(port, "POST", "/features",
                               '{"entities": ["\\ud800"], "features": ["card_spend_5m"]}', "s3cret")
        assert status == 400 and "not valid text" in body["error"]
        status, metrics = request(port, "GET", "/metrics")
        assert status == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(metrics) for s in family.samples}
        assert samples[("freshet_requests_total", (("path", "/features"), ("status", "200")))] == 1
        assert samples[("freshet_requests_total", (("path", "/features"), ("status", "400")))] == 5
        assert samples[("freshet_features_latency_seconds_count", ())] == 7  # 200, 401 and five 400s
        # the pipeline that filled this Redis left its marker per view: the store has not lost them
        assert samples[("freshet_online_store_marker_present", (("version", "2"), ("view", "card_spend_5m")))] == 1
        assert request(port, "GET", "/openapi.json")[1]["paths"]["/features"]
        status, body = request(port, "POST", "/features", {"entities": cards, "features": ["card_spend_5m@999"]},
                               "s3cret")
        assert status == 400 and "has no version 999" in body["error"] and "1 to 2" in body["error"]
        status, body = request(port, "GET", "/features")
        assert status == 405 and "GET is not allowed on /features" in body["error"]
        status, body = request(port, "POST", "/features", {"entities": cards, "features": ["card_spend_5m"],
                                                           "when": 1}, "s3cret")
        assert status == 400 and "unknown field 'when'" in body["error"]
        status, body = request(port, "POST", "/features", {"entities": cards, "features": ["card_spend_5m"],
                                                           "at": 1}, "s3cret")
        assert status == 400 and "view 'card_spend_5m' answers with the value of the entity's newest" in body["error"]
        docs = request(port, "GET", "/docs")
        assert docs[0] == 200 and "swagger-ui-bundle.js" in docs[1] and "cdn" not in docs[1].lower()
        asset = next(part.split('"')[1] for part in docs[1].split("src=")[1:] if "swagger-ui-bundle.js" in part)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", asset)
        served = conn.getresponse()
        assert served.status == 200 and len(served.read()) > 100_000
        conn.close()
    finally:
        proc.terminate()
        proc.wait(10)
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert f"listening on http://127.0.0.1:{port}" in log and '"POST /features HTTP/1.1" 200' in log
    assert "s3cret" not in log


def test_http_limits_and_outages(ran: Ran, tmp_path: Path) -> None:
    """A token from a file, the keys-per-request limit (413), and Redis gone (503 with Retry-After)."""
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    for redis_url, checks in ((ran.servers.redis_url, "limits"), ("redis://127.0.0.1:9/0", "outage")):
        port = free_port()
        env = {**os.environ, "FRESHET_REDIS_URL": redis_url}
        proc = subprocess.Popen([sys.executable, "-m", "freshet", "serve", "--repo", str(ran.repo), "--port",
                                 str(port), "--token-file", str(token_file), "--max-keys", "6", "--quiet"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_serving(port)
            cards = sorted(ran.latest_ts)[:3]
            if checks == "limits":
                status, _ = request(port, "POST", "/features", {"entities": cards, "features": ["card_spend_5m",
                                                                "card_spend_1h"]}, "from-a-file")
                assert status == 200
                status, body = request(port, "POST", "/features", {"entities": cards, "features": [
                    "card_spend_5m", "card_spend_1h", "card_activity_10m"]}, "from-a-file")
                assert status == 413 and "reads 9 keys (3 entities x 3 views); the limit is 6" in body["error"]
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/readyz")
                ready = conn.getresponse()
                ready.read()
                assert ready.status == 503 and ready.getheader("Retry-After") == "1"
                conn.request("POST", "/features", body=json.dumps({"entities": cards, "features": ["card_spend_5m"]}),
                             headers={"authorization": "Bearer from-a-file", "content-type": "application/json"})
                down = conn.getresponse()
                payload = json.loads(down.read())
                assert down.status == 503 and down.getheader("Retry-After") == "1"
                assert "127.0.0.1:9" in payload["error"]
                conn.close()
        finally:
            proc.terminate()
            proc.wait(10)


def test_training_set_cli(ran: Ran, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    labels = tmp_path / "labels.parquet"
    cards = sorted(ran.latest_ts)
    pq.write_table(pa.table({"card_id": cards, "ts": [ran.latest_ts[c] for c in cards]}), labels)
    out = tmp_path / "train.parquet"
    env = {**os.environ, "FRESHET_OFFLINE_ROOT": str(ran.offline)}
    result = subprocess.run([sys.executable, "-m", "freshet", "training-set", "--repo", str(ran.repo),
                             "--labels", str(labels), "--features", "card_spend_5m:txn_count", "card_spend_1h",
                             "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pq.read_table(out)
    assert table.num_rows == len(cards)
    assert {"txn_count", "txn_count_1h", "amount_sum_1h", "card_spend_5m__feature_ts"} <= set(table.column_names)
    assert table.column("txn_count").null_count < len(cards)


def test_get_cli_prints_what_the_sdk_reads(ran: Ran) -> None:
    client = OnlineClient(ran.servers.redis_url, ran.views)
    everyone = client.get_online_features(sorted(ran.latest_ts), ["card_spend_1h"])
    cards = [v.entity for v in everyone if v.freshness["card_spend_1h"]["found"]][:2]
    assert len(cards) == 2  # an hourly view closes windows of most cards in a 20-minute stream
    env = {**os.environ, "FRESHET_REDIS_URL": ran.servers.redis_url}
    result = subprocess.run([sys.executable, "-m", "freshet", "get", "--repo", str(ran.repo), "--view",
                             "card_spend_1h", "--json", *cards], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    sdk = OnlineClient(ran.servers.redis_url, ran.views).get_online_features(cards, ["card_spend_1h"])
    for vector in sdk:
        got = printed[vector.entity]["card_spend_1h"]
        assert got["feature_ts"] == vector.freshness["card_spend_1h"]["feature_ts"]
        assert got["features"] == {k.split(":", 1)[1]: v for k, v in vector.values.items()}
    unknown = subprocess.run([sys.executable, "-m", "freshet", "get", "--repo", str(ran.repo), "--view",
                              "nope", "x"], env=env, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown view 'nope'" in unknown.stderr
    table = subprocess.run([sys.executable, "-m", "freshet", "get", "--repo", str(ran.repo), "--view",
                            "card_spend_1h", cards[0], "no-such-card"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert table.returncode == 1, table.stderr[-2000:]
    assert "no value of view 'card_spend_1h' for entity 'no-such-card'" in table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["entity", "view", "features"]
    first = next(line for line in lines if line.startswith(cards[0]))
    ts = printed[cards[0]]["card_spend_1h"]["feature_ts"]
    iso = datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert iso in first and "txn_count_1h=" in first
    assert next(line for line in lines if line.startswith("no-such-card")).split()[2:4] == ["(no", "value)"]


def test_http_slow_clients_and_a_stalled_redis(ran: Ran, tmp_path: Path) -> None:
    """A body that never finishes gets 408; headers that never finish close the connection; with Redis stalled
    and one pooled connection, concurrent requests get 503 with Retry-After (no 500, no request left hanging)."""
    port, redis_port = free_port(), free_port()
    redis_proc = start_redis(redis_port, tmp_path, persist=False)
    env = {**os.environ, "FRESHET_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    server = subprocess.Popen([sys.executable, "-m", "freshet", "serve", "--repo", str(ran.repo), "--port", str(port),
                               "--body-timeout", "1", "--header-timeout", "1", "--redis-connections", "1",
                               "--quiet"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(port)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"POST /features HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 200\r\n\r\n{\"entities\": [")
            started = time.monotonic()
            reply = ""
            while "did not arrive" not in reply:
                chunk = slow.recv(4096).decode()
                assert chunk, reply
                reply += chunk
            assert reply.startswith("HTTP/1.1 408"), reply
            assert "did not arrive within 1 s" in reply and time.monotonic() - started < 5
        for partial in (b"POST /features HTTP/1.1\r\nHost: x\r\nContent-Ty", b""):  # slow headers; nothing at all
            with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
                slow.sendall(partial)
                started = time.monotonic()
                assert slow.recv(4096) == b""  # closed by the server, without a request
                assert time.monotonic() - started < 5
        # a kept-alive connection whose next request stalls in its headers is closed too
        with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b'{"status":"ok"}' not in answer:
                chunk = kept.recv(4096)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            started = time.monotonic()
            assert kept.recv(4096) == b"" and time.monotonic() - started < 5

        redis.Redis(port=redis_port).execute_command("CLIENT", "PAUSE", "10000")  # Redis answers nobody for 10 s
        body = json.dumps({"entities": sorted(ran.latest_ts)[:3], "features": ["card_spend_5m"]})

        def one() -> tuple[int, str | None]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            conn.request("POST", "/features", body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            conn.close()
            return response.status, response.getheader("Retry-After")

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: one(), range(8)))
        assert all(status == 503 and retry == "1" for status, retry in answers), answers
    finally:
        server.terminate()
        server.wait(10)
        redis_proc.terminate()
        redis_proc.wait(10)
