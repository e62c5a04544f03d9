"""Make Quix Streams see true end offsets on tansu, the local broker, and only there.

tansu reports a partition's high watermark as the base offset of its last record
batch plus one, so a batch of several records makes the reported end too low.
Quix Streams' state recovery reads changelog high watermarks through
``quixstreams.kafka.consumer.BaseConsumer.get_watermark_offsets``; an
under-reported one makes it refuse a healthy store ("offset in the state store is
greater than or equal to its changelog highwater") or stop recovering early.

This is the one place Freshet reaches past Quix Streams' documented surface: it
wraps that public method of Quix's consumer class (no private attribute is used),
only when the cluster id says tansu, and ``tests/unit/test_broker_quirks.py`` pins
the method's name and signature so an upgrade that changes it fails loudly.
"""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from pipelines.offsets import EndOffsetProbe

_lock = threading.Lock()
_installed: dict[str, EndOffsetProbe] = {}


def is_tansu(kafka_config: dict[str, Any], timeout_s: float = 10.0) -> bool:
    metadata = AdminClient(kafka_config).list_topics(timeout=timeout_s)
    return "tansu" in str(metadata.cluster_id or "").lower()


def correct_watermarks_on_tansu(kafka_config: dict[str, Any]) -> bool:
    """Install the correction for this broker if it is tansu. Returns True if it is."""
    if not is_tansu(kafka_config):
        return False
    from quixstreams.kafka.consumer import BaseConsumer

    bootstrap = str(kafka_config["bootstrap.servers"])
    with _lock:
        if bootstrap in _installed:
            return True
        probe = EndOffsetProbe(kafka_config)
        _installed[bootstrap] = probe
        if len(_installed) > 1:
            return True  # the wrapper below already looks the probe up per broker
        original = BaseConsumer.get_watermark_offsets

        def get_watermark_offsets(self: Any, partition: TopicPartition, timeout: float | None = None,
                                  cached: bool = False) -> tuple[int, int]:
            low, high = original(self, partition, timeout=timeout, cached=cached)
            if cached or high <= 0:
                return low, high
            with _lock:
                probes = list(_installed.values())
            for candidate in probes:
                try:
                    true_end = candidate.end_offsets([(partition.topic, partition.partition)])
                except Exception:  # noqa: S112 - another broker's probe may not know this topic
                    continue
                return low, max(high, true_end[(partition.topic, partition.partition)])
            return low, high

        BaseConsumer.get_watermark_offsets = get_watermark_offsets  # type: ignore[method-assign]
    return True
