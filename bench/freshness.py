"""Freshness: how long from a producer's send until the event's value is readable in Redis.

The measured view is built here, not taken from the example: freshness needs a
view that writes on every event, so a 1-minute tumbling window with
``emit="current"`` (count and sum of amount) on the example's source. The
pipeline runs on this process's main thread (Quix Streams installs signal
handlers, which only the main thread may do); a spawned child process produces
at a steady rate and polls Redis (see :mod:`bench.load`).
"""

from __future__ import annotations

import multiprocessing
import queue
import statistics
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import PARTITIONS, Stack, example_views, load_average, say
from bench.load import CLIENT_LINGER_MS, LoadPlan, LoadResult, probe_into
from freshet.features.definitions import Aggregation, FeatureView, TumblingWindow

FRESHNESS_VIEW = "bench_freshness_1m"


@dataclass
class Freshness:
    view: FeatureView
    rate: int
    seconds: float
    result: LoadResult
    rekey: bool
    consumer_overrides: dict[str, Any]
    load_before: float = 0.0
    client_linger_ms: int = CLIENT_LINGER_MS  # the load's producer
    # a pooled row (:func:`pooled`): the runs whose samples it holds; empty for one run
    runs: list[Freshness] = field(default_factory=list)

    @property
    def consumer(self) -> str:
        from dataclasses import fields

        from freshet.pipelines.topology import PipelineConfig

        waits = [f.default for f in fields(PipelineConfig) if f.name == "fetch_wait_max_ms"]
        default = f"defaults (fetch.wait.max.ms={waits[0]})" if waits else "defaults"
        return ", ".join(f"{k}={v}" for k, v in self.consumer_overrides.items()) or default

    @property
    def achieved_rate(self) -> float:
        return self.result.produced / self.result.produce_s if self.result.produce_s else 0.0

    @property
    def kept_up(self) -> bool:
        """The producer sent within 2% of the target rate."""
        return self.achieved_rate >= 0.98 * self.rate

    @property
    def path(self) -> str:
        return "rekey" if self.rekey else "key"

    @property
    def label(self) -> str:
        """The path, and for a pooled row how many runs it pools."""
        return f"{self.path}, {len(self.runs)} runs pooled" if self.runs else self.path

    @property
    def trend(self) -> tuple[float, float] | None:
        """Median latency of the first and of the last tenth of the samples (in send order)."""
        values = self.result.latencies_ms
        if self.runs or len(values) < 20:  # pooled: each run has its own trend
            return None
        tenth = len(values) // 10
        return statistics.median(values[:tenth]), statistics.median(values[-tenth:])

    @property
    def pipeline_kept_up(self) -> bool:
        """False when latency grew along the run: a backlog built up, so the figure is queueing."""
        if self.runs:
            return all(run.pipeline_kept_up for run in self.runs)
        trend = self.trend
        if trend is None:
            return self.result.missing == 0
        first, last = trend
        return last <= 2 * first + 100 and self.result.missing == 0

    def percentile(self, p: float) -> float | None:
        values = sorted(self.result.latencies_ms)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=1000, method="inclusive")[round(p * 10) - 1]

    @property
    def max_ms(self) -> float | None:
        return max(self.result.latencies_ms) if self.result.latencies_ms else None


def pooled(runs: list[Freshness]) -> Freshness:
    """The samples of several runs of one measurement (same rate, path, consumer and linger; none failed)
    as one.

    One 20-second run holds about four checkpoints, and its p99 (the 20th-slowest of 2,000 samples)
    depends on how those few went: identical runs gave 136 to 402 ms re-keyed at 5,000/s (by hand,
    2026-11-25). Pooling the runs' samples estimates the same percentile from N times the checkpoints;
    each run is still shown on its own."""
    first = runs[0]
    merged = LoadResult(
        latencies_ms=[v for run in runs for v in run.result.latencies_ms],
        samples=sum(run.result.samples for run in runs), produced=sum(run.result.produced for run in runs),
        produce_s=sum(run.result.produce_s for run in runs),
        max_behind_ms=max(run.result.max_behind_ms for run in runs))
    return Freshness(first.view, first.rate, sum(run.seconds for run in runs), merged, first.rekey,
                     dict(first.consumer_overrides), max(run.load_before for run in runs),
                     first.client_linger_ms, list(runs))


