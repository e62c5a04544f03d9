"""`python -m bench.run`: throughput (Freshet vs bare Quix Streams) and freshness, in one run.

Starts a local stack (tansu + redis-server) in a temporary directory unless
FRESHET_KAFKA_BOOTSTRAP and FRESHET_REDIS_URL are both set, runs the
measurements, prints a Markdown section on stdout (progress goes to stderr)
and appends it to bench/RESULTS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

from bench.common import say, stack

QUICK_EVENTS = 20_000
QUICK_SECONDS = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from bench.throughput import CONFIGS, DEFAULT_CONFIGS, WORKLOADS

    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events in the throughput topic")
    parser.add_argument("--views", default="all,tumbling",
                        help=f"comma-separated workloads among {', '.join(WORKLOADS)}: all = every example "
                             "view, tumbling = card_spend_5m alone (default: both)")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help=f"comma-separated engine configs among {', '.join(CONFIGS)} "
                             f"(default: {','.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (median reported)")
    parser.add_argument("--rate", default="5000,1000",
                        help="freshness: events per second, a comma-separated list is measured in turn "
                             "(default 5000,1000: the target load, and a load this machine sustains)")
    parser.add_argument("--seconds", type=float, default=20.0, help="freshness: seconds of steady load")
    parser.add_argument("--fetch-wait-ms", type=int, default=50,
                        help="freshness: one more measurement at the lowest rate with the pipeline's "
                             "fetch.wait.max.ms set to this (default 50; 0 skips it)")
    parser.add_argument("--no-rekey-freshness", action="store_true",
                        help="freshness: run the pipeline with rekey=False")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_EVENTS:,} events, {QUICK_SECONDS:g}s of freshness")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = QUICK_EVENTS
        args.seconds = QUICK_SECONDS
    args.workloads = _choices(args.views, list(WORKLOADS), "--views")
    args.config_list = _choices(args.configs, list(CONFIGS), "--configs")
    try:
        args.rates = [int(part) for part in args.rate.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--rate must be integers separated by commas, got {args.rate!r}")
    if not args.rates:
        parser.error("--rate needs at least one rate")
    for name, value in (("--events", args.events), ("--repeat", args.repeat), ("--rate", min(args.rates))):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, got {args.seconds}")
    return args


def freshness_plan(args: argparse.Namespace) -> list[tuple[int, dict[str, int]]]:
    """Each rate with Freshet's consumer defaults, then the lowest rate with a short fetch wait."""
    plan: list[tuple[int, dict[str, int]]] = [(rate, {}) for rate in args.rates]
    if args.fetch_wait_ms > 0:
        plan.append((min(args.rates), {"fetch.wait.max.ms": args.fetch_wait_ms}))
    return plan


def _choices(text: str, allowed: list[str], flag: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"{flag}: unknown or empty {unknown or text!r}; choose among {', '.join(allowed)}")
    return list(dict.fromkeys(chosen))


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args = parse_args(argv)
    from bench.freshness import Freshness, measure_freshness, summarize
    from bench.report import RESULTS, record, render
    from bench.throughput import Run, Topic, make_topic, run_all

    started = time.perf_counter()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="freshet-bench-"))
    topic: Topic | None = None
    runs: list[Run] = []
    fresh: list[Freshness] = []
    say("timings vary from run to run (shared cores, in-memory broker); treat single runs as indicative")
    try:
        with stack(workdir) as running:
            say(f"stack: {running.describe()}: broker {running.kafka_bootstrap}, redis {running.redis_url}")
            if not args.skip_throughput:
                topic = make_topic(running, args.events, run_id)
                runs = run_all(running, topic, args.workloads, args.config_list, args.repeat, workdir)
            for rate, overrides in [] if args.skip_freshness else freshness_plan(args):
                result = measure_freshness(running, rate, args.seconds, workdir, run_id,
                                           rekey=not args.no_rekey_freshness, consumer_overrides=overrides)
                say(f"      {summarize(result)}")
                fresh.append(result)
            section = render(running, topic, runs, fresh, time.perf_counter() - started, args.quick)
    finally:
        if args.keep_workdir:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(section, flush=True)
    if not args.no_record:
        record(section)
        say(f"appended to {RESULTS}")
    failed = any(not r.complete for r in runs) or any(f.result.error for f in fresh)
    say(f"done in {time.perf_counter() - started:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
