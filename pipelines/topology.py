"""The live runtime: a Quix Streams application with Freshet's window operator as its stateful step.

    raw bytes -> decode + validate (invalid -> <topic>.dlq)
      -> [re-key by entity: Quix's group_by, unless the messages are trusted to be keyed]
      -> the source's operator (pipelines.tiles), one state value per entity,
         late events -> <topic>.late
      -> emitted values -> OperatorSink (Redis newer-wins + Parquet log)

Quix Streams provides the consumer group, checkpoints, RocksDB state with its
changelog and recovery, and exactly-once when asked; it is used through its public
API only (the one exception is :mod:`freshet.pipelines.broker_quirks`, for tansu). A key's
state is read from the store the first time the key is seen in a checkpoint, kept as
a live object while the checkpoint lasts, and written back once, when the checkpoint
flushes the sink (Quix flushes sinks before it flushes state), so the changelog gets
one record per key per checkpoint, not one per event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.context import message_context
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models import Topic
from quixstreams.models.topics import TopicManager
from quixstreams.sinks import BaseSink, SinkBackpressureError
from quixstreams.state import State

from freshet.features.definitions import FeatureView, Source
from freshet.features.errors import PipelineError
from freshet.features.log_store import RootLike
from freshet.pipelines.background_writes import BackgroundWrites
from freshet.pipelines.broker_quirks import correct_watermarks_on_tansu
from freshet.pipelines.decode import (
    DEFAULT_MAX_EVENT_AHEAD_MS,
    SOURCE_OFFSET_FIELD,
    SOURCE_PARTITION_FIELD,
    EventDecoder,
    InvalidEvent,
)
from freshet.pipelines.online_sink import OnlineStoreUnavailable
from freshet.pipelines.outputs import OperatorOutputs, make_outputs
from freshet.pipelines.rekey_router import RouterSettings
from freshet.pipelines.rekey_stage import RekeyStage, repartition_topic_name
from freshet.pipelines.run_defaults import DEFAULT_COMMIT_INTERVAL_S
from freshet.pipelines.stats import PipelineStats
from freshet.pipelines.tiles import EmittedValue, KeyState, LateReport, SourceOperator

log = logging.getLogger(__name__)
STATE_KEY = "tiles"
NOTHING: list[EmittedValue] = []  # the step's result: nothing flows past it
BACKPRESSURE_RETRY_S = 2.0


@dataclass
class PipelineConfig:
    """Everything a live run needs besides the views."""

    kafka_config: dict[str, Any]
    consumer_group: str
    state_dir: Path
    offline_root: RootLike | None
    redis_url: str | None
    auto_offset_reset: str = "earliest"
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S
    rekey: bool = True
    rekey_stage: bool = True  # re-key in the stage process (pipelines.rekey_stage), else with Quix's group_by
    exactly_once: bool = False
    session_timeout_ms: int = 6000
    # tansu answers a fetch only after fetch.wait.max.ms (librdkafka default 500 ms) even when data
    # is there; with the re-key hop that is paid twice. 25 ms keeps values fresh.
    fetch_wait_max_ms: int = 25
    parquet_roll_rows: int = 100_000
    parquet_roll_seconds: float = 120.0
    extra_consumer_config: dict[str, Any] = field(default_factory=dict)
    max_event_ahead_ms: int = DEFAULT_MAX_EVENT_AHEAD_MS  # see pipelines.decode
    # the handover from a replay: states of keys this run has not stored yet
    seed_states: Callable[[str], KeyState | None] | None = None


@dataclass
class Pipeline:
    app: Application
    source: Source
    views: list[FeatureView]
    stats: PipelineStats
    outputs: OperatorOutputs
    kafka_config: dict[str, Any]
    consumer_group: str
    topics: list[str]  # every topic the group consumes: the source and, when re-keying, the repartition topic
    closers: list[Any] = field(default_factory=list)
    stage: RekeyStage | None = None  # reads the source when re-keying outside Quix (pipelines.rekey_stage)
    # called after each checkpoint's flush, once what the checkpoint wrote is released (run_pipeline's
    # collector call: gc_tuning.checkpoint_gc)
    after_checkpoint: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        if self.stage is not None:
            self.stage.stop()
        self.outputs.close()
        for close in self.closers:
            close()
        self.closers.clear()


def single_source(views: list[FeatureView]) -> Source:
    if not views:
        raise PipelineError("no views selected")
    topics = {v.source.topic for v in views}
    if len(topics) != 1:
        raise PipelineError(f"one pipeline reads one topic; the selected views read {sorted(topics)}")
    keys = {v.entity_key for v in views}
    if len(keys) != 1:
        raise PipelineError(
            f"the selected views key by different fields ({', '.join(sorted(keys))}): run them in separate "
            "pipelines (--view)")
    return views[0].source


def _nothing() -> None:
    pass


class OperatorStep:
    """The stateful step: the operator over Quix state, each key written back once per checkpoint."""

    def __init__(self, operator: SourceOperator, outputs: OperatorOutputs, stats: PipelineStats,
                 seeds: Callable[[str], KeyState | None] | None = None) -> None:
        self._operator = operator
        self._outputs = outputs
        self._stats = stats
        self._seeds = seeds
        self._entity = operator.entity_key
        self._live: dict[str, tuple[State[Any, Any], KeyState]] = {}
        # request-time views: their accepted events stay in the operator's holder, each with the partition
        # it was read from, until the Redis writer's thread or the checkpoint takes them (outputs.attach_live)
        self._accepted = operator.accepted
        self._inputs = self._accepted.track_inputs() if operator.any_request_time else None
        online = outputs.online
        self._wake_at = online.batch_size if online is not None else 1 << 62  # no writer: never reached
        self._wake = online.wake if online is not None else _nothing
        # when the oldest held event arrived, on the Redis writer's clock (it sends a batch max_delay after it)
        self._clock = online.clock if online is not None else time.monotonic
        if self._inputs is not None:
            outputs.attach_live(self._accepted)

    def __call__(self, event: dict[str, Any], state: State[Any, Any]) -> list[EmittedValue]:
        """Emitted values go to the outputs from here; nothing flows on (the sink only flushes)."""
        key = str(event[self._entity])
        entry = self._live.get(key)
        if entry is None:
            key_state = state.get(STATE_KEY)
            if key_state is None:
                key_state = (self._seeds(key) if self._seeds is not None else None) or self._operator.initial()
            self._live[key] = (state, key_state)
        else:
            key_state = entry[1]
        emitted: list[EmittedValue] = []
        late: list[LateReport] = []
        if not self._operator.process(key_state, event, event[SOURCE_PARTITION_FIELD],
                                      event[SOURCE_OFFSET_FIELD], emitted, late):
            self._stats.duplicates += 1
            return NOTHING
        self._stats.windowed += 1
        outputs = self._outputs
        for report in late:
            outputs.late(report)
        inputs = self._inputs
        if emitted or inputs is not None:
            partition = message_context().partition  # the partition the operator read
            for value in emitted:
                outputs.emit(value, partition)
            if inputs is not None:  # request-time views: the event's row is in the holder; its partition last
                if not inputs:
                    self._accepted.first_at = self._clock()
                inputs.append(partition)
                if len(inputs) >= self._wake_at:
                    self._wake()
        return NOTHING

    def write_back(self) -> None:
        for state, key_state in self._live.values():
            state.set(STATE_KEY, key_state)
        self._live.clear()

    def discard(self) -> None:
        self._live.clear()


class OperatorSink(BaseSink):
    """At each checkpoint: the outputs made durable, then the states written (values arrive via the step)."""

    def __init__(self, outputs: OperatorOutputs, step: OperatorStep, stats: PipelineStats,
                 after_flush: list[Callable[[], None]] | None = None) -> None:
        """``after_flush``: called, in order, after each flush (the run's checkpoint collection)."""
        super().__init__()
        self._outputs = outputs
        self._step = step
        self._stats = stats
        self._after_flush = after_flush if after_flush is not None else []

    def add(self, value: EmittedValue, key: Any, timestamp: int, headers: Any, topic: str,
            partition: int, offset: int) -> None:  # not reached: the step emits and passes nothing on
        self._outputs.emit(value, partition)

    def flush(self) -> None:
        try:
            try:
                self._outputs.start_flush()
            except OnlineStoreUnavailable as exc:
                self._stats.backpressured += 1
                # as text: a record holding the exception keeps its traceback's frames (the run's clients and
                # states) alive wherever records are kept
                log.warning("%s; pausing input for %.0fs (nothing is lost)", str(exc), BACKPRESSURE_RETRY_S)
                self.on_paused()  # Quix calls on_paused only for the other sinks: the input is rewound
                raise SinkBackpressureError(retry_after=BACKPRESSURE_RETRY_S) from exc
            self._step.write_back()  # while the log's files are written (pipelines.background_writes)
            self._outputs.finish_flush()
            self._stats.mark()
        finally:  # an outage too: the collector's call (gc_tuning) runs at each checkpoint whatever happens
            for call in self._after_flush:
                call()

    def on_paused(self) -> None:
        self._outputs.discard()
        self._step.discard()
        self._stats.rewind()


def build_pipeline(views: list[FeatureView], config: PipelineConfig,
                   stats: PipelineStats | None = None) -> Pipeline:
    source = single_source(views)
    stats = stats or PipelineStats()
    kafka = dict(config.kafka_config)
    remove_quirk = correct_watermarks_on_tansu(kafka)
    app = _make_app(kafka, config)
    # the log's file writes run in a thread while the checkpoint writes the states back (OperatorSink.flush)
    outputs = make_outputs(views, kafka, stats, redis_url=config.redis_url, offline_root=config.offline_root,
                           roll_rows=config.parquet_roll_rows, roll_seconds=config.parquet_roll_seconds,
                           background=BackgroundWrites() if config.offline_root is not None else None)
    topic = app.topic(source.topic, value_deserializer="bytes", key_deserializer="bytes")
    key_field = views[0].entity_key
    stage = None
    if config.rekey and _stage_rekeys(config, topic):
        # the stage reads the source; the application, the repartition topic it writes (group_by's, by name,
        # partitions, replication and retention)
        stage = RekeyStage(RouterSettings(
            source, key_field, kafka, config.consumer_group,
            repartition_topic_name(config.consumer_group, source.topic, key_field),
            max_ahead_ms=config.max_event_ahead_ms, auto_offset_reset=config.auto_offset_reset,
            session_timeout_ms=config.session_timeout_ms, fetch_wait_max_ms=config.fetch_wait_max_ms,
            extra_consumer_config=dict(config.extra_consumer_config)), stats, on_failure=app.stop)
        sdf = app.dataframe(app.topic(stage.topic, value_deserializer="json", key_deserializer="json",
                                      config=TopicManager.derive_topic_config([topic])))
    else:
        sdf = app.dataframe(topic)
        sdf = sdf.apply(_decoder(source, outputs, stats, config.max_event_ahead_ms,
                                 check_key=None if config.rekey else key_field), metadata=True, expand=True)
        if config.rekey:
            sdf = sdf.group_by(lambda v: str(v[key_field]), name=f"rekey_{key_field}")
    stats.reads_rewind = stage is None  # the stage's counts are not rewound with the application's input
    step = OperatorStep(SourceOperator(views), outputs, stats, config.seed_states)
    sdf = sdf.apply(step, stateful=True, expand=True)
    after_checkpoint: list[Callable[[], None]] = []
    sdf.sink(OperatorSink(outputs, step, stats, after_checkpoint))
    topics = sorted({t.name for t in sdf.topics} | {source.topic})
    return Pipeline(app, source, views, stats, outputs, dict(config.kafka_config), config.consumer_group, topics,
                    [remove_quirk] if remove_quirk else [], stage, after_checkpoint)


def _stage_rekeys(config: PipelineConfig, topic: Topic) -> bool:
    """Whether the re-key stage does the hop (else Quix's group_by): not when the config says so, not with
    --exactly-once (the stage does not produce in Kafka transactions) and not for a one-partition source
    (group_by re-keys it in place, no hop). Either way the application's stateful step reads the same
    topic under the same stream, so a group's window state carries over from one to the other."""
    return config.rekey_stage and not config.exactly_once and (topic.broker_config.num_partitions or 1) > 1


def _make_app(kafka: dict[str, Any], config: PipelineConfig) -> Application:
    bootstrap = kafka["bootstrap.servers"]
    extra = {k: v for k, v in kafka.items() if k != "bootstrap.servers"}
    # SASL/SSL and other client settings reach every Quix client (admin included)
    broker: Any = ConnectionConfig.from_librdkafka_dict(kafka, ignore_extras=True) if extra else bootstrap
    return Application(
        broker_address=broker,
        consumer_group=config.consumer_group,
        auto_offset_reset=config.auto_offset_reset,  # type: ignore[arg-type]
        state_dir=str(config.state_dir),
        commit_interval=config.commit_interval_s,
        processing_guarantee="exactly-once" if config.exactly_once else "at-least-once",
        consumer_extra_config={
            **kafka,
            "session.timeout.ms": config.session_timeout_ms,
            "fetch.wait.max.ms": config.fetch_wait_max_ms,
            "allow.auto.create.topics": False,
            **config.extra_consumer_config,
        },
        producer_extra_config={**kafka, "linger.ms": 10},
        consumer_poll_timeout=0.2,  # how soon a stop request is seen when there is nothing to read
        loglevel=None,
    )


def _decoder(source: Source, outputs: OperatorOutputs, stats: PipelineStats, max_ahead_ms: int, *,
             check_key: str | None = None) -> Any:
    """``check_key``: with --trust-message-key, the entity field every message key must equal (window state is
    kept per message key, so a record keyed otherwise would split its entity's windows: it is dead-lettered
    as ``key_mismatch`` instead)."""
    decoder = EventDecoder(source, max_ahead_ms)
    side = outputs.side

    def decode(raw: bytes | None, key: Any, record_ts: int, _headers: Any) -> list[dict[str, Any]]:
        ctx = message_context()
        stats.read += 1
        try:
            event = decoder.decode(raw, record_ts)
            if check_key is not None and (key is None or key.decode(errors="replace") != str(event[check_key])):
                raise InvalidEvent("key_mismatch", f"message key {key!r} is not the entity {check_key}="
                                   f"{event[check_key]!r}: --trust-message-key needs messages keyed by the entity "
                                   "(run without it to re-key)")
        except InvalidEvent as exc:
            side.dead_letter(raw, key, exc.reason, exc.detail, ctx.partition, ctx.offset)
            return []
        event[SOURCE_PARTITION_FIELD] = ctx.partition
        event[SOURCE_OFFSET_FIELD] = ctx.offset
        return [event]

    # expand: an invalid record becomes no record at all (it went to the DLQ)
    return decode