def freshness_view(topic: str) -> FeatureView:
    """A tumbling 1-minute view that emits on every event, on the example's source."""
    source = example_views(topic)[0].source
    return FeatureView(
        name=FRESHNESS_VIEW,
        version=1,
        source=source,
        window=TumblingWindow(size="1m"),
        grace="5s",
        emit="current",
        ttl="10m",
        aggregations=(
            Aggregation(function="count", name="txn_count_1m"),
            Aggregation(function="sum", column="amount", name="amount_sum_1m"),
        ),
        description="benchmark only: written to Redis on every event",
    )


def measure_freshness(stack: Stack, rate: int, seconds: float, workdir: Path, run_id: str,
                      rekey: bool = True, consumer_overrides: dict[str, Any] | None = None,
                      client_linger_ms: int = CLIENT_LINGER_MS) -> Freshness:
    """``client_linger_ms``: the load producer's linger.ms (see :data:`bench.load.CLIENT_LINGER_MS`)."""
    from freshet.infra.topics import provision_topics, source_topic_specs
    from freshet.pipelines.runner import run_pipeline
    from freshet.pipelines.topology import PipelineConfig, build_pipeline

    topic = f"bench-{run_id}.fresh-{rate}-{uuid.uuid4().hex[:4]}"
    provision_topics(stack.kafka_config, source_topic_specs(topic, PARTITIONS))
    view = freshness_view(topic)
    run_dir = workdir / f"freshness-{uuid.uuid4().hex[:6]}"
    pipeline = build_pipeline([view], PipelineConfig(
        kafka_config=stack.kafka_config, consumer_group=f"bench-{run_dir.name}",
        state_dir=run_dir / "state", offline_root=run_dir / "offline", redis_url=stack.redis_url,
        auto_offset_reset="earliest", rekey=rekey,
        extra_consumer_config=dict(consumer_overrides or {}),
    ))
    plan = LoadPlan(bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic=topic,
                    view_name=view.name, view_version=view.version, rate=rate, seconds=seconds,
                    linger_ms=client_linger_ms)
    outcome: list[LoadResult] = []
    finished = threading.Event()

    def control() -> None:
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        child = context.Process(target=probe_into, args=(plan, out), name="bench-load", daemon=True)
        child.start()
        try:
            budget = plan.warmup_timeout_s + seconds * 3 + plan.settle_s + 60
            outcome.append(out.get(timeout=budget))
        except queue.Empty:
            outcome.append(LoadResult(error="the load process did not report back in time"))
        finally:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join()
            # stop the pipeline; repeat in case run() had not started its loop yet
            while not finished.is_set():
                pipeline.app.stop()
                finished.wait(1.0)

    say(f"freshness: {rate:,} events/s for {seconds:g}s into {topic}, view {view.name} "
        f"({view.window.describe()}, {view.emit}), rekey={rekey}, "
        f"consumer {consumer_overrides or 'defaults'}, client linger {client_linger_ms} ms")
    load = load_average()
    controller = threading.Thread(target=control, name="bench-freshness", daemon=True)
    controller.start()
    try:
        snapshot = run_pipeline(pipeline, until_caught_up=False, interval_s=5.0,
                                report=lambda m: say("      " + m))
    finally:
        finished.set()
        controller.join(timeout=30)
    result = outcome[0] if outcome else LoadResult(error="no result from the load process")
    if result.error:
        say(f"      freshness probe failed: {result.error}")
    say(f"      pipeline read {snapshot['read']:,}, Redis writes {snapshot['online_writes']:,}")
    return Freshness(view, rate, seconds, result, rekey, dict(consumer_overrides or {}), load, client_linger_ms)


def summarize(fresh: Freshness) -> str:
    p50, p99, top = fresh.percentile(50), fresh.percentile(99), fresh.max_ms
    if p50 is None or p99 is None or top is None:
        return "no samples resolved"
    text = (f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.1f} ms over {len(fresh.result.latencies_ms):,} "
            f"samples ({fresh.result.missing} unresolved); producer {fresh.achieved_rate:,.0f}/s")
    trend = fresh.trend
    if trend is not None and not fresh.pipeline_kept_up:
        text += (f"; the pipeline fell behind: median latency grew from {trend[0]:,.0f} ms (first tenth) "
                 f"to {trend[1]:,.0f} ms (last tenth)")
    return text
