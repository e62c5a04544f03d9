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
  changelog topics, that writes nothing. The rate is records / (time of the last
  record processed - time of the first one), sampled every 20 ms from a thread,
  so the consumer-group join and the shutdown are excluded. Two workloads: all
  example views (tumbling 5m + hopping 1h/5m + sliding 10m) and the tumbling
  5m view alone.
- **Freshness.** A child process produces at a steady rate with event time =
  wall clock, into a pipeline running a 1-minute tumbling view that emits on
  every event (`emit="current"`). For every 50th event it polls the entity's
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
    lines = ["| workload | engine | events/s | processing s | wall s (incl. join) | vs bare |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    workloads = list(dict.fromkeys(r.workload for r in runs))
    for workload in workloads:
        mine = [r for r in runs if r.workload == workload]
        bare = _median([r.rate for r in mine if r.config == "bare" and r.complete and r.rate])
        for config in dict.fromkeys(r.config for r in mine):
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
            lines.append(f"| {workload} | {CONFIGS[config]} | {shown} | {seconds or 0:.1f} | {wall or 0:.1f} "
                         f"| {ratio} |")
    return lines


def freshness_table(fresh: Freshness) -> list[str]:
    r = fresh.result
    if r.error:
        return [f"Freshness probe failed: {r.error}"]

    def ms(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "-"

    kept = "yes" if fresh.kept_up else "no"
    return [
        "| view | target rate | achieved | kept up | samples | p50 ms | p99 ms | max ms | unresolved |",
        "| --- | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {fresh.view.name} ({fresh.view.window.describe()}, {fresh.view.emit}, rekey={fresh.rekey}) "
        f"| {fresh.rate:,}/s for {fresh.seconds:g}s | {fresh.achieved_rate:,.0f}/s | {kept} "
        f"(max {r.max_behind_ms:.0f} ms behind) | {len(r.latencies_ms):,} | {ms(fresh.percentile(50))} "
        f"| {ms(fresh.percentile(99))} | {ms(fresh.max_ms)} | {r.missing} |",
    ]


def render(stack: Stack, topic: Topic | None, runs: list[Run], fresh: Freshness | None,
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
        lines += ["", "Emitted values per view (a check that the engines did the same work):", ""]
        for run in runs:
            emitted = ", ".join(f"{k} {v:,}" for k, v in sorted(run.emitted.items()))
            lines.append(f"- {run.workload} / {run.config}: {emitted or 'none'}")
    if fresh is not None:
        lines += ["", "### Freshness (send -> readable in Redis)", "", *freshness_table(fresh)]
        if not fresh.result.error:
            lines.append(f"\nWarm-up (join + first value visible): {fresh.result.warmup_s:.1f}s.")
    lines += ["", "### Notes", "", *NOTES, ""]
    return "\n".join(lines)


NOTES = [
    "- Timings vary between runs by several percent or more; one run per configuration unless "
    "`--repeat` was given (then the median, with each run in brackets).",
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
    "Redis writer's batching (at most 50 ms) and the 5 ms polling step; it is measured under a steady "
    "load well below the throughput limit, on the same machine as the broker.",
]


def record(section: str, path: Path = RESULTS) -> None:
    if not path.exists():
        path.write_text(HEADER)
    with path.open("a") as handle:
        handle.write("\n" + section)
