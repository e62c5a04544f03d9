"""One oversized record never stops the pipeline: it is dead-lettered (truncated) and everything else counts."""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Producer

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
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
