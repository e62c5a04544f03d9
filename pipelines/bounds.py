"""Stop a run exactly at planned end offsets, partition by partition (for replays).

A record at or after a partition's end offset is never marked processed: the
partition is paused right after its last planned record is read, and a
partition already at its end is paused as soon as it is assigned. So the
consumer group's committed offsets end exactly at the plan, and a live run that
continues in the same group with the same state starts at the first record the
replay did not process (the versioning handover).
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import TopicPartition

log = logging.getLogger(__name__)


class EndGuard:
    def __init__(self, topic: str, start: dict[int, int], end: dict[int, int]) -> None:
        self.topic = topic
        self.start = dict(start)
        self.end = dict(end)
        self._consumer: Any = None
        self.beyond_end = 0

    def install(self, app: Any) -> None:
        """Wrap the application's partition-assignment callback to pause finished partitions."""
        self._consumer = app._consumer
        original = app._on_assign

        def on_assign(consumer: Any, partitions: list[TopicPartition]) -> None:
            original(consumer, partitions)
            mine = [tp for tp in partitions if tp.topic == self.topic]
            if not mine:
                return
            committed = self._consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in mine], timeout=10)
            done = [TopicPartition(self.topic, c.partition) for c in committed
                    if max(c.offset, self.start.get(c.partition, 0)) >= self.end.get(c.partition, 0)]
            if done:
                self._consumer.pause(done)

        app._on_assign = on_assign

    def admit(self, partition: int, offset: int) -> bool:
        """True if the record belongs to the plan; pauses the partition after its last record."""
        end = self.end.get(partition, 0)
        if offset >= end:
            # only after a rebalance race: the record is skipped (it is past the plan)
            self.beyond_end += 1
            log.warning("record %s[%d]@%d is past the planned end %d; skipped", self.topic, partition, offset, end)
            return False
        if offset == end - 1 and self._consumer is not None:
            self._consumer.pause([TopicPartition(self.topic, partition)])
        return True
