"""SIGKILL `freshet run` mid-stream, restart it: the log has no duplicated and no missing rows.

The reference is an uninterrupted run over the same topic (its own group,
offline root and Redis database). Rows are compared by (view, entity, window,
source offset) with their values; Redis must hold the log's latest value for
every entity.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from freshet.features.online_layout import decode_value, online_key
from freshet.features.registry import Registry
from freshet.replay.parity import compare_accepted
from freshet.synthetic import StreamSpec
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import (
    cli_env,
    latest_by_entity,
    pipeline_config,
    provision,
    read_log,
    redis_db,
    row_identity,
    run_until_caught_up,
)

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
    source: tx
    window: {{type: tumbling, size: 5m}}
    grace: 30s
    emit: final
    ttl: 1d
    aggregations:
      - {{function: count, name: n}}
      - {{function: sum, column: amount, name: total}}
  - name: spend_now
    source: tx
    window: {{type: tumbling, size: 1m}}
    grace: 10s
    emit: current
    as_of: request
    ttl: 1d
    aggregations:
      - {{function: count, name: n}}
      - {{function: max, column: amount, name: biggest}}
"""


def card_topic(servers: Servers, tmp_path: Path, topic: str, *, events: int, seed: int) -> tuple[Path, list[Any]]:
    """A repository of REPO_YAML's two views over ``topic`` (3 partitions), filled with a synthetic card stream
    of 300 cards over 20 minutes."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "views.yaml").write_text(REPO_YAML.format(topic=topic))
    provision(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=events, cards=300, span_ms=20 * 60_000,
                                                             end_ms=1_700_000_000_000, seed=seed))
    return repo, list(Registry.load(repo).views.values())


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # fields after the name: state, ppid, ...
            found.append(int(stat.parent.name))
    return found


def test_sigkill_then_restart_loses_and_duplicates_nothing(servers: Servers, unique: str, tmp_path: Path) -> None:
    repo, views = card_topic(servers, tmp_path, f"crash-{unique}", events=16_000, seed=11)

    crash_root = tmp_path / "crash"
    env = cli_env(servers, crash_root, redis_db(servers.redis_url, 3))
    cmd = [sys.executable, "-m", "freshet", "run", "--repo", str(repo), "--group", f"crash-{unique}",
           "--commit-interval", "0.5", "--progress-interval", "1"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not list((crash_root / "offline").glob("*/v1/date=*/part-*.parquet")):
        time.sleep(0.05)
    time.sleep(0.7)  # a few more checkpoints, then kill mid-stream
    assert first.poll() is None, "the run ended before it could be killed mid-stream"
    children = children_of(first.pid)  # the re-key router's process
    assert children, "the run re-keys in a process of its own"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # the router notices that its run is gone and ends (else it would keep the group's source partitions)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "the re-key router outlived its run"
    rows_at_kill = sum(len(read_log(crash_root / "offline", v)) for v in views)
    assert rows_at_kill > 0

    second = subprocess.run([*cmd, "--until-caught-up"], env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]

    reference_root = tmp_path / "reference"
    config = pipeline_config(servers, reference_root, f"ref-{unique}")
    config.redis_url = redis_db(servers.redis_url, 4)
    run_until_caught_up(views, config)

    client = redis.Redis.from_url(redis_db(servers.redis_url, 3))
    for view in views:
        crashed = read_log(crash_root / "offline", view)
        reference = read_log(reference_root / "offline", view)
        ids = [row_identity(r) for r in crashed]
        assert len(ids) == len(set(ids)), f"{view.name}: duplicated rows after the crash"
        assert sorted(ids) == sorted(row_identity(r) for r in reference), f"{view.name}: rows differ from an uninterrupted run"
        assert len(crashed) > rows_at_kill / 2 or view.emit == "final"
        for card, row in latest_by_entity(crashed).items():
            stored = client.hgetall(online_key(view.name, view.version, card))
            assert int(stored[b"__ts"]) == row["feature_ts"] and int(stored[b"__off"]) == row["source_offset"]
            assert decode_value(stored[b"n"]) == row["n"]
    # the request-time view's accepted-event log: no row twice, none missing
    accepted = compare_accepted("spend_now", crash_root / "offline", reference_root / "offline")
    assert accepted is not None and accepted.rows_a > 0 and accepted.equal, accepted


def test_sigterm_flushes_and_commits(servers: Servers, unique: str, tmp_path: Path) -> None:
    """A graceful stop leaves nothing to redo: the restart re-emits no row the first run wrote."""
    topic = f"term-{unique}"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "views.yaml").write_text(REPO_YAML.format(topic=topic))
    views = list(Registry.load(repo).views.values())
    provision(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic,
                   StreamSpec(events=8_000, cards=200, span_ms=10 * 60_000, end_ms=1_700_000_000_000, seed=5))
    root = tmp_path / "run"
    env = cli_env(servers, root, redis_db(servers.redis_url, 5))
    cmd = [sys.executable, "-m", "freshet", "run", "--repo", str(repo), "--group", f"term-{unique}",
           "--commit-interval", "5"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not list((root / "offline").glob("*/v1/date=*/part-*.parquet")):
        time.sleep(0.05)
    time.sleep(1.0)  # mid-checkpoint-interval: unflushed rows exist in memory
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == 0, out[-3000:]
    stopped = json.loads(out[out.index("{\n"):])
    assert stopped["offline_rows"] > 0

    second = subprocess.run([*cmd, "--until-caught-up"], env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    resumed = json.loads(second.stdout[second.stdout.index("{\n"):])
    assert resumed["offline_skipped_after_restart"] == 0, "rows were redone after a graceful stop"

    reference_root = tmp_path / "reference"
    config = pipeline_config(servers, reference_root, f"term-ref-{unique}")
    config.redis_url = None
    run_until_caught_up(views, config)
    for view in views:
        got = sorted(row_identity(r) for r in read_log(root / "offline", view))
        assert len(got) == len(set(got))
        assert got == sorted(row_identity(r) for r in read_log(reference_root / "offline", view))
