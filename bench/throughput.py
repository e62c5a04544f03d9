"""Throughput: one synthetic topic, read by Freshet (two configurations) and by bare Quix Streams.

Every run has its own consumer group and state directory and reads the whole
topic from the start. Its rate is the topic's record count divided by the time
from the first record processed to the last one, so the consumer-group join
(about 3 s on the local broker) and the shutdown are left out.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bare import BareApp
from bench.common import (
    PARTITIONS,
    TUMBLING_VIEW,
    ProgressClock,
    Stack,
    example_views,
    load_average,
    say,
)
from features.definitions import FeatureView
from pipelines.synthetic import StreamSpec, StreamSummary, produce

# engine configurations, in the order they run
CONFIGS = {
    "rekey": "Freshet, rekey=True (default: re-key by entity through a repartition topic)",
    "key": "Freshet, rekey=False (trusts the message key)",
    "key-nosinks": "Freshet, rekey=False, no Redis/Parquet sinks",
    "bare": "bare Quix Streams app, same windows, no sink",
    "bare-rekey": "bare Quix Streams app, same windows, group_by re-key (as Freshet's default), no sink",
}
DEFAULT_CONFIGS = ("rekey", "bare-rekey", "key", "bare")
WORKLOADS = {"all": None, "tumbling": [TUMBLING_VIEW]}


@dataclass
class Topic:
    name: str
    summary: StreamSummary
    produce_s: float
    spec: StreamSpec

    @property
    def records(self) -> int:
        return self.summary.produced


@dataclass
class Run:
    workload: str
    config: str
    records: int
    seconds: float | None
    wall_s: float
    complete: bool
    emitted: dict[str, int] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    note: str = ""
    load_before: float = 0.0

    @property
    def rate(self) -> float | None:
        return self.records / self.seconds if self.seconds else None


def make_topic(stack: Stack, events: int, run_id: str) -> Topic:
    from infra.topics import provision_topics, source_topic_specs

    name = f"bench-{run_id}.transactions"
    provision_topics(stack.kafka_config, source_topic_specs(name, PARTITIONS))
    spec = StreamSpec(events=events)
    say(f"producing {events:,} synthetic card transactions to {name} ({PARTITIONS} partitions)")
    started = time.perf_counter()
    summary = produce(stack.kafka_config, name, spec)
    elapsed = time.perf_counter() - started
    say(f"      produced {summary.produced:,} in {elapsed:.1f}s ({summary.malformed} malformed)")
    return Topic(name, summary, elapsed, spec)


def _workload_views(topic: Topic, workload: str) -> list[FeatureView]:
    return example_views(topic.name, WORKLOADS[workload])


def run_freshet(stack: Stack, topic: Topic, workload: str, config: str, workdir: Path) -> Run:
    from pipelines.runner import run_pipeline
    from pipelines.topology import PipelineConfig, build_pipeline

    views = _workload_views(topic, workload)
    run_dir = workdir / f"{workload}-{config}-{uuid.uuid4().hex[:6]}"
    sinks = config != "key-nosinks"
    pipeline_config = PipelineConfig(
        kafka_config=stack.kafka_config,
        consumer_group=f"bench-{run_dir.name}",
        state_dir=run_dir / "state",
        offline_root=run_dir / "offline" if sinks else None,
        redis_url=stack.redis_url if sinks else None,
        commit_interval_s=1.0,
        rekey=config == "rekey",
    )
    pipeline = build_pipeline(views, pipeline_config)
    stats = pipeline.stats

    def signature() -> Any:
        # records read from the source, plus the repartition topic's progress when re-keying
        return stats.read, tuple(sorted(stats.processed_offsets.copy().items()))

    clock = ProgressClock(lambda: stats.read, signature, topic.records, on_stall=pipeline.app.stop)
    say(f"  {workload} / {config}: {CONFIGS[config]}")
    load = load_average()
    started = time.perf_counter()
    clock.start()
    try:
        snapshot = run_pipeline(pipeline, until_caught_up=True, interval_s=10.0,
                                report=lambda m: say("      " + m))
    finally:
        clock.stop()
    wall = time.perf_counter() - started
    complete, note = _freshet_complete(snapshot, topic, stats.processed_offsets, config)
    emitted = {str(k): int(v) for k, v in dict(snapshot["emitted_by_view"]).items()}  # type: ignore[call-overload]
    late = {str(k): int(v) for k, v in dict(snapshot["late_by_view"]).items()}  # type: ignore[call-overload]
    return Run(workload, config, topic.records, clock.seconds, wall, complete and not clock.stalled,
               emitted, late, note, load)


def _freshet_complete(snapshot: dict[str, Any], topic: Topic, processed: dict[tuple[str, int], int],
                      config: str) -> tuple[bool, str]:
    read = int(snapshot["read"])
    if read != topic.records:
        return False, f"read {read:,} of {topic.records:,} records"
    if config != "rekey":
        return True, ""
    # the repartition topic receives every valid event; check all of them were processed
    valid = int(snapshot["valid"])
    repartitioned = sum(offset + 1 for (name, _p), offset in processed.items() if name != topic.name)
    if repartitioned != valid:
        return False, f"processed {repartitioned:,} of {valid:,} re-keyed events"
    return True, ""


def run_bare(stack: Stack, topic: Topic, workload: str, workdir: Path, config: str = "bare") -> Run:
    views = _workload_views(topic, workload)
    rekey = config == "bare-rekey"
    run_dir = workdir / f"{workload}-{config}-{uuid.uuid4().hex[:6]}"
    app = BareApp(views, stack.kafka_bootstrap, f"bench-{run_dir.name}", run_dir / "state", rekey=rekey)
    if rekey:  # progress and the end are counted where the windows read (after the re-key hop)
        clock = ProgressClock(lambda: app.windowed, lambda: app.windowed, topic.summary.valid,
                              on_target=app.app.stop, on_stall=app.app.stop)
    else:
        clock = ProgressClock(lambda: app.read, lambda: app.read, topic.records,
                              on_target=app.app.stop, on_stall=app.app.stop)
    say(f"  {workload} / {config}: {CONFIGS[config]}")
    load = load_average()
    started = time.perf_counter()
    clock.start()
    try:
        app.run()
    finally:
        clock.stop()
    wall = time.perf_counter() - started
    complete = app.read == topic.records and not clock.stalled
    if rekey:
        complete = complete and app.windowed == topic.summary.valid
    note = "" if complete else f"read {app.read:,} of {topic.records:,} records, windowed {app.windowed:,}"
    return Run(workload, config, topic.records, clock.seconds, wall, complete, dict(app.emitted),
               dict(app.late), note, load)


def run_all(stack: Stack, topic: Topic, workloads: list[str], configs: list[str], repeat: int,
            workdir: Path) -> list[Run]:
    """Every (workload, config) ``repeat`` times, interleaved so drift hits all configs alike."""
    runs: list[Run] = []
    for round_no in range(1, repeat + 1):
        if repeat > 1:
            say(f"round {round_no}/{repeat}")
        for workload in workloads:
            for config in configs:
                if config.startswith("bare"):
                    run = run_bare(stack, topic, workload, workdir, config)
                else:
                    run = run_freshet(stack, topic, workload, config, workdir)
                rate = f"{run.rate:,.0f} events/s" if run.rate else "no rate"
                say(f"      {rate} over {run.seconds or 0:.1f}s (wall {run.wall_s:.1f}s)"
                    + ("" if run.complete else f"; INCOMPLETE: {run.note}"))
                runs.append(run)
    return runs
