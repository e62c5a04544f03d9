"""The local stack (tansu + redis-server child processes) and topic provisioning.

Every test starts its own stack in a temporary directory and stops it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient, ConfigResource

from freshet.features.errors import StackError, TopicError
from freshet.infra.localstack import (
    StackInfo,
    env_exports,
    ephemeral_stack,
    read_stack,
    start_stack,
    stop_stack,
)
from freshet.infra.topics import TopicSpec, provision_topics, source_topic_specs

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    """True if no live process has this pid (a zombie counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return text[text.rindex(")") + 2] in "ZX"


def _processes_mentioning(fragment: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmdline and not _gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def _topic(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("stack")
    start_stack(directory, timeout_s=30)
    try:
        yield directory
    finally:
        stop_stack(directory)


@pytest.fixture(scope="module")
def stack(stack_dir: Path) -> StackInfo:
    info = read_stack(stack_dir)
    assert info is not None
    return info


def test_both_processes_answer(stack: StackInfo) -> None:
    metadata = AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=10)
    assert metadata.brokers, "the broker returned no brokers in its metadata"
    client = redis.Redis.from_url(stack.redis_url)
    try:
        assert client.ping() is True
        client.set("freshet:probe", "1")
        assert client.get("freshet:probe") == b"1"
    finally:
        client.close()
    assert stack.kafka_bootstrap.startswith("127.0.0.1:")
    assert stack.redis_url.startswith("redis://127.0.0.1:") and stack.redis_url.endswith("/0")
    assert not _gone(stack.broker_pid) and not _gone(stack.redis_pid)


def test_dev_env_and_record(stack_dir: Path, stack: StackInfo) -> None:
    lines = (stack_dir / "dev.env").read_text().splitlines()
    assert lines == [
        f"FRESHET_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}",
        f"FRESHET_REDIS_URL={stack.redis_url}",
    ]
    record = json.loads((stack_dir / "stack.json").read_text())
    assert record["processes"]["broker"]["pid"] == stack.broker_pid
    assert record["processes"]["redis"]["pid"] == stack.redis_pid
    assert record["processes"]["broker"]["port"] == int(stack.kafka_bootstrap.rsplit(":", 1)[1])
    assert record["started_at"]
    for name, pid in (("broker", stack.broker_pid), ("redis", stack.redis_pid)):
        proc_stat = Path(f"/proc/{pid}/stat").read_text()
        expected_start = int(proc_stat[proc_stat.rindex(")") + 2 :].split()[19])
        assert record["processes"][name]["start_time"] == expected_start
    assert env_exports(stack) == (
        f"export FRESHET_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}\nexport FRESHET_REDIS_URL={stack.redis_url}"
    )


def test_second_start_reuses_the_running_stack(stack_dir: Path, stack: StackInfo) -> None:
    again = start_stack(stack_dir, timeout_s=30)
    assert again == stack
    assert (again.broker_pid, again.redis_pid) == (stack.broker_pid, stack.redis_pid)
    assert not _gone(stack.broker_pid) and not _gone(stack.redis_pid)


def test_provision_source_topics(stack: StackInfo) -> None:
    source = _topic("payments")
    reports = provision_topics({"bootstrap.servers": stack.kafka_bootstrap}, source_topic_specs(source, 4))
    assert [(r.name, r.partitions, r.status) for r in reports] == [
        (source, 4, "created"),
        (f"{source}.dlq", 4, "created"),
        (f"{source}.late", 4, "created"),
    ]
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    for name in (source, f"{source}.dlq", f"{source}.late"):
        assert name in topics, f"{name} missing from the broker's metadata"
        assert len(topics[name].partitions) == 4
    # The broker has no default topic configs: ours must have been set explicitly.
    resource = ConfigResource("topic", source)
    configs = admin.describe_configs([resource])[resource].result()
    assert configs["retention.ms"].value == "-1"
    assert configs["cleanup.policy"].value == "delete"
    dlq = ConfigResource("topic", f"{source}.dlq")
    assert admin.describe_configs([dlq])[dlq].result()["retention.ms"].value == "604800000"

    again = provision_topics({"bootstrap.servers": stack.kafka_bootstrap}, source_topic_specs(source, 4))
    assert [(r.name, r.partitions, r.status) for r in again] == [
        (source, 4, "exists"),
        (f"{source}.dlq", 4, "exists"),
        (f"{source}.late", 4, "exists"),
    ]


def test_partition_mismatch_names_both_counts(stack: StackInfo) -> None:
    source = _topic("orders")
    config = {"bootstrap.servers": stack.kafka_bootstrap}
    provision_topics(config, source_topic_specs(source, 4))
    with pytest.raises(TopicError) as caught:
        provision_topics(config, source_topic_specs(source, 2))
    message = str(caught.value)
    assert repr(source) in message
    assert "4 partition(s)" in message
    assert "2 are expected" in message
    # Nothing was changed.
    topics = AdminClient(config).list_topics(timeout=10).topics
    assert len(topics[source].partitions) == 4


def test_mixed_existing_and_missing_topics(stack: StackInfo) -> None:
    config = {"bootstrap.servers": stack.kafka_bootstrap}
    first = TopicSpec(_topic("a"), 3, {"retention.ms": "60000", "cleanup.policy": "delete"})
    second = TopicSpec(_topic("b"), 1, {"retention.ms": "60000", "cleanup.policy": "delete"})
    assert provision_topics(config, [first])[0].status == "created"
    reports = provision_topics(config, [first, second])
    assert [(r.name, r.status) for r in reports] == [(first.name, "exists"), (second.name, "created")]


def test_bad_specs_are_rejected_before_contacting_the_broker() -> None:
    with pytest.raises(TopicError, match="partitions must be an integer >= 1, got 0"):
        TopicSpec("t", 0)
    with pytest.raises(TopicError, match="bad topic name 'a b'"):
        TopicSpec("a b", 1)
    with pytest.raises(TopicError, match="more than once"):
        provision_topics({"bootstrap.servers": "127.0.0.1:1"}, [TopicSpec("t", 1), TopicSpec("t", 1)])


def test_stop_stack_leaves_no_process(tmp_path: Path) -> None:
    info = start_stack(tmp_path, timeout_s=30)
    assert not _gone(info.broker_pid) and not _gone(info.redis_pid)
    stopped = stop_stack(tmp_path)
    assert sorted(stopped) == sorted([info.broker_pid, info.redis_pid])
    assert _gone(info.broker_pid) and _gone(info.redis_pid)
    assert not (tmp_path / "dev.env").exists()
    assert not (tmp_path / "stack.json").exists()
    assert read_stack(tmp_path) is None
    assert stop_stack(tmp_path) == []


def test_no_recorded_stack_is_not_an_error(tmp_path: Path) -> None:
    assert stop_stack(tmp_path / "never-started") == []
    assert read_stack(tmp_path / "never-started") is None


def test_partial_stack_is_replaced(tmp_path: Path) -> None:
    first = start_stack(tmp_path, timeout_s=30)
    try:
        os.kill(first.redis_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while read_stack(tmp_path) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_stack(tmp_path) is None  # half a stack is not a stack
        second = start_stack(tmp_path, timeout_s=30)
        assert second.broker_pid != first.broker_pid
        assert second.redis_pid != first.redis_pid
        assert _gone(first.broker_pid), "the surviving broker of the broken stack was left running"
        assert redis.Redis.from_url(second.redis_url).ping() is True
    finally:
        stop_stack(tmp_path)
    assert _gone(second.broker_pid) and _gone(second.redis_pid)


def test_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    info = start_stack(tmp_path, timeout_s=30)
    record_path = tmp_path / "stack.json"
    original = record_path.read_text()
    try:
        record = json.loads(original)
        for process in record["processes"].values():
            process["start_time"] += 1  # as if the pids now belonged to other processes
        record_path.write_text(json.dumps(record))
        assert read_stack(tmp_path) is None
        assert stop_stack(tmp_path) == []
        assert not _gone(info.broker_pid) and not _gone(info.redis_pid)
    finally:
        record_path.write_text(original)
        stopped = stop_stack(tmp_path)
    assert sorted(stopped) == sorted([info.broker_pid, info.redis_pid])
    assert _gone(info.broker_pid) and _gone(info.redis_pid)


def test_ephemeral_stack_stops_on_exit(tmp_path: Path) -> None:
    with ephemeral_stack(tmp_path) as info:
        assert redis.Redis.from_url(info.redis_url).ping() is True
        assert read_stack(tmp_path) == info
    assert _gone(info.broker_pid) and _gone(info.redis_pid)
    assert not (tmp_path / "stack.json").exists()


def _fake_broker(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_broker_that_dies_reports_its_log_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_dir = tmp_path / "stack"
    fake = _fake_broker(tmp_path / "fake-broker", "echo 'boom: cannot bind' >&2; exit 3")
    monkeypatch.setenv("FRESHET_BROKER_BIN", str(fake))
    with pytest.raises(StackError) as caught:
        start_stack(stack_dir, timeout_s=10)
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "boom: cannot bind" in message
    assert not (stack_dir / "stack.json").exists()
    assert _processes_mentioning(str(stack_dir)) == []  # the redis-server was killed too


def test_broker_that_never_answers_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack_dir = tmp_path / "stack"
    # A wrapper script whose child never answers: the whole process group must go.
    marker = f"sleep 60.{uuid.uuid4().int % 10**6:06d}"
    fake = _fake_broker(tmp_path / "silent-broker", f"echo 'starting forever'; {marker}")
    monkeypatch.setenv("FRESHET_BROKER_BIN", str(fake))
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        start_stack(stack_dir, timeout_s=1.5)
    assert time.monotonic() - started < 10
    assert "did not answer" in str(caught.value)
    assert "within 1.5s" in str(caught.value)
    assert "starting forever" in str(caught.value)
    assert _processes_mentioning(str(stack_dir)) == []
    assert _processes_mentioning(str(fake)) == []
    assert _processes_mentioning(marker) == []


def test_redis_keeps_its_data_across_a_restart_of_the_stack(tmp_path: Path) -> None:
    """The dev stack's Redis persists (AOF in the stack directory): a restart does not empty the online store."""
    info = start_stack(tmp_path, timeout_s=30)
    try:
        client = redis.Redis.from_url(info.redis_url)
        client.hset("freshet:{card-1}:v:v1", mapping={"__ts": "1", "n": "3"})
        client.close()
    finally:
        stop_stack(tmp_path)
    again = start_stack(tmp_path, timeout_s=30)
    try:
        client = redis.Redis.from_url(again.redis_url)
        assert client.hgetall("freshet:{card-1}:v:v1") == {b"__ts": b"1", b"n": b"3"}
        client.close()
    finally:
        stop_stack(tmp_path)
