"""Throughput of the live path: one synthetic topic, read by Freshet (two configurations) and by
bare Quix Streams.

Every run has its own consumer group and state directory and reads the topic from
the start. Its rate is the topic's record count divided by the time from the first
record processed to the last one, so the consumer-group join (about 3 s on the local
broker) and the shutdown are left out. A bare Quix run may stop after its first
``prefix`` events (Quix's sliding windows are slow); live Freshet runs then also
record their rate over the same first events, for a like-for-like ratio.
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
from freshet.features.definitions import FeatureView
from freshet.pipelines.run_defaults import DEFAULT_COMMIT_INTERVAL_S
from freshet.synthetic import StreamSpec, StreamSummary, produce

# the checkpoint interval of every live and bare run (bench.run --commit-interval; default `freshet run`'s)
COMMIT_INTERVAL_S = [DEFAULT_COMMIT_INTERVAL_S]

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
    records: int  # records the run read (all of the topic, or its prefix for a stopped bare run)
    seconds: float | None
    wall_s: float
    complete: bool
    emitted: dict[str, int] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    note: str = ""
    load_before: float = 0.0
    group: str = ""
    offline_root: Path | None = None
    prefix: int = 0  # > 0: the rate over the first ``prefix`` windowed events is known
    prefix_rate: float | None = None
    stopped_early: bool = False  # a bare run stopped after ``prefix`` events (not the whole topic)
    windowed: int = 0  # events that reached the windows

    @property
    def rate(self) -> float | None:
        if self.stopped_early:
            return self.prefix_rate
        return self.records / self.seconds if self.seconds else None


def make_topic(stack: Stack, events: int, run_id: str, cards: int = 2_000,
               suffix: str = "transactions") -> Topic:
    from freshet.infra.topics import provision_topics, source_topic_specs

    name = f"bench-{run_id}.{suffix}"
    provision_topics(stack.kafka_config, source_topic_specs(name, PARTITIONS))
    spec = StreamSpec(events=events, cards=cards)
    say(f"producing {events:,} synthetic card transactions ({cards:,} cards) to {name} "
        f"({PARTITIONS} partitions)")
    started = time.perf_counter()
    summary = produce(stack.kafka_config, name, spec)
    elapsed = time.perf_counter() - started
    say(f"      produced {summary.produced:,} in {elapsed:.1f}s ({summary.malformed} malformed)")
    return Topic(name, summary, elapsed, spec)


def _workload_views(topic: Topic, workload: str) -> list[FeatureView]:
    return example_views(topic.name, WORKLOADS[workload])


def run_freshet(stack: Stack, topic: Topic, workload: str, config: str, workdir: Path,
                prefix: int = 0) -> Run:
    from freshet.pipelines.runner import run_pipeline
    from freshet.pipelines.topology import PipelineConfig, build_pipeline

    views = _workload_views(topic, workload)
    run_dir = workdir / f"{workload}-{config}-{uuid.uuid4().hex[:6]}"
    sinks = config != "key-nosinks"
    pipeline_config = PipelineConfig(
        kafka_config=stack.kafka_config,
        consumer_group=f"bench-{run_dir.name}",
        state_dir=run_dir / "state",
        offline_root=run_dir / "offline" if sinks else None,
        redis_url=stack.redis_url if sinks else None,
        rekey=config == "rekey",
        commit_interval_s=COMMIT_INTERVAL_S[0],
    )
    pipeline = build_pipeline(views, pipeline_config)
    stats = pipeline.stats

    def signature() -> Any:
        # records read from the source, and events through the windows (after the re-key hop)
        return stats.read, stats.windowed, stats.duplicates

    clock = ProgressClock(lambda: stats.read, signature, topic.records, on_stall=pipeline.app.stop,
                          mark=(lambda: stats.windowed, prefix) if prefix else None)
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
    complete, note = _freshet_complete(snapshot, topic)
    emitted = {str(k): int(v)
               for k, v in dict(snapshot["emitted_by_view"]).items()}  # type: ignore[call-overload]
    late = {str(k): int(v) for k, v in dict(snapshot["late_by_view"]).items()}  # type: ignore[call-overload]
    return Run(workload, config, topic.records, clock.seconds, wall, complete and not clock.stalled,
               emitted, late, note, load, group=pipeline_config.consumer_group,
               offline_root=pipeline_config.offline_root, prefix=prefix, prefix_rate=clock.mark_rate)


def _freshet_complete(snapshot: dict[str, Any], topic: Topic) -> tuple[bool, str]:
    """Every record read once, every valid one through the windows (a redelivery is skipped, not counted)."""
    read = int(snapshot["read"])
    if read != topic.records:
        return False, f"read {read:,} of {topic.records:,} records"
    valid, windowed = int(snapshot["valid"]), int(snapshot["windowed"])
    if windowed != valid:
        return False, f"windowed {windowed:,} of {valid:,} valid events"
    return True, ""


def run_bare(stack: Stack, topic: Topic, workload: str, workdir: Path, config: str = "bare",
             prefix: int = 0) -> Run:
    """The whole topic, or (``prefix`` > 0) its first ``prefix`` events through the windows."""
    views = _workload_views(topic, workload)
    rekey = config == "bare-rekey"
    run_dir = workdir / f"{workload}-{config}-{uuid.uuid4().hex[:6]}"
    group = f"bench-{run_dir.name}"
    # checkpoints as often as a live run's (the `freshet run` default)
    app = BareApp(views, stack.kafka_bootstrap, group, run_dir / "state", rekey=rekey,
                  commit_interval_s=COMMIT_INTERVAL_S[0])
    if prefix:
        # timed from the first record read, as the live runs' rate over their first events
        clock = ProgressClock(lambda: app.read, lambda: (app.read, app.windowed), topic.records + 1,
                              on_stall=app.app.stop, mark=(lambda: app.windowed, prefix),
                              on_mark=app.app.stop)
    elif rekey:  # progress and the end are counted where the windows read (after the re-key hop)
        clock = ProgressClock(lambda: app.windowed, lambda: app.windowed, topic.summary.valid,
                              on_target=app.app.stop, on_stall=app.app.stop)
    else:
        clock = ProgressClock(lambda: app.read, lambda: app.read, topic.records,
                              on_target=app.app.stop, on_stall=app.app.stop)
    say(f"  {workload} / {config}: {CONFIGS[config]}" + (f", first {prefix:,} events" if prefix else ""))
    load = load_average()
    started = time.perf_counter()
    clock.start()
    try:
        app.run()
    finally:
        clock.stop()
    wall = time.perf_counter() - started
    if prefix:
        complete = clock.marked is not None and not clock.stalled
        note = "" if complete else f"windowed {app.windowed:,} of the first {prefix:,} events"
        seconds = clock.marked - clock.first if clock.marked and clock.first else None
        return Run(workload, config, app.read, seconds, wall, complete, dict(app.emitted),
                   dict(app.late), note, load, group=group, prefix=prefix, prefix_rate=clock.mark_rate,
                   stopped_early=True, windowed=app.windowed)
    complete = app.read == topic.records and not clock.stalled
    if rekey:
        complete = complete and app.windowed == topic.summary.valid
    note = "" if complete else f"read {app.read:,} of {topic.records:,} records, windowed {app.windowed:,}"
    return Run(workload, config, topic.records, clock.seconds, wall, complete, dict(app.emitted),
               dict(app.late), note, load, group=group)


def run_all(stack: Stack, topic: Topic, workloads: list[str], configs: list[str], repeat: int,
            workdir: Path, bare_prefix: dict[str, int] | None = None) -> list[Run]:
    """Every (workload, config) ``repeat`` times, interleaved so drift hits all configs alike.

    ``bare_prefix``: per workload, stop the bare Quix runs after that many events (0 or
    absent: the whole topic); the live runs of that workload then also record their rate
    over the same first events."""
    runs: list[Run] = []
    for round_no in range(1, repeat + 1):
        if repeat > 1:
            say(f"round {round_no}/{repeat}")
        for workload in workloads:
            prefix = (bare_prefix or {}).get(workload, 0)
            prefix = prefix if 0 < prefix < topic.summary.valid else 0
            for config in configs:
                if config.startswith("bare"):
                    run = run_bare(stack, topic, workload, workdir, config, prefix)
                else:
                    run = run_freshet(stack, topic, workload, config, workdir, prefix)
                rate = f"{run.rate:,.0f} events/s" if run.rate else "no rate"
                if prefix and not run.stopped_early and run.prefix_rate:
                    rate += f" ({run.prefix_rate:,.0f} over the first {prefix:,})"
                say(f"      {rate} over {run.seconds or 0:.1f}s (wall {run.wall_s:.1f}s)"
                    + ("" if run.complete else f"; INCOMPLETE: {run.note}"))
                runs.append(run)
    return runs
