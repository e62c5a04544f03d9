"""`python -m bench.run`: every benchmark of Freshet in one run, on one local stack and one topic.

Parts (--parts, default all of them, run in this order): loop (a bare confluent-kafka
loop: the floor), throughput (live `freshet run` path, rekey=True and False, and a bare
Quix Streams app with the same windows), replay (`freshet replay --workers 1` and
`--workers 2` as subprocesses), changelog (changelog records per input record and
state bytes per key of the live runs), empty (whole-command wall times on an empty
topic), memory (peak RSS of a replay over 100,000 cards) and freshness (send ->
readable in Redis at steady rates).

Starts a local stack (tansu + redis-server) in a temporary directory unless
FRESHET_KAFKA_BOOTSTRAP and FRESHET_REDIS_URL are both set, prints a Markdown section
on stdout (progress goes to stderr) and appends it to bench/RESULTS.md unless
--no-record. Timings are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import say, stack
from bench.load import CLIENT_LINGER_MS

PARTS = ("loop", "throughput", "replay", "changelog", "empty", "memory", "freshness")
QUICK = {"events": 20_000, "seconds": 5.0, "bare_events": 5_000, "memory_events": 50_000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from bench.throughput import CONFIGS, DEFAULT_CONFIGS, WORKLOADS

    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts among {', '.join(PARTS)} (default: all)")
    parser.add_argument("--events", type=int, default=None, help="events in the main topic (default 100,000)")
    parser.add_argument("--cards", type=int, default=2_000, help="cards (entity keys) in the main topic")
    parser.add_argument("--views", default="all,tumbling",
                        help=f"comma-separated workloads among {', '.join(WORKLOADS)}: all = every example "
                             "view, tumbling = card_spend_5m alone (default: both)")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help=f"throughput: engine configs among {', '.join(CONFIGS)} "
                             f"(default: {','.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--bare-events", type=int, default=None,
                        help="throughput: the bare Quix runs on the all-views workload stop after this many "
                             "events (Quix's sliding window is slow; default 20,000; 0 = the whole topic)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="throughput and replay: runs per configuration and per replay command (median)")
    parser.add_argument("--commit-interval", type=float, default=None, metavar="SECONDS",
                        help="throughput: the checkpoint interval of the live and bare runs (default: "
                        "`freshet run`'s)")
    parser.add_argument("--replay-workers", default="1,2", help="replay: worker counts (default 1,2)")
    parser.add_argument("--memory-events", type=int, default=None,
                        help="memory: events in the many-keys topic (default 500,000: about 99,300 of the "
                             "100,000 cards occur)")
    parser.add_argument("--memory-cards", type=int, default=100_000, help="memory: cards in that topic")
    parser.add_argument("--rate", default="5000,1000",
                        help="freshness: events per second, a comma-separated list measured in turn")
    parser.add_argument("--seconds", type=float, default=None,
                        help="freshness: seconds of steady load (default 20)")
    parser.add_argument("--freshness-repeat", type=int, default=3,
                        help="freshness: runs of each measurement, each on a new topic and consumer group, "
                             "shown one by one and pooled (default 3: one run holds only about four "
                             "checkpoints, so its p99 varies widely); the extra measurements (--fetch-wait-ms, "
                             "--saturating-linger-ms) run once")
    parser.add_argument("--fetch-wait-ms", type=int, default=0,
                        help="freshness: one more measurement at the lowest rate with the pipeline's "
                             "fetch.wait.max.ms set to this (default 0: skip; the pipeline's default is 25)")
    parser.add_argument("--client-linger-ms", type=int, default=CLIENT_LINGER_MS,
                        help="freshness: the load producer's linger.ms, and the broker floor's (default "
                        f"{CLIENT_LINGER_MS}, as freshet's own producer; see bench.load)")
    parser.add_argument("--saturating-linger-ms", type=int, default=5,
                        help="freshness: one more measurement at the highest rate, each path and the broker "
                        "floor, with the load producer lingering this long (default 5, librdkafka's own: "
                        "more, smaller batches, whose number the local broker's fetches grow with; 0: skip)")
    parser.add_argument("--freshness-paths", default="rekey,key",
                        help="freshness: the pipeline's paths, each measured at each rate: rekey (the re-key "
                        "stage, `freshet run`'s default) and key (`--trust-message-key`); default both")
    parser.add_argument("--no-rekey-freshness", action="store_true",
                        help="freshness: the key path only (same as --freshness-paths key)")
    parser.add_argument("--no-broker-floor", action="store_true",
                        help="freshness: skip the broker's own latency at each rate (bench.broker_hops: one "
                        "and two bare hops, as long as each freshness measurement)")
    parser.add_argument("--skip-throughput", action="store_true",
                        help="same as leaving throughput out of --parts")
    parser.add_argument("--skip-freshness", action="store_true",
                        help="same as leaving freshness out of --parts")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: "
                        + ", ".join(f"{k.replace('_', '-')} {v:,}" for k, v in QUICK.items())
                        + " (unless given)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    defaults = {"events": 100_000, "seconds": 20.0, "bare_events": 20_000, "memory_events": 500_000}
    for name, value in (QUICK if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.part_list = _choices(args.parts, list(PARTS), "--parts")
    if args.skip_throughput and "throughput" in args.part_list:
        args.part_list.remove("throughput")
    if args.skip_freshness and "freshness" in args.part_list:
        args.part_list.remove("freshness")
    args.workloads = _choices(args.views, list(WORKLOADS), "--views")
    args.config_list = _choices(args.configs, list(CONFIGS), "--configs")
    args.rates = _ints(parser, args.rate, "--rate")
    args.fresh_paths = ["key"] if args.no_rekey_freshness else _choices(args.freshness_paths, ["rekey", "key"],
                                                                        "--freshness-paths")
    args.workers = _ints(parser, args.replay_workers, "--replay-workers")
    for name, value in (("--events", args.events), ("--repeat", args.repeat), ("--rate", min(args.rates)),
                        ("--replay-workers", min(args.workers)), ("--memory-events", args.memory_events),
                        ("--memory-cards", args.memory_cards), ("--cards", args.cards),
                        ("--freshness-repeat", args.freshness_repeat)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if args.client_linger_ms < 0 or args.saturating_linger_ms < 0:
        parser.error(f"--client-linger-ms and --saturating-linger-ms must be at least 0, got "
                     f"{args.client_linger_ms} and {args.saturating_linger_ms}")
    if args.seconds <= 0 or args.bare_events < 0:
        parser.error("--seconds must be positive and --bare-events at least 0")
    return args


def _ints(parser: argparse.ArgumentParser, text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"{flag} must be integers separated by commas, got {text!r}")
    if not values:
        parser.error(f"{flag} needs at least one value")
    return values


def _choices(text: str, allowed: list[str], flag: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"{flag}: unknown or empty {unknown or text!r}; choose among {', '.join(allowed)}")
    return list(dict.fromkeys(chosen))


def freshness_plan(args: argparse.Namespace) -> list[tuple[int, dict[str, int], int]]:
    """(rate, consumer overrides, client linger): each rate with Freshet's consumer defaults, then (if
    asked) the lowest rate with another fetch wait, and the highest with the saturating client linger."""
    linger = args.client_linger_ms
    plan: list[tuple[int, dict[str, int], int]] = [(rate, {}, linger) for rate in args.rates]
    if args.fetch_wait_ms > 0:
        plan.append((min(args.rates), {"fetch.wait.max.ms": args.fetch_wait_ms}, linger))
    if args.saturating_linger_ms > 0 and args.saturating_linger_ms != linger:
        plan.append((max(args.rates), {}, args.saturating_linger_ms))
    return plan


def measure(args: argparse.Namespace, running: Any, workdir: Path, run_id: str) -> Any:
    """Every selected part, in order, into one Results."""
    from bench.changelog import measure_changelog
    from bench.common import retargeted_repo
    from bench.freshness import measure_freshness, pooled, summarize
    from bench.loop import measure_loop
    from bench.replays import (
        WORKLOAD_VIEWS,
        check_parity,
        measure_empty,
        measure_memory,
        run_replay,
    )
    from bench.report import Results
    from bench.throughput import make_topic, run_all, run_freshet

    parts = args.part_list
    res = Results()
    if {"loop", "throughput", "replay", "changelog"} & set(parts):
        res.topic = make_topic(running, args.events, run_id, cards=args.cards)
    topic = res.topic

    def loop() -> None:
        if topic is not None:
            res.loop = measure_loop(running, topic.name, topic.records)

    def throughput() -> None:
        if topic is not None:
            if args.commit_interval is not None:
                from bench.throughput import COMMIT_INTERVAL_S

                COMMIT_INTERVAL_S[0] = args.commit_interval
            res.runs = run_all(running, topic, args.workloads, args.config_list, args.repeat, workdir,
                               bare_prefix={"all": args.bare_events})

    def replay() -> None:
        if topic is None:
            return
        repo = retargeted_repo(workdir / "repo-main", topic.name)
        for workload in args.workloads:
            live = next((r for c in ("rekey", "key") for r in res.runs
                         if r.workload == workload and r.config == c and r.complete), None)
            # the repeats outermost: the worker counts take turns, so a slow spell of the machine does not
            # fall on one of them; each run on its own state and log, checked on its own
            for repeat in range(args.repeat):
                for workers in args.workers:
                    run = run_replay(running, repo, workload, workers, workdir)
                    run.repeat = repeat + 1
                    check_parity(run, live.offline_root if live else None, WORKLOAD_VIEWS[workload])
                    res.replays.append(run)

    def changelog() -> None:
        if topic is None:
            return
        if not any(not r.config.startswith("bare") for r in res.runs):
            say("changelog: no live run yet; running all / rekey")
            res.runs.append(run_freshet(running, topic, "all", "rekey", workdir))
        for run in res.runs:
            if run.group:  # a bare run stopped early: per event that reached its windows
                label = f"{run.workload} / {run.config}" + (f" (first {run.windowed:,} events)"
                                                            if run.stopped_early else "")
                res.changelogs.append(measure_changelog(running, label, run.group,
                                                        run.windowed if run.stopped_early else run.records,
                                                        sizes=not run.config.startswith("bare")))

    def empty() -> None:
        res.empty = measure_empty(running, run_id, workdir)

    def memory() -> None:
        res.memory = measure_memory(running, run_id, args.memory_events, args.memory_cards, workdir)

    def freshness() -> None:
        from bench.broker_hops import measure_hops

        for rate, overrides, linger in freshness_plan(args):
            for path in args.fresh_paths:
                runs = []  # the extra measurements (another fetch wait or linger) run once
                repeat = args.freshness_repeat if not overrides and linger == args.client_linger_ms else 1
                for _ in range(repeat):
                    result = measure_freshness(running, rate, args.seconds, workdir, run_id,
                                               rekey=path == "rekey", consumer_overrides=overrides,
                                               client_linger_ms=linger)
                    say(f"      {summarize(result)}")
                    res.fresh.append(result)
                    runs.append(result)
                measured = [run for run in runs if not run.result.error]
                if len(measured) > 1:
                    res.fresh.append(pooled(measured))
                    say(f"      {len(measured)} runs pooled: {summarize(res.fresh[-1])}")
            if not args.no_broker_floor and not overrides:
                for hops in (1, 2):
                    say(f"broker floor: {hops} bare hop(s) at {rate:,}/s for {args.seconds:g}s, producer "
                        f"linger {linger} ms")
                    seconds = max(1, round(args.seconds))
                    windows = measure_hops(running, rate, seconds, hops, window_s=seconds, linger_ms=linger)
                    res.broker_floor.append((rate, hops, linger, windows[0]))

    steps = {"loop": loop, "throughput": throughput, "replay": replay, "changelog": changelog,
             "empty": empty, "memory": memory, "freshness": freshness}
    for name in PARTS:
        if name in parts:
            _guarded(res, name, steps[name])
    return res


def _guarded(res: Any, name: str, step: Any) -> None:
    """One part failing is reported (here and in the section) and the others still run."""
    try:
        step()
    except Exception as exc:
        say(f"part {name} FAILED:\n{traceback.format_exc()}")
        res.errors[name] = f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args = parse_args(argv)
    from bench.report import RESULTS, record, render

    started = time.perf_counter()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="freshet-bench-"))
    say("timings vary from run to run (shared cores, in-memory broker); treat single runs as indicative")
    say(f"parts: {', '.join(args.part_list)}")
    try:
        with stack(workdir) as running:
            say(f"stack: {running.describe()}: broker {running.kafka_bootstrap}, redis {running.redis_url}")
            res = measure(args, running, workdir, run_id)
            section = render(running, res, time.perf_counter() - started, args.quick)
    finally:
        if args.keep_workdir:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(section, flush=True)
    if not args.no_record:
        record(section)
        say(f"appended to {RESULTS}")
    say(f"done in {time.perf_counter() - started:.0f}s")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
