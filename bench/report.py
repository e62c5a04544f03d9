"""The Markdown section of one benchmark run, and bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.common import Stack
from bench.freshness import Freshness
from bench.throughput import CONFIGS, Run, Topic

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

HEADER = """# Freshet benchmark results

Appended by `make bench` (`python -m bench.run`); newest last. Each section
records the date, the machine, the exact command, and the figures.

Method.

- **Throughput.** One synthetic card-transaction topic (4 partitions,
  `pipelines.synthetic`, out-of-order, late and malformed events included) is
  read from the start by each engine configuration in turn, each with a fresh
  consumer group and state directory: Freshet (`build_pipeline` +
  `run_pipeline(until_caught_up=True)`, Redis and Parquet sinks on) with
  `rekey=True` (the default) and `rekey=False`, and a bare Quix Streams
  application computing the same windows, with the same consumer settings and
  changelog topics, that writes nothing (built-in Count and Sum; count-distinct
  of merchant as a small custom aggregator, since Quix's Collect is not allowed
  with `.current()`). The rate is records / (time of the last
  record processed - time of the first one), sampled every 20 ms from a thread,
  so the consumer-group join and the shutdown are excluded. Two workloads: all
  example views (tumbling 5m + hopping 1h/5m + sliding 10m) and the tumbling
  5m view alone.
- **Freshness.** A child process produces at a steady rate (by default
  5,000/s, then 1,000/s, then 1,000/s again with the pipeline's
  `fetch.wait.max.ms` at 50 ms; 20 s each) with event time = wall clock,
  into a pipeline running a 1-minute tumbling view that emits on every event
  (`emit="current"`). For every 50th event it polls the entity's
  Redis hash every 5 ms until `__ts` reaches the event's time. The figure is
  send -> visible in Redis: producer batching (linger 5 ms) + broker + consume +
  re-key hop + processing + the Redis writer's batching (at most 50 ms) + the
  5 ms polling step.

