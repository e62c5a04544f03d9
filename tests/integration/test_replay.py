"""Replays: parity with the live log, resume after SIGKILL, workers, and the versioning handover."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from freshet.features.registry import Registry
from freshet.replay.parity import compare, compare_accepted
from freshet.synthetic import StreamSpec
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import cli_env, pipeline_config, provision, read_log, run_until_caught_up

REPO_YAML = """\
sources:
  - name: tx
    topic: {topic}
    partitions: 3
    key: card_id
    timestamp: ts
    schema: {{card_id: str, amount: float, merchant: str, country: str, ts: int}}
views:
  - name: spend_5m
    version: {version}
    source: tx
    window: {{type: tumbling, size: {size}}}
    grace: 30s
    emit: final
    ttl: 1d
    aggregations:
      - {{function: count, name: n}}
      - {{function: sum, column: amount, name: total}}
  - name: spend_hop
    source: tx
    window: {{type: hopping, size: 10m, step: 5m}}
    grace: 30s
    emit: final
    as_of: request
    ttl: 1d
    aggregations:
      - {{function: count, name: n}}
      - {{function: mean, column: amount, name: avg}}
  - name: activity_2m
    source: tx
    window: {{type: sliding, size: 2m}}
    grace: 10s
    emit: current
    as_of: request
    ttl: 1d
    aggregations:
      - {{function: count, name: n}}
      - {{function: count_distinct, column: merchant, name: merchants}}
