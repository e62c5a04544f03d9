"""A topic deleted and recreated under a group with state: the run refuses, loses nothing, says how to start over."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
from confluent_kafka.admin import AdminClient

from freshet.synthetic import StreamSpec
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import cli_env, provision
from tests.integration.test_replay import END_MS, freshet, write_repo


def recreate_topic(servers: Servers, topic: str, partitions: int) -> None:
    """Delete the topic, wait until the broker forgets it, and create it again (empty, a new topic id)."""
    admin = AdminClient(servers.kafka_config())
    admin.delete_topics([topic])[topic].result()
    for _ in range(100):
        if topic not in admin.list_topics(timeout=10).topics:
            break
        time.sleep(0.1)
    provision(servers, topic, partitions)


def test_recreated_topic_is_refused_and_the_old_log_kept(servers: Servers, unique: str, tmp_path: Path) -> None:
    topic = f"history-{unique}"
    repo = write_repo(tmp_path / "repo", topic)
    env = cli_env(servers, tmp_path)
    provision(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=3_000, cards=50, end_ms=END_MS, seed=8))
    first = freshet("run", "--repo", str(repo), "--until-caught-up", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    log_before = {p: p.stat().st_mtime_ns for p in (tmp_path / "offline").rglob("part-*.parquet")}
    assert log_before

    recreate_topic(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=300, cards=50, end_ms=END_MS + 3_600_000, seed=9))

    second = freshet("run", "--repo", str(repo), "--until-caught-up", env=env)
    assert second.returncode != 0
    assert "deleted and recreated" in second.stderr and "--group" in second.stderr, second.stderr[-2000:]
    log_after = {p: p.stat().st_mtime_ns for p in (tmp_path / "offline").rglob("part-*.parquet")}
    assert log_after == log_before  # nothing overwritten, nothing added

    # the way out the message gives: the old log aside, a new group
    (tmp_path / "offline").rename(tmp_path / "offline-old-history")
    third = freshet("run", "--repo", str(repo), "--until-caught-up", "--group", f"freshet.{topic}.2", env=env)
    assert third.returncode == 0, third.stderr[-2000:]
    assert json.loads(third.stdout)["read"] == 300  # every record of the new history


def test_broker_back_empty_is_refused_without_a_crash_loop(tmp_path: Path) -> None:
    """The dev broker keeps nothing across a restart: the next run says so instead of crashing on every start."""
    from freshet.infra.localstack import start_stack, stop_stack
    from tests.integration.conftest import Servers as Stack

    topic = f"empty-broker-{uuid.uuid4().hex[:8]}"
    repo = write_repo(tmp_path / "repo", topic)
    stack_dir = tmp_path / "stack"
    info = start_stack(stack_dir, timeout_s=30)
    try:
        servers = Stack(info.kafka_bootstrap, info.redis_url, "test stack")
        provision(servers, topic, 3)
        produce_stream(servers.kafka_config(), topic, StreamSpec(events=1_000, cards=20, end_ms=END_MS, seed=3))
        first = freshet("run", "--repo", str(repo), "--until-caught-up", env=cli_env(servers, tmp_path))
        assert first.returncode == 0, first.stderr[-2000:]
    finally:
        stop_stack(stack_dir)
    info = start_stack(stack_dir, timeout_s=30)  # tansu comes back empty
    try:
        servers = Stack(info.kafka_bootstrap, info.redis_url, "test stack")
        provision(servers, topic, 3)
        produce_stream(servers.kafka_config(), topic, StreamSpec(events=200, cards=20, end_ms=END_MS, seed=4))
        for _ in range(2):  # the same answer every time: no crash, no loop
            again = freshet("run", "--repo", str(repo), "--until-caught-up", env=cli_env(servers, tmp_path),
                            timeout=60)
            assert again.returncode == 3, again.stderr[-2000:]
            assert "came back empty" in again.stderr and "Traceback" not in again.stderr
    finally:
        stop_stack(stack_dir)


def test_reset_starts_the_source_over_and_keeps_the_old_log(servers: Servers, unique: str, tmp_path: Path) -> None:
    topic = f"reset-{unique}"
    repo = write_repo(tmp_path / "repo", topic)
    env = cli_env(servers, tmp_path)
    provision(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=2_000, cards=40, end_ms=END_MS, seed=18))
    first = freshet("run", "--repo", str(repo), "--until-caught-up", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    old_files = {p.relative_to(tmp_path / "offline"): p.read_bytes() for p in (tmp_path / "offline").rglob("*.parquet")}
    assert old_files

    recreate_topic(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=300, cards=40, end_ms=END_MS + 3_600_000, seed=19))
    refused = freshet("run", "--repo", str(repo), "--until-caught-up", env=env)
    assert refused.returncode == 3 and "freshet reset --repo" in refused.stderr, refused.stderr[-2000:]

    dry = freshet("reset", "--repo", str(repo), env=env)
    assert dry.returncode == 0 and "nothing was done: run again with --yes" in dry.stderr
    assert "delete internal topic changelog__freshet." in dry.stderr
    assert {p.relative_to(tmp_path / "offline") for p in (tmp_path / "offline").rglob("*.parquet")} == set(old_files)

    done = freshet("reset", "--repo", str(repo), "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = json.loads(done.stdout)["done"]
    assert any(s.startswith("deleted consumer group freshet.") for s in steps)
    assert any(s.startswith("moved log ") for s in steps)

    again = freshet("run", "--repo", str(repo), "--until-caught-up", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["read"] == 300  # the whole new history, from its beginning
    # the old log is kept, byte for byte, beside the new one
    moved = {}
    for path in (tmp_path / "offline").rglob("*.parquet"):
        rel = path.relative_to(tmp_path / "offline")
        # <view>/v1.before-reset-*/..., and a request-time view's _accepted/<view>/v1.before-reset-*/...
        if any(".before-reset-" in part for part in rel.parts):
            moved[Path(*(part.split(".before-reset-")[0] for part in rel.parts))] = path.read_bytes()
    assert moved == old_files
    fresh = [p for p in (tmp_path / "offline").rglob("*.parquet") if ".before-reset-" not in str(p)]
    assert fresh and sum(pq.read_metadata(p).num_rows for p in fresh) > 0


def test_replay_does_not_resume_on_a_changed_history(servers: Servers, unique: str, tmp_path: Path) -> None:
    """A replay interrupted, then its topic recreated: the resume refuses (it would mix two histories)."""
    topic = f"replay-history-{unique}"
    repo = write_repo(tmp_path / "repo", topic)
    env = cli_env(servers, tmp_path)
    provision(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=6_000, cards=40, end_ms=END_MS, seed=28))
    args = ["replay", "--repo", str(repo), "--view", "spend_5m"]
    cmd = [sys.executable, "-m", "freshet", *args, "--max-rate", "1500", "--checkpoint-interval", "0.3"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((tmp_path / "offline").glob("*/v1/date=*/part-*.parquet")):
        time.sleep(0.05)
    assert first.poll() is None, ("the replay ended before it could be stopped", first.communicate()[1][-2000:])
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    recreate_topic(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=300, cards=40, end_ms=END_MS, seed=29))
    refused = freshet(*args, env=env)
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert "changed since replay" in refused.stderr and "--replace" in refused.stderr
    (plan,) = (tmp_path / "offline" / "_replays").glob("*.json")
    plan.unlink()
    rebuilt = freshet(*args, "--replace", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert json.loads(rebuilt.stdout)["read"] == 300