Timings vary from run to run (shared machine, Python GC, broker in memory):
compare figures within one section rather than across machines.
"""


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def command_line() -> str:
    return "python -m bench.run" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt_rate(value: float | None) -> str:
    return f"{value:,.0f}" if value else "-"


def throughput_table(runs: list[Run]) -> list[str]:
    lines = ["| workload | engine | events/s | processing s | wall s (incl. join) | vs bare (same keying) "
             "| load avg before |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    workloads = list(dict.fromkeys(r.workload for r in runs))
    for workload in workloads:
        mine = [r for r in runs if r.workload == workload]
        bares = {name: _median([r.rate for r in mine if r.config == name and r.complete and r.rate])
                 for name in ("bare", "bare-rekey")}
        for config in dict.fromkeys(r.config for r in mine):
            # re-keying configurations compare with the bare app that re-keys too, when it ran
            bare = bares["bare-rekey"] if "rekey" in config and bares.get("bare-rekey") else bares["bare"]
            group = [r for r in mine if r.config == config]
            rates = [r.rate for r in group if r.complete and r.rate]
            rate = _median(rates)
            seconds = _median([r.seconds for r in group if r.seconds])
            wall = _median([r.wall_s for r in group])
            ratio = f"{rate / bare:.2f}" if rate and bare else "-"
            shown = _fmt_rate(rate)
            if len(group) > 1:
                shown += " (" + ", ".join(_fmt_rate(r.rate) for r in group) + ")"
            if any(not r.complete for r in group):
                shown += " INCOMPLETE: " + "; ".join(r.note for r in group if not r.complete)
            loads = ", ".join(f"{r.load_before:.2f}" for r in group)
            lines.append(f"| {workload} | {CONFIGS[config]} | {shown} | {seconds or 0:.1f} | {wall or 0:.1f} "
                         f"| {ratio} | {loads} |")
    return lines


def freshness_table(results: list[Freshness]) -> list[str]:
    def ms(value: float | None) -> str:
        return f"{value:,.1f}" if value is not None else "-"

    lines = [
        "| target rate | pipeline consumer | producer achieved | pipeline kept up | samples | p50 ms "
        "| p99 ms | max ms | unresolved | median first -> last tenth | load avg before |",
        "| ---: | --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fresh in results:
        r = fresh.result
        if r.error:
            lines.append(f"| {fresh.rate:,}/s | {fresh.consumer} | probe failed: {r.error} | | | | | | | | |")
            continue
        trend = fresh.trend
        shown = f"{trend[0]:,.0f} -> {trend[1]:,.0f} ms" if trend else "-"
        producer = f"{fresh.achieved_rate:,.0f}/s{'' if fresh.kept_up else ' (behind)'}"
        lines.append(
            f"| {fresh.rate:,}/s for {fresh.seconds:g}s | {fresh.consumer} "
            f"| {producer} (max {r.max_behind_ms:,.0f} ms late) "
            f"| {'yes' if fresh.pipeline_kept_up else '**no**'} | {len(r.latencies_ms):,} "
            f"| {ms(fresh.percentile(50))} | {ms(fresh.percentile(99))} | {ms(fresh.max_ms)} | {r.missing} "
            f"| {shown} | {fresh.load_before:.2f} |"
        )
    return lines


def render(stack: Stack, topic: Topic | None, runs: list[Run], fresh: list[Freshness],
           elapsed_s: float, quick: bool) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {now}{' (quick)' if quick else ''}",
        "",
        f"- machine: {os.cpu_count()} CPU(s) ({_cpu_model()}), {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, quixstreams {_version('quixstreams')}, "
        f"confluent-kafka {_version('confluent-kafka')}",
        f"- stack: {stack.describe()}",
        f"- command: `{command_line()}` (whole run {elapsed_s:.0f}s)",
    ]
    if topic is not None:
        s = topic.summary
        lines += [
            f"- topic: {s.produced:,} events ({s.malformed:,} malformed), {topic.spec.cards:,} cards, "
            f"event times over {topic.spec.span_ms // 60_000} min, 4 partitions; produced in "
            f"{topic.produce_s:.1f}s",
            "",
            "### Throughput",
            "",
            *throughput_table(runs),
        ]
        lines += ["", "Emitted values and late events per view (a check that the engines did the same work; "
                  "for the sliding view Freshet keeps only the window ending at each event, the bare app "
                  "counts every window Quix emits):", ""]
        for run in runs:
            emitted = ", ".join(f"{k} {v:,} (late {run.late.get(k, 0):,})" for k, v in sorted(run.emitted.items()))
            lines.append(f"- {run.workload} / {run.config}: {emitted or 'none'}")
    if fresh:
        view = fresh[0].view
        lines += ["", "### Freshness (send -> readable in Redis)", "",
                  f"View {view.name}: {view.window.describe()}, emit={view.emit}, count + sum(amount), "
                  f"rekey={fresh[0].rekey}, Redis and Parquet sinks on; every 50th event sampled.", "",
                  *freshness_table(fresh)]
        warmups = [f"{f.result.warmup_s:.1f}s" for f in fresh if not f.result.error]
        if warmups:
            lines.append(f"\nWarm-up before each measurement (join + first value visible): {', '.join(warmups)}.")
        if any(not f.pipeline_kept_up for f in fresh if not f.result.error):
            lines.append("Where the pipeline did not keep up, latency grew along the run: the figure is "
                         "mostly backlog (queueing), not the pipeline's freshness at a sustainable rate.")
    lines += ["", "### Notes", "", *NOTES, ""]
    return "\n".join(lines)


NOTES = [
    "- Timings vary between runs by several percent or more; one run per configuration unless "
    "`--repeat` was given (then the median, with each run in brackets).",
    "- The load average column is the machine's 1-minute load when a measurement started: anything "
    "well above zero means other work shared the cores (on a 2-core machine that halves what is left).",
    "- Every engine runs in one Python process on one core (Quix Streams processes records "
    "sequentially); the broker, Redis and the benchmark's own threads share the same machine's cores.",
    "- The broker is tansu with in-memory storage, not Kafka: fetch and produce costs differ from a "
    "real cluster, and changelog/repartition topics live in the same memory.",
    "- The sliding 10m window dominates the all-views workload: Quix Streams updates every open "
    "sliding window an event touches, and the distinct-merchant state is a dict copied on each update "
    "(in Freshet and in the bare baseline alike).",
    "- The bare baseline trusts the message key, does a few type checks instead of full schema "
    "validation, has no dead-letter or late topics and no sink; compare it with Freshet rekey=False. "
    "Freshet here writes to Redis (newer-wins Lua script per entity, batched) and to Parquet.",
    "- Freshness includes producer batching (linger 5 ms), broker, consume, the re-key hop "
    "(rekey=True: produce to and consume from the repartition topic, linger 10 ms), processing, the "
    "Redis writer's batching (at most 50 ms) and the 5 ms polling step, with the producer, the "
    "pipeline, the broker and Redis on the same machine.",
    "- tansu was seen to answer a fetch with no data only after fetch.wait.max.ms (librdkafka default "
    "500 ms) even when data arrives meanwhile, where Kafka answers as soon as fetch.min.bytes (1) is "
    "there: each consume hop then adds 0-500 ms (two hops with rekey=True). The fetch.wait.max.ms row "
    "shows the figure with a shorter wait (which makes tansu busier: at 10 ms it used ~70% of a core here).",
    "- At a rate above what one pipeline process sustains on this machine the freshness figure is "
    "backlog, not freshness: see the 'pipeline kept up' column and the latency trend.",
]


def record(section: str, path: Path = RESULTS) -> None:
    if not path.exists():
        path.write_text(HEADER)
    with path.open("a") as handle:
        handle.write("\n" + section)