"""
END_MS = 1_700_000_000_000


@dataclass
class Stream:
    servers: Servers
    topic: str
    repo: Path
    live_root: Path
    views: list[str]

    def env(self, root: Path) -> dict[str, str]:
        return cli_env(self.servers, root)


def write_repo(path: Path, topic: str, version: int = 1, size: str = "5m") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "views.yaml").write_text(REPO_YAML.format(topic=topic, version=version, size=size))
    return path


def freshet(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "freshet", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def stream(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stream]:
    """A topic with out-of-order, late and malformed events on 3 partitions, and its live log."""
    base = tmp_path_factory.mktemp("replay")
    topic = f"replay-{base.name}-{uuid.uuid4().hex[:6]}"
    repo = write_repo(base / "repo", topic)
    provision(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic,
                   StreamSpec(events=12_000, cards=150, span_ms=30 * 60_000, end_ms=END_MS, seed=21,
                              late_share=0.02, out_of_order_share=0.1))
    views = list(Registry.load(repo).views.values())
    stats = run_until_caught_up(views, pipeline_config(servers, base / "live", f"live-{topic}"))
    assert stats["late"] > 0 and stats["invalid"] > 0  # the stream has what the tests claim
    yield Stream(servers, topic, repo, base / "live" / "offline", [v.name for v in views])


def test_replay_with_two_workers_equals_the_live_log(stream: Stream, tmp_path: Path) -> None:
    args = ["replay", "--repo", str(stream.repo), "--workers", "2"] + [x for v in stream.views for x in ("--view", v)]
    result = freshet(*args, env=stream.env(tmp_path))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert '"finished": true' in result.stdout
    for view in stream.views:
        parity = freshet("parity", "--view", view, "--a", str(stream.live_root), "--b", str(tmp_path / "offline"),
                         env=stream.env(tmp_path))
        assert parity.returncode == 0, parity.stdout
        assert "parity: OK" in parity.stdout
        # request-time views: their accepted-event logs are compared too
        assert (f"view {view} (accepted events)" in parity.stdout) == (view != "spend_5m"), parity.stdout
        assert read_log(stream.live_root, Registry.load(stream.repo).view(view))  # not two empty logs


def test_sigkill_during_replay_then_same_command(stream: Stream, tmp_path: Path) -> None:
    args = ["replay", "--repo", str(stream.repo), "--view", "spend_5m", "--view", "activity_2m"]
    # slowed down so that it is surely killed halfway; the rerun goes at full speed
    cmd = [sys.executable, "-m", "freshet", *args, "--max-rate", "3000", "--checkpoint-interval", "0.3"]
    first = subprocess.Popen(cmd, env=stream.env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "offline").glob("*/v1/date=*/part-*.parquet")):
        time.sleep(0.05)
    time.sleep(0.5)
    assert first.poll() is None, "the replay ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    again = freshet(*args, env=stream.env(tmp_path))
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "resuming unfinished replay" in again.stderr
    for view in ("spend_5m", "activity_2m"):
        report = compare(view, stream.live_root, tmp_path / "offline")
        assert report.equal, (view, len(report.missing), len(report.extra), len(report.different))
    accepted = compare_accepted("activity_2m", stream.live_root, tmp_path / "offline")
    assert accepted is not None and accepted.rows_a > 0 and accepted.equal, accepted


def test_replay_online_writes_the_events_of_request_time_views(stream: Stream, tmp_path: Path) -> None:
    """``--online``: the replay writes request-time views' values and accepted events to Redis (here its
    own database, empty at the start)."""
    url = stream.servers.redis_url.rsplit("/", 1)[0] + "/9"
    client = redis.Redis.from_url(url)
    client.flushdb()
    args = ["replay", "--repo", str(stream.repo), "--online", "--view", "spend_hop", "--view", "activity_2m"]
    result = freshet(*args, env=cli_env(stream.servers, tmp_path, redis_url=url))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["finished"] and summary["online_writes"] > 0, summary
    for view in ("spend_hop", "activity_2m"):
        keys = list(client.scan_iter(f"freshet:*:{view}:v1:ev"))
        assert keys, view
        assert all(client.zcard(k) > 0 for k in keys), view


def test_refuses_to_replay_over_an_existing_log(stream: Stream) -> None:
    env = {**stream.env(stream.live_root.parent), "FRESHET_OFFLINE_ROOT": str(stream.live_root)}
    result = freshet("replay", "--repo", str(stream.repo), "--view", "spend_5m", env=env)
    assert result.returncode == 2
    assert "--offline-root" in result.stderr and "--replace" in result.stderr


def test_versioning_handover(servers: Servers, unique: str, tmp_path: Path) -> None:
    """Bump a view's window, replay the new version, continue live: equal to a replay of the whole range."""
    topic = f"handover-{unique}"
    provision(servers, topic, 3)
    first_half = StreamSpec(events=4_000, cards=100, span_ms=20 * 60_000, end_ms=END_MS - 10 * 60_000, seed=1,
                            late_share=0.01)
    produce_stream(servers.kafka_config(), topic, first_half)
    repo_v2 = write_repo(tmp_path / "repo", topic, version=2, size="10m")  # the bumped view
    env = cli_env(servers, tmp_path)
    replayed = freshet("replay", "--repo", str(repo_v2), "--view", "spend_5m", env=env)
    assert replayed.returncode == 0, (replayed.stdout + replayed.stderr)[-3000:]

    second_half = StreamSpec(events=4_000, cards=100, span_ms=10 * 60_000, end_ms=END_MS, seed=2, late_share=0.01)
    produce_stream(servers.kafka_config(), topic, second_half)
    live = freshet("run", "--repo", str(repo_v2), "--view", "spend_5m", "--from-replay", "--until-caught-up",
                   env=env)
    assert live.returncode == 0, (live.stdout + live.stderr)[-3000:]

    whole = {**env, "FRESHET_OFFLINE_ROOT": str(tmp_path / "whole")}
    reference = freshet("replay", "--repo", str(repo_v2), "--view", "spend_5m", env=whole)
    assert reference.returncode == 0, (reference.stdout + reference.stderr)[-3000:]
    report = compare("spend_5m", tmp_path / "offline", tmp_path / "whole", version=2)
    assert report.rows_a > 0
    assert report.equal, (len(report.missing), len(report.extra), len(report.different))
    # windows straddling the boundary exist, so the handover was really tested
    boundary = END_MS - 10 * 60_000
    rows = read_log(tmp_path / "offline", Registry.load(repo_v2).view("spend_5m"))
    assert any(r["window_start"] < boundary < r["window_end"] for r in rows)


