"""Helpers for integration tests: topics, producing known events, running, reading outputs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from freshet.features.definitions import FeatureView
from freshet.features.offline_layout import list_parts, view_schema
from freshet.infra.binaries import find_redis_binary
from freshet.infra.topics import provision_topics, source_topic_specs
from freshet.pipelines.offsets import EndOffsetProbe
from freshet.pipelines.runner import run_pipeline
from freshet.pipelines.topology import PipelineConfig, build_pipeline
from tests.integration.conftest import Servers


def retarget(views: list[FeatureView], topic: str, partitions: int | None = None) -> list[FeatureView]:
    """The same views on another topic (each test gets a topic of its own)."""
    update: dict[str, Any] = {"topic": topic}
    if partitions is not None:
        update["partitions"] = partitions
    return [v.model_copy(update={"source": v.source.model_copy(update=update)}) for v in views]


def provision(servers: Servers, topic: str, partitions: int) -> None:
    provision_topics(servers.kafka_config(), source_topic_specs(topic, partitions))


def produce(servers: Servers, topic: str, records: list[tuple[int, str | None, Any]]) -> list[tuple[int, int]]:
    """Produce (partition, key, value) in order; value dicts become JSON. Returns (partition, offset) each."""
    producer = Producer({**servers.kafka_config(), "linger.ms": 5, "enable.idempotence": False})
    placed: list[tuple[int, int] | None] = [None] * len(records)

    def make_callback(i: int) -> Any:
        def callback(err: Any, msg: Any) -> None:
            if err is not None:
                raise RuntimeError(f"delivery failed: {err}")
            placed[i] = (msg.partition(), msg.offset())
        return callback

    for i, (partition, key, value) in enumerate(records):
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        producer.produce(topic, value=raw, key=key, partition=partition, on_delivery=make_callback(i))
        producer.flush(10)  # one at a time: offsets follow the list order exactly
    missing = [i for i, p in enumerate(placed) if p is None]
    if missing:
        raise RuntimeError(f"records {missing} were not delivered")
    return [p for p in placed if p is not None]


def pipeline_config(servers: Servers, work: Path, group: str, **kw: Any) -> PipelineConfig:
    return PipelineConfig(
        kafka_config=servers.kafka_config(), consumer_group=group, state_dir=work / "state" / group,
        offline_root=work / "offline", redis_url=servers.redis_url, commit_interval_s=0.5, **kw,
    )


def run_until_caught_up(views: list[FeatureView], config: PipelineConfig) -> dict[str, Any]:
    pipeline = build_pipeline(views, config)
    return run_pipeline(pipeline, until_caught_up=True, interval_s=5.0)


def read_log(root: Path, view: FeatureView) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    schema = view_schema(view)
    for path in list_parts(root, view):
        table = pq.read_table(path, schema=schema)
        for col in ("feature_ts", "window_start", "window_end", "produced_at"):  # exact epoch ms
            table = table.set_column(table.schema.get_field_index(col), col, table[col].cast(pa.int64()))
        rows.extend(table.to_pylist())
    return rows


def read_topic(servers: Servers, topic: str, timeout_s: float = 20.0) -> list[Any]:
    """Every record of a topic, read with assign() up to the current end offsets."""
    admin = AdminClient(servers.kafka_config())
    partitions = len(admin.list_topics(timeout=10).topics[topic].partitions)
    consumer = Consumer({**servers.kafka_config(), "group.id": "reader", "enable.auto.commit": False,
                         "allow.auto.create.topics": False})
    try:
        probe = EndOffsetProbe(servers.kafka_config())
        ends = {p: end for (_t, p), end in probe.end_offsets((topic, p) for p in range(partitions)).items()}
        probe.close()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p] > 0])
        records: list[Any] = []
        done = {p for p, end in ends.items() if end == 0}
        import time

        deadline = time.monotonic() + timeout_s
        while len(done) < partitions and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            records.append(msg)
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return records
    finally:
        consumer.close()


def row_identity(row: dict[str, Any]) -> tuple[Any, ...]:
    """Everything of a log row but produced_at: equal identities are equal rows."""
    return tuple(sorted((k, v) for k, v in row.items() if k != "produced_at"))


def latest_by_entity(rows: list[dict[str, Any]], entity: str = "card_id") -> dict[Any, dict[str, Any]]:
    """Per entity, the row Redis must hold: the largest (feature_ts, source offset)."""
    latest: dict[Any, dict[str, Any]] = {}
    for row in rows:
        best = latest.get(row[entity])
        if best is None or (row["feature_ts"], row["source_offset"]) > (best["feature_ts"], best["source_offset"]):
            latest[row[entity]] = row
    return latest


def redis_db(url: str, db: int) -> str:
    """The same Redis server, another database (so runs in one test do not share keys)."""
    return url.rsplit("/", 1)[0] + f"/{db}"


def cli_env(servers: Servers, root: Path, redis_url: str | None = None) -> dict[str, str]:
    """Environment for a `freshet` subprocess writing its log and state under ``root``."""
    import os

    return {**os.environ, "FRESHET_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
            "FRESHET_REDIS_URL": redis_url or servers.redis_url, "FRESHET_OFFLINE_ROOT": str(root / "offline"),
            "FRESHET_STATE_DIR": str(root / "state")}


def start_redis(port: int, workdir: Path, *, persist: bool) -> subprocess.Popen[bytes]:
    """A Redis server of a test's own on ``port``. ``persist``: its data kept across a restart (AOF,
    fsync per write), for tests of an outage; without, it comes back empty, as a Redis without
    persistence or a promoted empty replica does."""
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persist else ["--appendonly", "no"]
    proc = subprocess.Popen([str(find_redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             *persistence, "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


class RedisRestart(threading.Thread):
    """Stops a test's own Redis once ``when()`` holds (or after 60 s), records ``record()`` then, and
    starts it again on the same port ``down_s`` later (``persist`` as :func:`start_redis`)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, workdir: Path, *, persist: bool,
                 when: Callable[[], bool], record: Callable[[], int], down_s: float) -> None:
        super().__init__(name="redis-restart")
        self.proc, self.port, self.workdir, self.persist = proc, port, workdir, persist
        self.when, self.record, self.down_s = when, record, down_s
        self.recorded: int | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.when() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.proc.kill()
        self.proc.wait(10)
        self.recorded = self.record()
        time.sleep(self.down_s)
        self.proc = start_redis(self.port, self.workdir, persist=self.persist)

    def stop(self) -> None:
        self.join()
        self.proc.terminate()
        self.proc.wait(10)
