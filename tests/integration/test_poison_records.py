"""One oversized record never stops the pipeline: it is dead-lettered (truncated) and everything else counts."""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Producer

from freshet.features import Aggregation, FeatureView, SlidingWindow, Source, TumblingWindow
from freshet.pipelines.decode import MAX_EVENT_BYTES
from tests.integration.conftest import Servers
from tests.integration.harness import pipeline_config, provision, read_log, read_topic, run_until_caught_up

BASE = 1_700_000_000_000


def test_oversized_records_are_dead_lettered_and_the_rest_counted(servers: Servers, unique: str,
                                                                  tmp_path: Path) -> None:
    topic = f"poison-{unique}"
    source = Source(name="tx", topic=topic, partitions=1, key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "note": "str", "ts": "int"})
    view = FeatureView(name="spend", source=source, window=TumblingWindow(size="10s"), grace=0, emit="final",
                       ttl="1d", aggregations=[Aggregation(function="count", name="n"),
                                               Aggregation(function="sum", column="amount", name="total")])
    provision(servers, topic, 1)
    producer = Producer({**servers.kafka_config(), "message.max.bytes": 3_000_000})
    big = "x" * 1_100_000
    events = [{"card_id": "c1", "amount": 1.0, "note": "", "ts": BASE + i * 1000} for i in range(40)]
    values = [json.dumps(e).encode() for e in events]
    values.insert(10, json.dumps({"card_id": "c1", "amount": 5.0, "note": big, "ts": BASE + 9500}).encode())
    values.insert(20, b"{not json" + big.encode())
    for value in values:
        producer.produce(topic, value=value, key=b"c1", partition=0)
    assert producer.flush(30) == 0

    stats = run_until_caught_up([view], pipeline_config(servers, tmp_path, f"poison-{unique}"))
    assert stats["read"] == len(values)
    assert stats["invalid_by_reason"] == {"too_large": 2}
    dead = read_topic(servers, f"{topic}.dlq")
    assert len(dead) == 2
    for msg in dead:
        headers = dict(msg.headers())
        assert headers["freshet.reason"] == b"too_large"
        assert int(headers["freshet.original_size"]) > MAX_EVENT_BYTES
        assert len(msg.value()) <= 900_000
    rows = read_log(tmp_path / "offline", view)
    # 40 events 1 s apart in 10 s windows: the last window is still open
    assert sum(r["n"] for r in rows) == 30 and all(r["n"] == 10 for r in rows)


def test_a_far_future_event_is_dead_lettered_and_does_not_poison_its_entity(servers: Servers, unique: str,
                                                                          tmp_path: Path) -> None:
    """Year 9999 against a Kafka timestamp of today: dead-lettered as future_timestamp; the entity's later
    events are counted, not reported late (before: every later event of the entity was late in every view)."""
    topic = f"future-{unique}"
    source = Source(name="tx", topic=topic, partitions=1, key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "ts": "int"})
    views = [FeatureView(name="spend", source=source, window=TumblingWindow(size="10s"), grace=0, emit="final",
                         ttl="1d", aggregations=[Aggregation(function="count", name="n")]),
             FeatureView(name="recent", source=source, window=SlidingWindow(size="10s"), grace=0,
                         emit="current", ttl="1d", aggregations=[Aggregation(function="count", name="n")])]
    provision(servers, topic, 1)
    producer = Producer(servers.kafka_config())
    values = [json.dumps({"card_id": "c1", "amount": 1.0, "ts": BASE + i * 1000}).encode() for i in range(40)]
    values.insert(5, json.dumps({"card_id": "c1", "amount": 9.0, "ts": 253_402_300_799_999}).encode())
    for value in values:
        producer.produce(topic, value=value, key=b"c1", partition=0)
    assert producer.flush(30) == 0

    stats = run_until_caught_up(views, pipeline_config(servers, tmp_path, f"future-{unique}"))
    assert stats["read"] == 41 and stats["valid"] == 40
    assert stats["invalid_by_reason"] == {"future_timestamp": 1}
    assert stats["late"] == 0
    (dead,) = read_topic(servers, f"{topic}.dlq")
    assert dict(dead.headers())["freshet.reason"] == b"future_timestamp"
    assert b"253402300799999" in dead.value()
    tumbling = read_log(tmp_path / "offline", views[0])
    assert sum(r["n"] for r in tumbling) == 30  # 40 events 1 s apart: the last 10 s window stays open
    sliding = read_log(tmp_path / "offline", views[1])
    assert len(sliding) == 40 and max(r["n"] for r in sliding) == 11  # [t - 10 s, t], both ends inclusive


def test_trusted_keys_are_checked(servers: Servers, unique: str, tmp_path: Path) -> None:
    """--trust-message-key (rekey=False): window state is kept per message key, so a record whose key is not its
    entity would split the entity's windows; it is dead-lettered as key_mismatch and the rest counted."""
    topic = f"keys-{unique}"
    source = Source(name="tx", topic=topic, partitions=1, key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "ts": "int"})
    view = FeatureView(name="spend", source=source, window=TumblingWindow(size="10s"), grace=0, emit="final",
                       ttl="1d", aggregations=[Aggregation(function="count", name="n")])
    provision(servers, topic, 1)
    producer = Producer(servers.kafka_config())
    for i in range(30):
        key = {7: b"c2", 8: None}.get(i, b"c1")
        producer.produce(topic, value=json.dumps({"card_id": "c1", "amount": 1.0, "ts": BASE + i * 1000}).encode(),
                         key=key, partition=0)
    assert producer.flush(30) == 0

    stats = run_until_caught_up([view], pipeline_config(servers, tmp_path, f"keys-{unique}", rekey=False))
    assert stats["read"] == 30 and stats["invalid_by_reason"] == {"key_mismatch": 2}
    dead = read_topic(servers, f"{topic}.dlq")
    assert [dict(m.headers())["freshet.reason"] for m in dead] == [b"key_mismatch"] * 2
    assert b"--trust-message-key" in dict(dead[0].headers())["freshet.detail"]
    rows = read_log(tmp_path / "offline", view)
    assert [(r["card_id"], r["n"]) for r in rows] == [("c1", 8), ("c1", 10)]  # 0-9 less 7 and 8; 10-19
