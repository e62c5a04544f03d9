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
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from freshet.pipelines.offsets import EndOffsetProbe

_lock = threading.Lock()
_installed: dict[str, EndOffsetProbe] = {}
_wrapped: list[bool] = []  # non-empty once the method is wrapped (once per process)


def is_tansu(kafka_config: dict[str, Any], timeout_s: float = 10.0) -> bool:
    metadata = AdminClient(kafka_config).list_topics(timeout=timeout_s)
    return "tansu" in str(metadata.cluster_id or "").lower()


def correct_watermarks_on_tansu(kafka_config: dict[str, Any]) -> Callable[[], None] | None:
    """Install the correction if the broker is tansu; returns the function that removes it (None otherwise).

    One process runs one pipeline against one broker: installing twice replaces the probe."""
    if not is_tansu(kafka_config):
        return None
    from quixstreams.kafka.consumer import BaseConsumer

    with _lock:
        for old in _installed.values():
            old.close()
        _installed.clear()
        _installed["probe"] = EndOffsetProbe(kafka_config)
        if not _wrapped:
            original = BaseConsumer.get_watermark_offsets

            def get_watermark_offsets(self: Any, partition: TopicPartition, timeout: float | None = None,
                                      cached: bool = False) -> tuple[int, int]:
                low, high = original(self, partition, timeout=timeout, cached=cached)
                probe = _installed.get("probe")
                if cached or high <= 0 or probe is None:
                    return low, high
                true_end = probe.end_offsets([(partition.topic, partition.partition)])
                return low, max(high, true_end[(partition.topic, partition.partition)])

            BaseConsumer.get_watermark_offsets = get_watermark_offsets  # type: ignore[method-assign]
            _wrapped.append(True)

    def remove() -> None:
        with _lock:
            for probe in _installed.values():
                probe.close()
            _installed.clear()  # the wrapper stays and passes every call through unchanged

    return remove
