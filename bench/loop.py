"""The floor: a bare confluent-kafka loop over the same topic, decoding every value with orjson.

No consumer group (``assign`` of every partition at offset 0), ``consume`` in batches
of 10,000, ``orjson.loads`` of each value (errors skipped), until every record of the
topic is read; ``fetch.wait.max.ms`` 50 as Freshet's consumers (tansu holds an empty
fetch for the whole wait). The time runs from the first ``consume`` call. Nothing is
validated, windowed or written: it is what reading and parsing the topic costs in one
Python process, which no engine on top can beat.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, TopicPartition

from bench.common import PARTITIONS, Stack, load_average, say

BATCH = 10_000


@dataclass
class LoopRun:
    records: int
    seconds: float  # from the first consume call to the last record decoded
    decoded: int
    errors: int
    load_before: float


@dataclass
class Loop:
    runs: list[LoopRun] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        rates = [r.records / r.seconds for r in self.runs if r.seconds > 0]
        return statistics.median(rates) if rates else None

    @property
    def rates(self) -> list[float]:
        return [r.records / r.seconds for r in self.runs if r.seconds > 0]


def read_topic(stack: Stack, topic: str, records: int, timeout_s: float = 300.0) -> LoopRun:
    consumer = Consumer({**stack.kafka_config, "group.id": f"bench-loop-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "allow.auto.create.topics": False,
                         "enable.partition.eof": False, "fetch.wait.max.ms": 50})
    load = load_average()
    read = decoded = errors = 0
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        started = time.perf_counter()
        while read < records and time.perf_counter() - started < timeout_s:
            for msg in consumer.consume(num_messages=BATCH, timeout=0.5):
                if msg.error():
                    continue
                read += 1
                try:
                    orjson.loads(msg.value())
                    decoded += 1
                except orjson.JSONDecodeError:
                    errors += 1
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    return LoopRun(read, elapsed, decoded, errors, load)


def measure_loop(stack: Stack, topic: str, records: int, repeat: int = 3) -> Loop:
    say(f"  bare confluent-kafka loop (consume {BATCH:,} + orjson.loads), {repeat} run(s)")
    loop = Loop()
    for _ in range(repeat):
        run = read_topic(stack, topic, records)
        loop.runs.append(run)
        note = "" if run.records == records else f"; INCOMPLETE: {run.records:,} of {records:,}"
        say(f"      {run.records / run.seconds:,.0f} records/s over {run.seconds:.2f}s "
            f"({run.errors} not JSON){note}")
    return loop
