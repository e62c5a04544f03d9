"""Make Quix Streams see true end offsets on brokers that under-report them.

tansu (the local broker) reports a partition's high watermark as the base
offset of its last record batch plus one. Quix Streams' state recovery reads
changelog high watermarks: an under-reported one makes it stop recovering early
or refuse a healthy store ("offset in the state store is greater than or equal
to its changelog highwater"). Wrapping the consumer's ``get_watermark_offsets``
with :class:`EndOffsetProbe` corrects it; on a broker that reports correctly
the probe returns the same number after one small fetch.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from pipelines.offsets import EndOffsetProbe


def correct_watermarks(consumer: Any, kafka_config: dict[str, Any]) -> EndOffsetProbe:
    probe = EndOffsetProbe(kafka_config)
    original = consumer.get_watermark_offsets

    def get_watermark_offsets(partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        low, high = original(partition, timeout=timeout, cached=cached)
        if cached or high <= 0:
            return low, high
        true_end = probe.end_offsets([(partition.topic, partition.partition)])
        return low, max(high, true_end[(partition.topic, partition.partition)])

    consumer.get_watermark_offsets = get_watermark_offsets
    return probe