def test_replay_workers_get_no_secret_on_their_command_line(stream: Stream, tmp_path: Path) -> None:
    """`ps` shows every process's argv to every user: the Redis URL (with its password) must not be there."""
    secret = "s3cret-" + uuid.uuid4().hex[:6]
    env = {**stream.env(tmp_path), "FRESHET_REDIS_URL": f"redis://:{secret}@127.0.0.1:1/0"}
    args = ["replay", "--repo", str(stream.repo), "--workers", "2", "--view", "spend_5m", "--max-rate", "4000"]
    parent = subprocess.Popen([sys.executable, "-m", "freshet", *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    seen: dict[int, str] = {}
    while parent.poll() is None:
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) not in seen:
                try:
                    ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == parent.pid and "--worker-id" in cmdline:
                    seen[int(proc.name)] = cmdline
        time.sleep(0.05)
    out, err = parent.communicate()
    assert parent.returncode == 0, (out + err)[-2000:]
    assert len(seen) == 2, seen
    assert all(secret not in cmd for cmd in seen.values()), seen
    assert secret not in out + err


def test_a_replay_never_asks_for_more_records_than_its_plan_has_left(stream: Stream, tmp_path: Path) -> None:
    """Asking for a whole batch when fewer records are left made the last `consume` wait out its timeout
    (0.5 s of every replay): each call asks for at most what the planned partitions still hold."""
    from confluent_kafka import Consumer, TopicPartition

    from freshet.replay import driver as replay_driver

    # (records asked for, records the plan had left), from the driver's own positions: tansu's watermark
    # can lie below its last record, so counting what was delivered would overstate what is left
    asked: list[tuple[int, int]] = []
    state: dict[str, object] = {}

    class Watched(Consumer):  # the real consumer, its calls recorded
        def consume(self, num_messages: int = 1, timeout: float = -1) -> list[object]:
            driver = state["driver"]
            positions = state["positions"]
            assert isinstance(driver, replay_driver.BatchDriver) and isinstance(positions, dict)
            left = sum(driver.end[p] - positions.get(p, driver.start[p]) for p in driver.end)
            asked.append((num_messages, left))
            return super().consume(num_messages, timeout)

    probe = Consumer({**stream.servers.kafka_config(), "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    end = {p: probe.get_watermark_offsets(TopicPartition(stream.topic, p), timeout=10)[1] for p in range(3)}
    probe.close()
    views = list(Registry.load(stream.repo).views.values())
    driver = replay_driver.BatchDriver(views, stream.servers.kafka_config(), topic=stream.topic,
                                       start=dict.fromkeys(end, 0), end=end, state_dir=tmp_path / "state",
                                       offline_root=tmp_path / "offline", redis_url=None, check_keys=False)
    state["driver"] = driver
    apply_batch = driver._apply_batch

    def watched_apply(msgs: list[object], positions: dict[int, int], todo: set[int], consumer: object) -> None:
        state["positions"] = positions
        apply_batch(msgs, positions, todo, consumer)

    state["positions"] = dict.fromkeys(end, 0)
    driver._apply_batch = watched_apply  # type: ignore[method-assign]
    original = replay_driver.Consumer
    replay_driver.Consumer = Watched  # type: ignore[misc]
    try:
        result = driver.run()
    finally:
        replay_driver.Consumer = original  # type: ignore[misc]
        driver.close()
    assert result["finished"] and result["read"] == sum(end.values()) > 0
    assert asked and all(0 < n <= left for n, left in asked)
    assert asked[-1][0] < 5000  # the last call asked for what was left, not a whole batch
