"""The Markdown tables of one benchmark run (bench.report puts them together)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from bench.broker_hops import Window
from bench.changelog import Changelog
from bench.freshness import Freshness
from bench.loop import Loop
from bench.replays import CommandRun, EmptyTopic, Memory
from bench.throughput import CONFIGS, Run


def _median(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v]
    return statistics.median(found) if found else None


def _rate(value: float | None) -> str:
    return f"{value:,.0f}" if value else "-"


def _ratio(value: float | None, base: float | None, mark: str = "") -> str:
    """``value / base`` cut (not rounded) to the digits shown: a ratio shown at a goal's bound is at
    least that (1.4951 shows as 1.49, not 1.50; 0.0996 as 0.099, not 0.100)."""
    if not value or not base:
        return "-"
    ratio = value / base
    digits = 2 if ratio >= 0.1 else 3
    # (the 1e-9: a ratio such as 0.29, 28.999999999999996 hundredths in binary, still shows as 0.29)
    return f"{math.floor(ratio * 10**digits + 1e-9) / 10**digits:.{digits}f}{mark}"


def _mb(kb: int) -> str:
    return f"{kb / 1024:,.0f}"


def _bare_rates(runs: list[Run], workload: str) -> dict[str, float | None]:
    return {name: _median(r.rate for r in runs if r.workload == workload and r.config == name and r.complete)
            for name in ("bare", "bare-rekey")}


def _bare_for(bares: dict[str, float | None], rekey: bool) -> float | None:
    """Re-keying paths compare with the bare app that re-keys too, when it ran."""
    return bares["bare-rekey"] if rekey and bares.get("bare-rekey") else bares["bare"]


def throughput_table(runs: list[Run], replays: list[CommandRun], loop: Loop | None) -> list[str]:
    loop_rate = loop.rate if loop else None
    lines = ["| workload | path | events/s | processing s | events/s incl. start-up | wall s "
             "| vs confluent-kafka loop | vs bare Quix | load avg before |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    if loop is not None and loop.runs:
        seconds = _median(r.seconds for r in loop.runs)
        each = ", ".join(_rate(r) for r in loop.rates)
        loads = ", ".join(f"{r.load_before:.2f}" for r in loop.runs)
        lines.append(f"| any | (d) bare confluent-kafka loop: consume(10,000) + orjson.loads, no group | "
                     f"{_rate(loop_rate)} (median of {each}) | {seconds or 0:.2f} | - | - | 1.00 | - "
                     f"| {loads} |")
    workloads = list(dict.fromkeys([r.workload for r in runs] + [r.workload for r in replays]))
    for workload in workloads:
        mine = [r for r in runs if r.workload == workload]
        bares = _bare_rates(runs, workload)
        prefix = next((r.prefix for r in mine if r.stopped_early), 0)
        for config in dict.fromkeys(r.config for r in mine):
            group = [r for r in mine if r.config == config]
            rate = _median(r.rate for r in group if r.complete)
            shown = _rate(rate)
            if len(group) > 1:
                shown += " (" + ", ".join(_rate(r.rate) for r in group) + ")"
            if config.startswith("bare"):
                path = f"(c) {CONFIGS[config]}"
                if prefix:
                    path += f", **first {prefix:,} events only**"
                vs_bare = _ratio(rate, _bare_for(bares, config == "bare-rekey"))
            else:
                path = f"(a) live {CONFIGS[config]}"
                base = rate
                if prefix:  # compare over the same first events as the bare run
                    base = _median(r.prefix_rate for r in group if r.complete)
                    shown += f"; first {prefix:,}: {_rate(base)}"
                vs_bare = _ratio(base, _bare_for(bares, config == "rekey"))
            if any(not r.complete for r in group):
                shown += " INCOMPLETE: " + "; ".join(r.note for r in group if not r.complete)
            seconds = _median(r.seconds for r in group)
            wall = _median(r.wall_s for r in group)
            incl = _median(r.records / r.wall_s for r in group if r.wall_s and not r.stopped_early)
            loads = ", ".join(f"{r.load_before:.2f}" for r in group)
            lines.append(f"| {workload} | {path} | {shown} | {seconds or 0:.1f} | {_rate(incl)} "
                         f"| {wall or 0:.1f} "
                         f"| {_ratio(rate, loop_rate)} | {vs_bare} | {loads} |")
        mark = "†" if prefix else ""
        for label in dict.fromkeys(r.label for r in replays if r.workload == workload):
            group = [r for r in replays if r.workload == workload and r.label == label]
            rate = _median(r.processing_rate for r in group if r.ok)
            shown = _rate(rate)
            if len(group) > 1:
                shown += " (" + ", ".join(_rate(r.processing_rate) if r.ok else "failed" for r in group) + ")"
            if any(not r.ok for r in group):
                shown += " FAILED: " + "; ".join(r.note for r in group if not r.ok)
            seconds = _median(r.processing_s for r in group if r.ok)
            wall = _median(r.measured.wall_s for r in group if r.ok)
            loads = ", ".join(f"{r.load_before:.2f}" for r in group)
            lines.append(f"| {workload} | (b) {label} (subprocess) | {shown} | {seconds or 0:.1f} "
                         f"| {_rate(_median(r.wall_rate for r in group if r.ok))} | {wall or 0:.1f} "
                         f"| {_ratio(rate, loop_rate)} | {_ratio(rate, bares['bare'], mark)} | {loads} |")
    return lines


def replay_table(replays: list[CommandRun]) -> list[str]:
    lines = ["| workload | command | run | events | wall s | processing s | events/s processing "
             "| events/s between checkpoints | events/s over wall | the command's own s | values written "
             "| peak RSS MB | parity with the live log |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for run in replays:
        parity = ", ".join(f"{k} {v}" for k, v in run.parity.items()) or "-"
        if not run.ok:
            parity = f"FAILED: {run.note}"
        own = f"{run.reported_s:.1f}" if run.reported_s is not None else "-"
        processing = f"{run.processing_s:.1f}" if run.processing_s is not None else "-"
        lines.append(f"| {run.workload} | {run.label} | {run.repeat} | {run.events:,} | {run.measured.wall_s:.1f} "
                     f"| {processing} | {_rate(run.processing_rate)} | {_rate(run.checkpoint_rate)} "
                     f"| {_rate(run.wall_rate)} | {own} | {run.values_written:,} "
                     f"| {_mb(run.measured.max_rss_kb)} | {parity} |")
    return lines


def changelog_table(found: list[Changelog]) -> list[str]:
    lines = ["| run | changelog topics | changelog records | input records | records per input record "
             "| keys | state bytes/key: mean | p50 | p99 | max |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in found:
        if c.error:
            lines.append(f"| {c.label} | failed: {c.error} | | | | | | | | |")
            continue
        s = c.sizes
        sizes = (f"{s.keys:,} | {s.mean:,.0f} | {s.p50:,.0f} | {s.p99:,.0f} | {s.largest:,}" if s
                 else "- | - | - | - | -")
        per = f"{c.per_event:.3f}" if c.per_event is not None else "-"
        lines.append(f"| {c.label} | {len(c.topics)} | {c.records:,} | {c.input_records:,} | {per} "
                     f"| {sizes} |")
    return lines


def memory_table(memory: Memory, replays: list[CommandRun], empty: EmptyTopic | None) -> list[str]:
    run = memory.run
    lines = ["| replay (example views, 1 worker) | events | distinct keys | wall s | events/s processing "
             "| peak RSS MB |", "| --- | ---: | ---: | ---: | ---: | ---: |",
             f"| {memory.topic} ({memory.cards:,} cards) | {memory.events:,} | {memory.distinct_keys:,} "
             f"| {run.measured.wall_s:.1f} | {_rate(run.processing_rate)} | {_mb(run.measured.max_rss_kb)}"
             f"{'' if run.ok else ' FAILED: ' + run.note} |"]
    main = [r for r in replays if r.workload == "all" and r.workers == 1]
    if main:  # the median of its runs (bench.run's --repeat), those that failed said so
        done = [r for r in main if r.ok]
        failed = len(main) - len(done)
        shown = f" ({failed} of {len(main)} runs FAILED)" if failed else ""
        rss = _median(r.measured.max_rss_kb for r in done)
        wall = _median(r.measured.wall_s for r in done)
        runs = f", median of {len(done)} runs" if len(done) > 1 else ""
        lines.append(f"| the main topic{runs}{shown} | {main[0].events:,} | - | {wall or 0:.1f} "
                     f"| {_rate(_median(r.processing_rate for r in done))} | {_mb(int(rss or 0))} |")
    base = next((r for r in (empty.runs if empty else []) if r.workers == 1 and r.ok), None)
    if base is not None:
        lines.append(f"| the empty topic | 0 | 0 | {base.measured.wall_s:.1f} | - "
                     f"| {_mb(base.measured.max_rss_kb)} |")
        if run.ok and memory.distinct_keys:
            extra = (run.measured.max_rss_kb - base.measured.max_rss_kb) * 1024 / memory.distinct_keys
            lines += ["", f"Peak RSS above the empty-topic replay, per distinct key: {extra:,.0f} bytes "
                      "(an upper bound on the state a replay keeps per key: it includes buffered output "
                      "rows too)."]
    return lines


def _last_log_line(stderr: str) -> str:
    """The command's last log message (``<date> <time> LEVEL logger: message``), without the time."""
    for line in reversed(stderr.splitlines()):
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in ("INFO", "WARNING", "ERROR"):
            return parts[3].replace("|", "/")
    return "-"


