"""The re-key router: the loop of the re-key stage (:mod:`freshet.pipelines.rekey_stage`), in its own process.

It reads the source in batches, decodes and validates each record (invalid ones to ``<topic>.dlq``, as
the live decode step does), and produces each valid event to the repartition topic exactly as Quix
Streams' ``group_by`` would have: the key as JSON text of the entity, the event (with its event time
and source position) as JSON, the record's timestamp and headers, Quix's partitioner (murmur2). Its
consumer is a member of the run's consumer group subscribed to the source; it commits source offsets
only after the broker acknowledged every repartition record and dead letter before them. Written by
hand because neither library has this step (Quix's own sources run one record at a time and keep
their offsets in a group of their own).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from freshet.features.definitions import Source
from freshet.features.errors import PipelineError
from freshet.pipelines.decode import SOURCE_OFFSET_FIELD, SOURCE_PARTITION_FIELD, EventDecoder, InvalidEvent
from freshet.pipelines.offsets import consumer_config
from freshet.pipelines.side_outputs import SideOutputs
from freshet.pipelines.stats import PipelineStats

log = logging.getLogger(__name__)
BATCH = 2_000
POLL_S = 0.1
COMMIT_EVERY_S = 1.0  # at most; and as soon as the source is drained
FLUSH_TIMEOUT_S = 30.0
# The repartition producer waits up to 25 ms to fill a batch (librdkafka's default is 5). A broker's cost
# goes by produce requests more than by records: at 5,000 records/s, 5 ms made up to 200 small requests a
# second, as many as the source's own producer, and the local broker (tansu) slows as a topic's batches
# add up. 25 ms adds at most 20 ms to a record's trip and cut the re-keyed freshness p99 at 5,000/s from
# 378-1,275 ms to 226-340 ms (by hand, three runs each, alternating: `python -m bench.run --parts
# freshness --rate 5000 --freshness-paths rekey --no-record`).
LINGER_MS = 25
REBALANCING = (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
               KafkaError._NO_OFFSET)


@dataclass(frozen=True)
class RouterSettings:
    """What the router needs (sent to its process: plain, picklable values)."""

    source: Source
    entity_key: str
    kafka_config: dict[str, Any]
    group: str
    topic: str  # the repartition topic
    max_ahead_ms: int
    auto_offset_reset: str
    session_timeout_ms: int
    fetch_wait_max_ms: int
    extra_consumer_config: dict[str, Any] = field(default_factory=dict)
    commit_every_s: float = COMMIT_EVERY_S


class RekeyRouter:
    def __init__(self, settings: RouterSettings, stats: PipelineStats, stop: Callable[[], bool],
                 report: Callable[[], None] | None = None) -> None:
        """``stop``: whether to stop (checked between batches); ``report``: called between batches (the
        counts in ``stats`` go to the run's)."""
        source, entity_key, kafka_config = settings.source, settings.entity_key, settings.kafka_config
        self.topic = settings.topic
        self.error: BaseException | None = None
        self._should_stop = stop
        self._report = report
        self._source = source
        self._entity = entity_key
        self._stats = stats
        self._decoder = EventDecoder(source, settings.max_ahead_ms)
        self._side = SideOutputs(source, kafka_config, stats)
        self._commit_every = settings.commit_every_s
        self._consumer_config = consumer_config(kafka_config, settings.group, extra={
            "auto.offset.reset": settings.auto_offset_reset, "session.timeout.ms": settings.session_timeout_ms,
            "fetch.wait.max.ms": settings.fetch_wait_max_ms,
            "partition.assignment.strategy": "range",  # as Quix's members of the group
            **settings.extra_consumer_config})
        self._delivery_errors: list[str] = []
        # flush() waits for the broker's acknowledgements; a report for each record cost this process a
        # Python call each (3.1-3.4 us of CPU a record produced without them, 4.2-5.8 with, by hand: 100,000
        # records, three runs each): only failures are reported, to the producer's one callback
        self._producer = Producer({**kafka_config, "linger.ms": LINGER_MS, "partitioner": "murmur2",
                                   "enable.idempotence": True, "delivery.report.only.error": True,
                                   "on_delivery": _recorder(self._delivery_errors)})
        self._positions: dict[int, int] = {}  # source partition -> next offset routed, not yet committed

    def run(self) -> None:
        """Route until ``stop`` says so; what was routed is then flushed and committed. Raises what
        stopped it otherwise (nothing after the last commit is lost: a restart routes it again)."""
        consumer = Consumer(self._consumer_config)
        try:
            consumer.subscribe([self._source.topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
            last_commit = time.monotonic()
            while not self._should_stop():
                # what is queued, at once; else wait for the next record (consume(n, timeout) would wait
                # for n records or the whole timeout: up to POLL_S more latency at a steady rate)
                messages = consumer.consume(BATCH, timeout=0)
                if not messages:
                    msg = consumer.poll(POLL_S)
                    messages = [] if msg is None else [msg]
                for msg in messages:
                    self._route(msg)
                self._producer.poll(0)
                now = time.monotonic()
                if self._positions and (not messages or now - last_commit >= self._commit_every):
                    self._commit(consumer)
                    last_commit = now
                if self._report is not None:
                    self._report()
            self._commit(consumer)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            consumer.close()
            self._side.close()

    def _route(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:  # as Quix's consumers do: an error on a message stops the run
            if error.code() == KafkaError._PARTITION_EOF:
                return
            raise PipelineError(f"reading {self._source.topic}: {error}")
        partition, offset = msg.partition(), msg.offset()
        raw = msg.value()
        kind, record_ts = msg.timestamp()
        stats = self._stats
        stats.read += 1
        try:
            event = self._decoder.decode(raw, record_ts if kind else None)
        except InvalidEvent as exc:
            self._side.dead_letter(raw, msg.key(), exc.reason, exc.detail, partition, offset)
        else:
            event[SOURCE_PARTITION_FIELD] = partition
            event[SOURCE_OFFSET_FIELD] = offset
            produce_args: dict[str, Any] = {"key": orjson.dumps(str(event[self._entity]))}
            if kind:
                produce_args["timestamp"] = record_ts
            headers = msg.headers()
            if headers:
                produce_args["headers"] = headers
            try:
                self._producer.produce(self.topic, orjson.dumps(event), **produce_args)
            except BufferError:  # the producer's queue is full: let it drain, then produce
                self._producer.flush(FLUSH_TIMEOUT_S)
                self._producer.produce(self.topic, orjson.dumps(event), **produce_args)
        self._positions[partition] = offset + 1

    def _commit(self, consumer: Consumer, partitions: list[int] | None = None) -> None:
        """Commit the routed positions (of ``partitions``, or all) once the broker holds what was routed."""
        positions = dict(self._positions) if partitions is None else {
            p: o for p, o in self._positions.items() if p in partitions}
        if not positions:
            return
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left or self._delivery_errors:
            raise PipelineError(f"the repartition topic {self.topic} did not take {left} record(s) within "
                                f"{FLUSH_TIMEOUT_S:.0f}s: {'; '.join(self._delivery_errors[:3]) or 'timed out'}; "
                                "nothing was committed: a restart routes them again")
        self._side.flush()  # raises when a dead letter was not delivered
        try:
            committed = consumer.commit(offsets=[TopicPartition(self._source.topic, p, o)
                                                 for p, o in positions.items()], asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() in REBALANCING:
                log.debug("commit deferred (the group is rebalancing): %s", error)
                return  # kept: committed at the next try, or routed again by the partition's next owner
            raise
        failed = [tp for tp in committed or [] if tp.error is not None]
        if failed:
            raise PipelineError(f"committing {self._source.topic} offsets failed: "
                                + "; ".join(f"partition {tp.partition}: {tp.error}" for tp in failed))
        for p in positions:
            del self._positions[p]

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Before another member owns them: what was routed from them is committed."""
        if self.error is None:
            self._commit(consumer, [tp.partition for tp in partitions])
        for tp in partitions:  # no longer this member's, committed or not (a deferred commit must not land)
            self._positions.pop(tp.partition, None)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost without a chance to commit: the new owner routes them again (skipped as duplicates)."""
        for tp in partitions:
            self._positions.pop(tp.partition, None)


def _recorder(errors: list[str]) -> Callable[[Any, Any], None]:
    """The producer's delivery callback: a failure's error, into ``errors`` (a closure, not a method: the
    producer then holds no reference back to its router)."""

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    return delivered
