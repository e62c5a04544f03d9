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
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition


def consumer_config(kafka_config: dict[str, Any], group: str | None = None, *, purpose: str = "probe",
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one config of Freshet's own consumers (lag, plans, history checks, replay reads, commits):
    never auto-commits nor creates topics; ``group`` when it reads or writes a group's offsets, else a
    throwaway ``freshet-<purpose>-<random>`` id (these consumers only ``assign``)."""
    return {**kafka_config, "group.id": group or f"freshet-{purpose}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "allow.auto.create.topics": False, **(extra or {})}


class EndOffsetProbe:
    """Finds true end offsets with an assign-only consumer (no group membership)."""

    def __init__(self, kafka_config: dict[str, Any], timeout_s: float = 10.0) -> None:
        self._timeout = timeout_s
        self._consumer = Consumer(consumer_config(kafka_config, extra={"enable.partition.eof": True,
                                                                     "fetch.wait.max.ms": 50}))

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


@dataclass
class Lag:
    total: int
    caught_up: bool
    partitions: int


class GroupLag:
    """The consumer group's committed lag on its topics, from public confluent-kafka calls.

    Committed offsets only: they move after the sinks flushed (not while backpressured).
    It reads the whole group, so with several processes in the group it is the group's lag.
    """

    def __init__(self, kafka_config: dict[str, Any], group: str, topics: list[str]) -> None:
        self._topics = topics
        self._consumer = Consumer(consumer_config(kafka_config, group))
        self._probe = EndOffsetProbe(kafka_config)
        self._partitions: list[TopicPartition] | None = None

    def _all_partitions(self) -> list[TopicPartition]:
        if self._partitions is None:
            metadata = self._consumer.list_topics(timeout=10)
            found = [TopicPartition(t, p) for t in self._topics if t in metadata.topics
                     for p in metadata.topics[t].partitions]
            # a topic Quix has not created yet holds nothing (the source is committed only after its
            # records reached the repartition topic): it counts as empty until it exists
            if all(t in metadata.topics for t in self._topics):
                self._partitions = found
            return found
        return self._partitions

    def per_partition(self) -> tuple[dict[tuple[str, int], int], bool] | None:
        """Records behind per (topic, partition) (from the start where nothing is committed), and whether
        the group committed anything yet; None when none of the topics exists."""
        partitions = self._all_partitions()
        if not partitions:
            return None
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in self._consumer.committed(partitions, timeout=10)}
        ends = self._probe.end_offsets((tp.topic, tp.partition) for tp in partitions)
        behind = {(tp.topic, tp.partition): max(0, ends[(tp.topic, tp.partition)]
                                                - max(committed.get((tp.topic, tp.partition), 0), 0))
                  for tp in partitions}
        return behind, any(offset >= 0 for offset in committed.values())

    def measure(self) -> Lag | None:
        found = self.per_partition()
        if found is None:
            return None
        behind, _started = found
        return Lag(sum(behind.values()), all(n == 0 for n in behind.values()), len(behind))

    def close(self) -> None:
        self._probe.close()
        self._consumer.close()
