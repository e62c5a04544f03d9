"""State cost of a live run: changelog records per input event, and state bytes per key.

After a run, its Quix changelog topics (``changelog__<group>--...``) are found with
AdminClient.list_topics; records = sum over partitions of (true end - low watermark),
the true end from :class:`freshet.pipelines.offsets.EndOffsetProbe` (tansu reports a batch's
base offset). State bytes per key: the changelog is read from the start and the value
length of the last record of each key kept (a tombstone removes the key); the figure is
the serialized size Quix stores and ships per key (the operator's JSON state).
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.common import Stack, say


@dataclass
class StateSizes:
    keys: int
    mean: float
    p50: float
    p99: float
    largest: int


@dataclass
class Changelog:
    label: str  # workload / config
    group: str
    input_records: int
    topics: list[str]
    records: int
    sizes: StateSizes | None = None
    error: str = ""

    @property
    def per_event(self) -> float | None:
        return self.records / self.input_records if self.input_records else None


def changelog_partitions(stack: Stack, group: str) -> list[tuple[str, int]]:
    metadata = AdminClient(stack.kafka_config).list_topics(timeout=15)
    prefix = f"changelog__{group}--"
    return sorted((name, p) for name, topic in metadata.topics.items() if name.startswith(prefix)
                  for p in topic.partitions)


def _consumer(stack: Stack) -> Consumer:
    return Consumer({**stack.kafka_config, "group.id": f"bench-changelog-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "allow.auto.create.topics": False, "fetch.wait.max.ms": 50})


def offsets(stack: Stack, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
    """(low watermark, true end) of each partition."""
    from freshet.pipelines.offsets import EndOffsetProbe

    probe = EndOffsetProbe(stack.kafka_config)
    consumer = _consumer(stack)
    try:
        ends = probe.end_offsets(partitions)
        lows = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)[0] for tp in partitions}
    finally:
        probe.close()
        consumer.close()
    return {tp: (lows[tp], ends[tp]) for tp in partitions}


def last_value_sizes(stack: Stack, bounds: dict[tuple[str, int], tuple[int, int]],
                     timeout_s: float = 300.0) -> StateSizes | None:
    """Read every changelog record; the size of each key's last value."""
    todo = {tp: (low, end) for tp, (low, end) in bounds.items() if end > low}
    if not todo:
        return None
    sizes: dict[bytes, int] = {}
    consumer = _consumer(stack)
    try:
        consumer.assign([TopicPartition(t, p, low) for (t, p), (low, _end) in todo.items()])
        pending = set(todo)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error():
                    continue
                tp = (msg.topic(), msg.partition())
                key, value = (msg.topic().encode() + b"/" + (msg.key() or b"")), msg.value()
                if value is None:
                    sizes.pop(key, None)
                else:
                    sizes[key] = len(value)
                if msg.offset() + 1 >= todo[tp][1]:
                    pending.discard(tp)
    finally:
        consumer.close()
    if not sizes:
        return None
    values = sorted(sizes.values())
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    return StateSizes(len(values), statistics.fmean(values), statistics.median(values), p99, values[-1])


def measure_changelog(stack: Stack, label: str, group: str, input_records: int, sizes: bool) -> Changelog:
    try:
        partitions = changelog_partitions(stack, group)
        bounds = offsets(stack, partitions)
        records = sum(end - low for low, end in bounds.values())
        found = Changelog(label, group, input_records, sorted({t for t, _p in partitions}), records)
        if sizes:
            found.sizes = last_value_sizes(stack, bounds)
    except Exception as exc:  # one failed measurement must not lose the run
        return Changelog(label, group, input_records, [], 0, error=f"{type(exc).__name__}: {exc}")
    per = f"{found.per_event:.3f}" if found.per_event is not None else "-"
    shown = (f"; state {found.sizes.mean:,.0f} B/key mean over {found.sizes.keys:,} keys"
             if found.sizes else "")
    say(f"  changelog of {label}: {records:,} records in {len(found.topics)} topic(s), {per} per input "
        f"record{shown}")
    return found
