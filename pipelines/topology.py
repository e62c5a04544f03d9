"""The one topology builder: the views of a source -> a Quix Streams dataframe graph.

Live runs (`freshet run`) and replays use this same function, so both compute
exactly the same values. The graph:

    raw bytes -> decode + validate (invalid -> <topic>.dlq) -> [re-key by entity]
      -> event time from the event -> per view: window(view.state_name)
         with all aggregations in one aggregator, late events -> <topic>.late
      -> emitted value -> FeatureSink (Redis newer-wins + Parquet log)

Windows close with Quix Streams' default per-key strategy: the watermark moves
only with event times read from the log, never with the wall clock, so a replay
reproduces the live run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.context import message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.kafka.configuration import ConnectionConfig

from features.definitions import FeatureView, HoppingWindow, SlidingWindow, Source, TumblingWindow
from features.errors import PipelineError
from pipelines.aggregator import ViewAggregator
from pipelines.bounds import EndGuard
from pipelines.broker_quirks import correct_watermarks
from pipelines.decode import (
    EVENT_TIME_FIELD,
    SOURCE_OFFSET_FIELD,
    SOURCE_PARTITION_FIELD,
    EventDecoder,
    InvalidEvent,
)
from pipelines.feature_sink import EmittedValue, FeatureSink
from pipelines.offline_sink import ParquetLogWriter
from pipelines.online_sink import RedisOnlineWriter
from pipelines.side_outputs import SideOutputs
from pipelines.stats import PipelineStats

log = logging.getLogger(__name__)
AGG_NAME = "features"


@dataclass
class PipelineConfig:
    """Everything a run or a replay needs besides the views."""

    kafka_config: dict[str, Any]
    consumer_group: str
    state_dir: Path
    offline_root: Path | None
    redis_url: str | None
    auto_offset_reset: str = "earliest"
    commit_interval_s: float = 1.0
    rekey: bool = True
    session_timeout_ms: int = 6000
    # tansu answers a fetch only after fetch.wait.max.ms (librdkafka default 500 ms) even when data
    # is there; with the re-key hop that is paid twice. 50 ms keeps values fresh; tansu costs more CPU.
    fetch_wait_max_ms: int = 50
    parquet_roll_rows: int = 100_000
    parquet_roll_seconds: float = 120.0
    extra_consumer_config: dict[str, Any] = field(default_factory=dict)
    end_guard: EndGuard | None = None  # replays: stop exactly at planned end offsets


@dataclass
class Pipeline:
    app: Application
    source: Source
    views: list[FeatureView]
    stats: PipelineStats
    online: RedisOnlineWriter | None
    kafka_config: dict[str, Any]
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        if self.online is not None:
            self.online.close()
        for close in self.closers:
            close()
        self.closers.clear()


@dataclass
class _Current:
    """The event being processed: windows emit while it is current (processing is sequential)."""

    ts: int = 0
    partition: int = 0
    offset: int = 0


def single_source(views: list[FeatureView]) -> Source:
    if not views:
        raise PipelineError("no views selected")
    topics = {v.source.topic for v in views}
    if len(topics) != 1:
        raise PipelineError(f"one pipeline reads one topic; the selected views read {sorted(topics)}")
    return views[0].source


def build_pipeline(views: list[FeatureView], config: PipelineConfig,
                   stats: PipelineStats | None = None) -> Pipeline:
    source = single_source(views)
    stats = stats or PipelineStats()
    kafka = dict(config.kafka_config)
    bootstrap = kafka.pop("bootstrap.servers")
    app = _make_app(bootstrap, kafka, config)
    probe = correct_watermarks(app._consumer, {"bootstrap.servers": bootstrap, **kafka})
    side = SideOutputs(source, {"bootstrap.servers": bootstrap, **kafka}, stats)
    topic = app.topic(source.topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf._processing_context.sink_manager.register(side)  # flushed at every checkpoint

    if config.end_guard is not None:
        config.end_guard.install(app)
    sdf = _decode(sdf, source, side, stats, config.end_guard)
    sdf = sdf.set_timestamp(lambda value, key, ts, headers: value[EVENT_TIME_FIELD])
    current = _Current()
    if config.rekey:
        key_field = views[0].entity_key
        sdf = sdf.group_by(lambda v: str(v[key_field]), name=f"rekey_{key_field}")
        sdf = sdf.filter(_first_delivery(current, stats), stateful=True)
    else:
        sdf = sdf.update(_track_current(current, stats))

    online = RedisOnlineWriter(config.redis_url, on_written=lambda n: _count_online(stats, n)) \
        if config.redis_url else None
    for view in views:
        if view.entity_key != views[0].entity_key and config.rekey:
            raise PipelineError(
                f"view {view.name!r} keys by {view.entity_key!r} but {views[0].name!r} by "
                f"{views[0].entity_key!r}: run them in separate pipelines (--view)"
            )
        offline = ParquetLogWriter(config.offline_root, view, roll_rows=config.parquet_roll_rows,
                                   roll_seconds=config.parquet_roll_seconds) if config.offline_root else None
        # the sink turns window results into emitted values itself: two dataframe steps fewer
        _window(sdf, view, side).sink(FeatureSink(view, online, offline, stats, _emitter(view, current)))
    return Pipeline(app, source, views, stats, online, dict(config.kafka_config), [probe.close])


def _make_app(bootstrap: str, kafka: dict[str, Any], config: PipelineConfig) -> Application:
    common = {"bootstrap.servers": bootstrap, **kafka}
    # SASL/SSL and other client settings reach every Quix client (admin included)
    broker: Any = ConnectionConfig.from_librdkafka_dict(common, ignore_extras=True) if kafka else bootstrap
    return Application(
        broker_address=broker,
        consumer_group=config.consumer_group,
        auto_offset_reset=config.auto_offset_reset,  # type: ignore[arg-type]
        state_dir=str(config.state_dir),
        commit_interval=config.commit_interval_s,
        processing_guarantee="at-least-once",
        consumer_extra_config={
            **common,
            "session.timeout.ms": config.session_timeout_ms,
            "fetch.wait.max.ms": config.fetch_wait_max_ms,
            "allow.auto.create.topics": False,
            **config.extra_consumer_config,
        },
        producer_extra_config={**common, "linger.ms": 10},
        loglevel=None,
    )


def _count_online(stats: PipelineStats, n: int) -> None:
    stats.online_writes += n


def _decode(sdf: StreamingDataFrame, source: Source, side: SideOutputs,
            stats: PipelineStats, guard: EndGuard | None) -> StreamingDataFrame:
    decoder = EventDecoder(source)

    def decode(raw: bytes | None, key: Any, _ts: int, _headers: Any) -> list[dict[str, Any]]:
        ctx = message_context()
        if guard is not None and not guard.admit(ctx.partition, ctx.offset):
            return []
        stats.read += 1
        stats.processed_offsets[(ctx.topic, ctx.partition)] = ctx.offset
        try:
            event = decoder.decode(raw)
        except InvalidEvent as exc:
            side.dead_letter(raw, key, exc.reason, exc.detail, ctx.partition, ctx.offset)
            return []
        event[SOURCE_PARTITION_FIELD] = ctx.partition
        event[SOURCE_OFFSET_FIELD] = ctx.offset
        return [event]

    # expand: an invalid record becomes no record at all (it went to the DLQ)
    return sdf.apply(decode, metadata=True, expand=True)


def _track_current(current: _Current, stats: PipelineStats) -> Any:
    def track(value: dict[str, Any]) -> None:
        stats.windowed += 1
        current.ts = value[EVENT_TIME_FIELD]
        current.partition = value[SOURCE_PARTITION_FIELD]
        current.offset = value[SOURCE_OFFSET_FIELD]

    return track


def _first_delivery(current: _Current, stats: PipelineStats) -> Any:
    """Drop a record the repartition topic holds twice (at-least-once after a crash).

    Per entity, events of one source partition arrive in source order, so one
    whose source offset is not above the last one seen is a duplicate. Also
    tracks the current event and the repartition topic's progress (for lag).
    """
    processed = stats.processed_offsets

    def first_delivery(value: dict[str, Any], state: Any) -> bool:
        ctx = message_context()
        processed[(ctx.topic, ctx.partition)] = ctx.offset
        partition = value[SOURCE_PARTITION_FIELD]
        offset = value[SOURCE_OFFSET_FIELD]
        slot = f"src{partition}"
        last = state.get(slot)
        if last is not None and offset <= last:
            return False
        state.set(slot, offset)
        stats.windowed += 1
        current.ts = value[EVENT_TIME_FIELD]
        current.partition = partition
        current.offset = offset
        return True

    return first_delivery


def _window(sdf: StreamingDataFrame, view: FeatureView, side: SideOutputs) -> StreamingDataFrame:
    def on_late(value: Any, key: Any, timestamp_ms: int, late_by_ms: int, start: int, end: int,
                store_name: str, topic: str, partition: int, offset: int) -> bool:
        side.late(view, value, str(key), late_by_ms, start, end,
                  value[SOURCE_PARTITION_FIELD], value[SOURCE_OFFSET_FIELD])
        return False  # reported on the late topic and counted; no log line per event

    window = view.window
    name = view.state_name
    definition: Any
    if isinstance(window, TumblingWindow):
        definition = sdf.tumbling_window(window.size, grace_ms=view.grace, name=name, on_late=on_late)
    elif isinstance(window, HoppingWindow):
        definition = sdf.hopping_window(window.size, window.step, grace_ms=view.grace, name=name, on_late=on_late)
    elif isinstance(window, SlidingWindow):
        definition = sdf.sliding_window(window.size, grace_ms=view.grace, name=name, on_late=on_late)
    else:  # pragma: no cover - the models admit no other window
        raise PipelineError(f"unsupported window {window!r}")
    aggregated = definition.agg(**{AGG_NAME: ViewAggregator(view)})
    return aggregated.final() if view.emit == "final" else aggregated.current()


def current_window_start(view: FeatureView, ts: int) -> int:
    """For `current` emission: the start of the window containing ``ts`` that ends soonest.

    Tumbling: the one window; hopping: the earliest-starting window that still
    contains ``ts`` (the most history up to ``ts``); sliding: the window ending at ``ts``.
    """
    window = view.window
    if isinstance(window, SlidingWindow):
        return ts - window.size
    # Quix Streams' windows start at multiples of step and contain ts when start > ts - size
    return max(0, ((ts - window.size) // window.step + 1) * window.step)


def _emitter(view: FeatureView, current: _Current) -> Any:
    entity_type = view.source.event_schema[view.entity_key]
    cast = int if entity_type == "int" else (lambda k: k == "True") if entity_type == "bool" else str
    is_current = view.emit == "current"
    is_sliding = isinstance(view.window, SlidingWindow)

    def emit(result: dict[str, Any], key: Any) -> EmittedValue | None:
        start, end = result["start"], result["end"]
        if is_current:
            ts = current.ts
            if is_sliding:
                if end != ts:
                    return None
            elif start != current_window_start(view, ts):
                return None
            feature_ts = ts
        else:
            feature_ts = end
        entity = cast(key.decode() if isinstance(key, bytes) else key)
        return (entity, feature_ts, start, end, result[AGG_NAME], current.partition, current.offset)

    return emit
