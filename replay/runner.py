"""Run a replay plan with the batch driver: one worker here, or ``--workers N`` processes.

Partition ``p`` belongs to worker ``p % workers`` (the plan fixes the number, so a
resumed replay splits the same way); each worker keeps its checkpoint in
``<plan state dir>/worker-<i>``. When every worker has finished, the plan's consumer
group gets the end offsets committed, so ``freshet run --from-replay`` continues
exactly there with the replay's window states (the versioning handover).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from freshet.features.definitions import FeatureView
from freshet.features.errors import ReplayError
from freshet.pipelines.offsets import consumer_config
from freshet.pipelines.signal_handlers import STOP_SIGNALS, callers_signal_handlers
from freshet.pipelines.stats import PipelineStats
from freshet.replay.driver import BatchDriver, open_seed_states, write_progress
from freshet.replay.plan import ReplayPlan


class ProgressLine:
    """events/s, per-partition progress and ETA, on one line (a tty) or every few seconds."""

    def __init__(self, plan: ReplayPlan, out: Callable[[str], None] | None = None, every_s: float = 5.0) -> None:
        self.plan = plan
        self.tty = sys.stderr.isatty()
        self.out = out
        self.every_s = every_s
        self.started = time.monotonic()
        self._last_print = self.started  # the first line after every_s, or the final one
        self._samples: list[tuple[float, int]] = []

    def update(self, done: dict[int, int], final: bool = False) -> None:
        now = time.monotonic()
        total_done = sum(done.values())
        self._samples = [s for s in self._samples if now - s[0] <= 10.0] + [(now, total_done)]
        first = self._samples[0]
        rate = (total_done - first[1]) / (now - first[0]) if now > first[0] else 0.0
        if final and now > self.started:
            rate = total_done / (now - self.started)  # the whole replay's rate
        remaining = self.plan.total - total_done
        eta = f"{remaining / rate:,.0f}s" if rate > 0 else "?"
        pct = 100.0 * total_done / self.plan.total if self.plan.total else 100.0
        parts = " ".join(
            f"p{p}:{100.0 * d / max(1, self.plan.end[p] - self.plan.start[p]):.0f}%" for p, d in sorted(done.items()))
        line = (f"replay {pct:5.1f}% {total_done:,}/{self.plan.total:,} events | {rate:,.0f} ev/s | "
                f"ETA {eta} | {parts}")
        if self.out is not None:
            if final or now - self._last_print >= self.every_s:
                self.out(line)
                self._last_print = now
        elif self.tty:
            sys.stderr.write("\r" + line[:200].ljust(120))
            sys.stderr.flush()
            if final:
                sys.stderr.write("\n")
        elif final or now - self._last_print >= self.every_s:
            print(line, file=sys.stderr, flush=True)
            self._last_print = now


def worker_partitions(plan: ReplayPlan, worker: int) -> list[int]:
    return [p for p in range(plan.partitions) if p % plan.workers == worker]


def worker_state_dir(plan: ReplayPlan, worker: int) -> Path:
    return Path(plan.state_dir) / f"worker-{worker}"


def seed_states(plan: ReplayPlan) -> Callable[[str], Any]:
    """The finished replay's window states, for the live run that continues it."""
    return open_seed_states([worker_state_dir(plan, w) for w in range(plan.workers)])


def run_worker(plan: ReplayPlan, views: list[FeatureView], kafka_config: dict[str, Any],
               redis_url: str | None, progress: ProgressLine | None, worker: int = 0, *,
               max_rate: float | None = None, checkpoint_s: float = 2.0,
               stats: PipelineStats | None = None) -> dict[str, Any]:
    """Run this worker's partitions of the plan to their end (or to SIGTERM/SIGINT: resumable).
    ``stats``: the run's counters (for a metrics server); records left per partition land in its lag."""
    parts = worker_partitions(plan, worker)
    state_dir = worker_state_dir(plan, worker)
    progress_file = state_dir / "progress.json"

    def report(done: dict[int, int]) -> None:
        write_progress(progress_file, done)
        if progress is not None:
            progress.update(done)
        if stats is not None:
            stats.lag_by_partition = {(plan.topic, p): max(0, plan.end[p] - done.get(p, plan.start[p])) for p in parts}

    driver = BatchDriver(
        views, kafka_config, topic=plan.topic, start={p: plan.start[p] for p in parts},
        end={p: plan.end[p] for p in parts}, state_dir=state_dir, offline_root=plan.log_root(),
        redis_url=redis_url if plan.online else None, check_keys=plan.rekey and plan.workers > 1,
        progress=report, max_rate=max_rate / plan.workers if max_rate else None, checkpoint_s=checkpoint_s,
        stats=stats,
        max_event_ahead_ms=plan.max_event_ahead_ms)
    with callers_signal_handlers():
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, lambda *_: driver.stop())
        try:
            result = driver.run()  # its loop sets the collector itself (gc_tuning.checkpoint_gc)
        finally:
            driver.close()
    if progress is not None:
        progress.update(read_progress(plan), final=True)
    return result


def read_progress(plan: ReplayPlan) -> dict[int, int]:
    """Records of the plan done per partition, from the workers' progress files."""
    done = {p: 0 for p in range(plan.partitions)}
    for worker in range(plan.workers):
        path = worker_state_dir(plan, worker) / "progress.json"
        try:
            done.update({int(p): d for p, d in json.loads(path.read_text()).items()})
        except (OSError, ValueError):
            continue
    return done


def run_workers(plan: ReplayPlan, command: list[str], progress: ProgressLine,
                env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start one process of ``command`` per worker (each with --worker-id) and follow their progress."""
    procs = [subprocess.Popen([*command, "--worker", f"--worker-id={w}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for w in range(plan.workers)]
    outputs: list[tuple[str, str]] = []
    try:
        while any(p.poll() is None for p in procs):
            progress.update(read_progress(plan))
            time.sleep(0.5)
        progress.update(read_progress(plan), final=True)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            outputs.append(proc.communicate())
    totals: dict[str, Any] = {"workers": plan.workers, "finished": True}
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise ReplayError(f"a replay worker failed (exit {proc.returncode}): {err[-2000:]}")
        stats = json.loads(out[out.index("{"):])
        for key in ("read", "valid", "invalid", "late", "offline_rows", "online_writes"):
            totals[key] = totals.get(key, 0) + int(stats.get(key, 0))
        totals["finished"] = totals["finished"] and bool(stats.get("finished"))
    return totals


def commit_end(kafka_config: dict[str, Any], plan: ReplayPlan) -> None:
    """Commit the plan's end offsets to its group: a live run in that group starts right after the replay."""
    consumer = Consumer(consumer_config(kafka_config, plan.group))
    try:
        offsets = [TopicPartition(plan.topic, p, off) for p, off in plan.end.items() if off > 0]
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()
