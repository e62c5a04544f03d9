"""End offsets that do not trust one answer blindly.

The local broker (tansu) reports a partition's high watermark as the base
offset of its last record batch plus one, so a batch of several records makes
the reported end too low. :class:`EndOffsetProbe` asks for the watermark, then
reads the last batch from one offset before it and returns one past the largest
offset it finds. On a broker that reports correctly this costs one small fetch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition


class EndOffsetProbe:
    """Finds true end offsets with an assign-only consumer (no group membership)."""

    def __init__(self, kafka_config: dict[str, Any], timeout_s: float = 10.0) -> None:
        self._timeout = timeout_s
        self._consumer = Consumer({
            **kafka_config,
            "group.id": f"freshet-probe-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 50,
        })

    def end_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        reported: dict[tuple[str, int], int] = {}
        for topic, partition in partitions:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                              timeout=self._timeout, cached=False)
            reported[(topic, partition)] = high
        to_check = {tp: high for tp, high in reported.items() if high > 0}
        if not to_check:
            return reported
        self._consumer.assign([TopicPartition(t, p, high - 1) for (t, p), high in to_check.items()])
        true_end = dict(reported)
        pending = set(to_check)
        deadline = time.monotonic() + self._timeout
        while pending and time.monotonic() < deadline:
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            tp = (msg.topic(), msg.partition())
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF: nothing after this
                    pending.discard(tp)
                continue
            true_end[tp] = max(true_end[tp], msg.offset() + 1)
        self._consumer.unassign()
        return true_end

    def close(self) -> None:
        self._consumer.close()


__all__ = ["EndOffsetProbe", "OFFSET_END"]
