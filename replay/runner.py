"""Run a replay plan: the live topology, a fresh group and state, stopping exactly at the plan's end.

One worker runs in this process; ``--workers N`` starts N processes in the
plan's consumer group (each one the same command with ``--worker``) so a
replay uses more cores and partitions, while this process shows progress.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from features.definitions import FeatureView
from features.errors import ReplayError
from pipelines.bounds import EndGuard
from pipelines.offsets import EndOffsetProbe
from pipelines.runner import run_pipeline
from pipelines.topology import Pipeline, PipelineConfig, build_pipeline
from replay.plan import ReplayPlan


class GroupProgress:
    """Reads the plan group's committed offsets (any process may ask; it does not join the group)."""

    def __init__(self, kafka_config: dict[str, Any], plan: ReplayPlan) -> None:
        self.plan = plan
        self._consumer = Consumer({**kafka_config, "group.id": plan.group, "enable.auto.commit": False,
                                   "allow.auto.create.topics": False})
        self._probe = EndOffsetProbe(kafka_config)

    def source_done(self) -> dict[int, int]:
        """Records of the plan done per partition (committed - start, within the plan)."""
        committed = self._consumer.committed(
            [TopicPartition(self.plan.topic, p) for p in range(self.plan.partitions)], timeout=10)
        done = {}
        for tp in committed:
            start, end = self.plan.start[tp.partition], self.plan.end[tp.partition]
            position = tp.offset if tp.offset >= 0 else start
            done[tp.partition] = max(0, min(position, end) - start)
        return done

    def finished(self, internal_topics: list[str]) -> bool:
        done = self.source_done()
        if any(done[p] < self.plan.end[p] - self.plan.start[p] for p in done):
            return False
        tps = [(t, p) for t in internal_topics for p in range(self.plan.partitions)]
        if not tps:
            return True
        ends = self._probe.end_offsets(tps)
        committed = self._consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        return all(max(tp.offset, 0) >= ends[(tp.topic, tp.partition)] for tp in committed)

    def close(self) -> None:
        self._probe.close()
        self._consumer.close()


class ProgressLine:
    """events/s, per-partition progress and ETA, on one line (a tty) or every few seconds."""

    def __init__(self, plan: ReplayPlan, out: Callable[[str], None] | None = None, every_s: float = 5.0) -> None:
        self.plan = plan
        self.tty = sys.stderr.isatty()
        self.out = out
        self.every_s = every_s
        self.started = time.monotonic()
        self._last_print = 0.0
        self._samples: list[tuple[float, int]] = []

    def update(self, done: dict[int, int], final: bool = False) -> None:
        now = time.monotonic()
        total_done = sum(done.values())
        self._samples = [s for s in self._samples if now - s[0] <= 10.0] + [(now, total_done)]
        first = self._samples[0]
        rate = (total_done - first[1]) / (now - first[0]) if now > first[0] else 0.0
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


def pipeline_config(plan: ReplayPlan, kafka_config: dict[str, Any], redis_url: str | None,
                    worker_id: str | None = None) -> PipelineConfig:
    # each worker process has its own state dir: a partition it takes over is recovered from the changelog
    state_dir = Path(plan.state_dir) / f"worker-{worker_id}" if worker_id else Path(plan.state_dir)
    return PipelineConfig(
        kafka_config=kafka_config, consumer_group=plan.group, state_dir=state_dir,
        offline_root=Path(plan.offline_root), redis_url=redis_url if plan.online else None,
        rekey=plan.rekey, end_guard=EndGuard(plan.topic, plan.start, plan.end),
    )


def internal_topics(pipeline: Pipeline) -> list[str]:
    return list(pipeline.app._topic_manager.repartition_topics)


def run_worker(plan: ReplayPlan, views: list[FeatureView], kafka_config: dict[str, Any],
               redis_url: str | None, progress: ProgressLine | None, worker_id: str | None = None) -> dict[str, Any]:
    """Run the plan in this process until the whole group has finished it."""
    pipeline = build_pipeline(views, pipeline_config(plan, kafka_config, redis_url, worker_id))
    group = GroupProgress(kafka_config, plan)
    topics = internal_topics(pipeline)
    stop = threading.Event()

    def watch() -> None:
        confirmations = 0
        while not stop.wait(0.5):
            try:
                if progress is not None:
                    progress.update(group.source_done())
                confirmations = confirmations + 1 if group.finished(topics) else 0
            except Exception:  # a failed progress check must not kill the replay
                confirmations = 0
                continue
            if confirmations >= 2:
                pipeline.app.stop()
                return

    watcher = threading.Thread(target=watch, name="freshet-replay-watch", daemon=True)
    watcher.start()
    try:
        stats = run_pipeline(pipeline, until_caught_up=False, interval_s=3600)
    finally:
        stop.set()
        watcher.join(timeout=10)
    if progress is not None:
        progress.update(group.source_done(), final=True)
    finished = group.finished(topics)
    group.close()
    return {**stats, "finished": finished}


def run_workers(plan: ReplayPlan, workers: int, command: list[str], kafka_config: dict[str, Any],
                progress: ProgressLine) -> dict[str, Any]:
    """Start ``workers`` processes of ``command`` (each with --worker) and follow the group's progress."""
    procs = [subprocess.Popen([*command, "--worker", f"--worker-id={uuid.uuid4().hex[:6]}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    group = GroupProgress(kafka_config, plan)
    try:
        while any(p.poll() is None for p in procs):
            progress.update(group.source_done())
            time.sleep(1.0)
        progress.update(group.source_done(), final=True)
    finally:
        group.close()
    totals: dict[str, Any] = {"workers": workers}
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise ReplayError(f"a replay worker failed (exit {proc.returncode}): {err[-2000:]}")
        stats = json.loads(out[out.index("{"):])
        for key in ("read", "valid", "invalid", "late", "offline_rows", "online_writes"):
            totals[key] = totals.get(key, 0) + int(stats.get(key, 0))
        totals["finished"] = totals.get("finished", True) and bool(stats.get("finished"))
    return totals
