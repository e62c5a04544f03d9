"""Late records as the late topic gets them: every field, decoded back by a standard JSON reader."""

from __future__ import annotations

import json
from typing import Any

from freshet.features.definitions import Aggregation, Entity, FeatureView, Source, TumblingWindow
from freshet.pipelines.decode import EventDecoder
from freshet.pipelines.side_outputs import SideOutputs
from freshet.pipelines.stats import PipelineStats

SOURCE = Source(name="payments", topic="payments", key="card_id", timestamp="ts",
                schema={"card_id": "str", "amount": "float", "merchant": "str", "ts": "int"})
VIEW = FeatureView(name="spend", version=3, source=SOURCE, entity=Entity(name="card", join_key="card_id"),
                   window=TumblingWindow(size="5m"), aggregations=[Aggregation(function="count", name="n")])


class CapturingProducer:
    """Keeps what would be produced (this test is about the bytes, not the broker)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.records.append({"topic": topic, **kwargs})

    def poll(self, _timeout: float) -> int:
        return 0


def test_a_late_record_carries_every_field_and_the_event_as_decoded() -> None:
    stats = PipelineStats()
    side = SideOutputs(SOURCE, {"bootstrap.servers": "127.0.0.1:9", "log_level": 0}, stats)
    producer = CapturingProducer()
    side._producer = producer  # type: ignore[assignment]
    raw = '{"card_id": "c-é1", "amount": 1e-07, "merchant": "Café 東京 \\"quoted\\"", "ts": 1700000000123}'
    event = EventDecoder(SOURCE).decode(raw.encode())
    side.late(VIEW, event, "c-é1", 61_234, 1_699_999_800_000, 1_700_000_100_000, 2, 41)

    [record] = producer.records
    assert record["topic"] == "payments.late"
    assert record["key"] == "c-é1" and record["partition"] == 2
    assert json.loads(record["value"]) == {
        "view": "spend", "version": 3, "entity": "c-é1", "event_ts": 1_700_000_000_123, "late_by_ms": 61_234,
        "window_start": 1_699_999_800_000, "window_end": 1_700_000_100_000, "source_partition": 2,
        "source_offset": 41,
        "event": {"card_id": "c-é1", "amount": 1e-07, "merchant": 'Café 東京 "quoted"', "ts": 1_700_000_000_123},
    }
    assert dict(record["headers"])["freshet.late_by_ms"] == b"61234"
    assert dict(record["headers"])["freshet.id"] == b"spend:v3:2:41:1699999800000:1700000100000"
    assert stats.late["spend"] == 1
