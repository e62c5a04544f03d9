"""The README's typical session through the CLI, from a subdirectory of the project:
validate -> topics -> produce -> run --until-caught-up -> get (table and --json)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from freshet.features.registry import Registry
from freshet.infra.localstack import free_port
from tests.integration.conftest import Servers
from tests.integration.harness import cli_env, read_topic, redis_db

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fraud"


def _freshet(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "freshet", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example repository on a topic of this test's own."""
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("freshet.lock", "__pycache__"))
    text = (repo / "fraud.py").read_text()
    assert 'topic="transactions"' in text
    (repo / "fraud.py").write_text(text.replace('topic="transactions"', f'topic="session-{uuid.uuid4().hex[:8]}"'))
    (tmp_path / "sub").mkdir()
    return tmp_path


def _event_ts(raw: bytes) -> int:
    """A record's event time, or -1 for a malformed one."""
    try:
        ts = json.loads(raw)["ts"]
    except (ValueError, KeyError, TypeError):
        return -1
    return ts if isinstance(ts, int) else -1


def test_typical_session_shows_values_at_each_step(servers: Servers, project: Path) -> None:
    redis_url = redis_db(servers.redis_url, 7)
    redis.Redis.from_url(redis_url).flushdb()  # this test's database: only this run's values
    env = cli_env(servers, project, redis_url)
    sub, repo = project / "sub", "../repo"
    locked = _freshet(sub, env, "lock", "--repo", repo)
    assert locked.returncode == 0, locked.stderr[-2000:]
    checked = _freshet(sub, env, "validate", "--repo", repo)
    assert checked.returncode == 0 and "valid" in checked.stdout, checked.stderr[-2000:]
    topics = _freshet(sub, env, "topics", "--repo", repo)
    assert topics.returncode == 0 and "created" in topics.stdout, topics.stderr[-2000:]

    produced = _freshet(sub, env, "produce", "--repo", repo, "--events", "3000", "--entities", "50", "--json")
    assert produced.returncode == 0, produced.stderr[-2000:]
    summary = json.loads(produced.stdout)
    assert summary["produced"] == 3000 and summary["valid"] + summary["malformed"] == 3000
    assert summary["valid"] > 2900
    view = next(iter(Registry.load(project / "repo").views.values()))
    values = read_topic(servers, view.source.topic)
    assert len(values) == 3000

    ran = _freshet(sub, env, "run", "--repo", repo, "--until-caught-up", "--group", f"g-{uuid.uuid4().hex[:6]}")
    assert ran.returncode == 0, ran.stderr[-3000:]

    # a request-time view, read as of one instant (the stream's end) by both calls
    at = str(max(_event_ts(m.value()) for m in values))
    got = _freshet(sub, env, "get", "--repo", repo, "--view", "card_activity_10m", "--json", "--at", at, "card-00001")
    assert got.returncode == 0, got.stderr[-2000:]
    value = json.loads(got.stdout)["card-00001"]["card_activity_10m"]
    assert value["found"] and value["features"]["txn_count_10m"] >= 1 and value["feature_ts"] == int(at)
    table = _freshet(sub, env, "get", "--repo", repo, "--view", "card_activity_10m", "--at", at, "card-00001")
    assert table.returncode == 0
    assert f"txn_count_10m={value['features']['txn_count_10m']}" in table.stdout

    status = _freshet(sub, env, "status", "--repo", repo, "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    rows = {row["view"]: row for row in json.loads(status.stdout)}
    assert rows["card_activity_10m"]["log"]["rows"] > 2900
    # a request-time view: its accepted-event log holds the events its windows counted
    assert rows["card_activity_10m"]["as_of"] == "request"
    assert 2900 < rows["card_activity_10m"]["accepted_log"]["rows"] <= summary["valid"]
    assert all(row["live"]["lag"] is None for row in rows.values())  # the run used its own group
    shown = _freshet(sub, env, "status", "--repo", repo)
    assert shown.returncode == 0 and shown.stdout.splitlines()[0].split()[:4] == ["VIEW", "VERSION", "TOPIC", "LAG"]
    line = next(x for x in shown.stdout.splitlines() if x.startswith("card_activity_10m"))
    assert f"{rows['card_activity_10m']['log']['rows']:,}" in line and "not started" in line

    # online and offline agree; then one corrupted hash is found
    for view in ("card_spend_5m", "card_activity_10m"):
        consistent = _freshet(sub, env, "consistency", "--repo", repo, "--view", view, "--sample", "30", "--json")
        assert consistent.returncode == 0, consistent.stdout[-2000:] + consistent.stderr[-2000:]
        checked = json.loads(consistent.stdout)
        assert checked["mismatch_rate"] == 0 and checked["match"] >= 30 and checked["inconsistent"] == []
    key = "freshet:{card-00001}:card_spend_5m:v2"
    client = redis.Redis.from_url(redis_url)
    assert client.exists(key)
    client.hset(key, "txn_count", "999")
    broken = _freshet(sub, env, "consistency", "--repo", repo, "--view", "card_spend_5m", "--sample", "500")
    assert broken.returncode == 1, broken.stderr[-2000:]
    bad = [x for x in broken.stdout.splitlines() if x.startswith("card-00001")]
    assert len(bad) == 1 and "mismatch" in bad[0] and "txn_count: 999 !=" in bad[0]

    # the server runs the same check periodically and exports the mismatch ratio
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "freshet", "serve", "--repo", repo, "--port", str(port),
                               "--consistency-every", "1", "--consistency-sample", "500", "--quiet"],
                              cwd=sub, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ratios: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(ratios) < 3:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                continue
            ratios = {s.labels["view"]: s.value for family in text_string_to_metric_families(text)
                      for s in family.samples if s.name == "freshet_consistency_mismatch_ratio"}
        assert ratios["card_activity_10m"] == 0 and ratios["card_spend_1h"] == 0, ratios
        assert 0 < ratios["card_spend_5m"] < 0.1, ratios  # one entity of the sample
    finally:
        server.terminate()
        server.wait(10)


def test_produce_rejects_bad_values_naming_them(servers: Servers, project: Path) -> None:
    env = cli_env(servers, project, redis_db(servers.redis_url, 7))
    bad = _freshet(project, env, "produce", "--repo", "repo", "--events", "0")
    assert bad.returncode == 2 and "--events 0 is out of range: allowed 1 to" in bad.stderr
    unknown = _freshet(project, env, "produce", "--repo", "repo", "--source", "nope")
    assert unknown.returncode == 2 and "unknown source 'nope'" in unknown.stderr