def empty_table(empty: EmptyTopic) -> list[str]:
    lines = ["| command (whole process, empty topic) | wall s | exit | peak RSS MB | its last log line |",
             "| --- | ---: | ---: | ---: | --- |"]
    for run in empty.runs:
        lines.append(f"| {run.label} | {run.measured.wall_s:.1f} | {run.measured.returncode}"
                     f"{'' if run.ok else ': ' + run.note} | {_mb(run.measured.max_rss_kb)} "
                     f"| {_last_log_line(run.measured.stderr)} |")
    return lines


def freshness_table(results: list[Freshness]) -> list[str]:
    def ms(value: float | None) -> str:
        return f"{value:,.1f}" if value is not None else "-"

    lines = [
        "| target rate | path | pipeline consumer | client linger | producer achieved | pipeline kept up | samples "
        "| p50 ms | p99 ms | max ms | unresolved | median first -> last tenth | load avg before |",
        "| ---: | --- | --- | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fresh in results:
        r = fresh.result
        if r.error:
            lines.append(f"| {fresh.rate:,}/s | {fresh.path} | {fresh.consumer} | {fresh.client_linger_ms} ms "
                         f"| probe failed: {r.error} | | | | | | | | |")
            continue
        trend = fresh.trend
        shown = f"{trend[0]:,.0f} -> {trend[1]:,.0f} ms" if trend else "-"
        producer = f"{fresh.achieved_rate:,.0f}/s{'' if fresh.kept_up else ' (behind)'}"
        lines.append(
            f"| {fresh.rate:,}/s for {fresh.seconds:g}s | {fresh.label} | {fresh.consumer} "
            f"| {fresh.client_linger_ms} ms | {producer} (max {r.max_behind_ms:,.0f} ms late) "
            f"| {'yes' if fresh.pipeline_kept_up else '**no**'} | {len(r.latencies_ms):,} "
            f"| {ms(fresh.percentile(50))} | {ms(fresh.percentile(99))} | {ms(fresh.max_ms)} | {r.missing} "
            f"| {shown} | {fresh.load_before:.2f} |"
        )
    return lines


def broker_floor_table(floor: list[tuple[int, int, int, Window]]) -> list[str]:
    """(rate, hops, the producer's linger ms, latencies) per row."""
    lines = ["| rate | producer linger | bare hops | records | p50 ms | p99 ms | max ms "
             "| broker CPU (one core = 100%) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for rate, hops, linger, window in floor:
        cpu = f"{window.broker_cpu:.0%}" if window.broker_cpu is not None else "-"
        lines.append(f"| {rate:,}/s | {linger} ms | {hops} | {len(window.latencies_ms):,} | {window.percentile(50):.0f} "
                     f"| {window.percentile(99):.0f} | {max(window.latencies_ms, default=float('nan')):.0f} | {cpu} |")
    return lines
