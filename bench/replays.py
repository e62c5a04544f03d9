"""`freshet replay` and whole-command runs, as subprocesses of the real CLI.

Each run is `python -m freshet ...` on a copy of examples/fraud retargeted to
the benchmark's topic, with its own offline root and state directory
(FRESHET_OFFLINE_ROOT / FRESHET_STATE_DIR), timed from start to exit; its peak RSS
comes from `/usr/bin/time` (see :func:`bench.common.run_measured`).

A replay's processing time is watched from outside, every 20 ms, in its state
directory: it starts when the first worker's checkpoint directory
(``<state>/<plan group>/worker-<i>``, made when the batch driver is built, after
interpreter start, imports and planning) appears, and ends when the last worker's
``progress.json`` last changes (written after its final checkpoint). As a cross-check,
the rate between checkpoints (progress files are rewritten every 2 s): per worker,
events done between its first and last checkpoint / the time between them, summed over
the workers (none when a worker finished within one checkpoint interval).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CLI, TUMBLING_VIEW, Measured, Stack, cli_env, load_average, run_measured, say

WORKLOAD_VIEWS = {"all": ["card_spend_5m", "card_spend_1h", "card_activity_10m"], "tumbling": [TUMBLING_VIEW]}


@dataclass
class CommandRun:
    """One whole CLI command (a replay, a live run on an empty topic, ...)."""

    label: str
    workload: str
    measured: Measured
    load_before: float
    events: int = 0  # events the command read, from its JSON summary
    workers: int = 0
    reported_s: float | None = None  # the command's own "seconds" (after imports)
    processing_s: float | None = None  # first worker's driver built -> last worker's final checkpoint
    checkpoint_rate: float | None = None  # between the first and the last checkpoint
    values_written: int = 0
    offline_root: Path | None = None
    parity: dict[str, str] = field(default_factory=dict)  # view -> outcome against the live log
    repeat: int = 1  # which run of the same command this is (bench.run's --repeat)

    @property
    def ok(self) -> bool:
        return self.measured.returncode == 0

    @property
    def processing_rate(self) -> float | None:
        seconds = self.processing_s
        return self.events / seconds if self.events and seconds else None

    @property
    def wall_rate(self) -> float | None:
        return self.events / self.measured.wall_s if self.events and self.measured.wall_s > 0 else None

    @property
    def note(self) -> str:
        return "" if self.ok else f"exit {self.measured.returncode}: {self.measured.tail(300)}"


class WorkerClock:
    """Follows the replay workers' checkpoint directories and progress files under a state root."""

    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root
        self.started: dict[Path, float] = {}  # worker directory -> when it was first seen
        self.samples: dict[Path, list[tuple[float, int]]] = {}  # worker directory -> (time, events done)

    def tick(self) -> None:
        now = time.perf_counter()
        for worker in self.state_root.glob("*/worker-*"):
            self.started.setdefault(worker, now)
            try:
                done = sum(int(v) for v in json.loads((worker / "progress.json").read_text()).values())
            except (OSError, ValueError):
                continue  # not written yet, or being replaced: the next tick sees it
            mine = self.samples.setdefault(worker, [])
            if not mine or done != mine[-1][1]:
                mine.append((now, done))

    @property
    def processing_s(self) -> float | None:
        ends = [samples[-1][0] for samples in self.samples.values() if samples]
        if not self.started or not ends:
            return None
        return max(ends) - min(self.started.values())

    @property
    def checkpoint_rate(self) -> float | None:
        rates = []
        for samples in self.samples.values():
            samples = [x for x in samples if x[1]]
            if not samples:
                continue  # a worker with nothing to do
            (t0, n0), (t1, n1) = samples[0], samples[-1]
            if t1 <= t0:
                return None  # it finished within one checkpoint interval
            rates.append((n1 - n0) / (t1 - t0))
        return sum(rates) if rates else None


def run_replay(stack: Stack, repo: Path, workload: str, workers: int, workdir: Path,
               label: str | None = None) -> CommandRun:
    run_dir = workdir / f"replay-{workload}-w{workers}-{uuid.uuid4().hex[:6]}"
    offline, state = run_dir / "offline", run_dir / "state"
    cmd = [*CLI, "replay", "--repo", str(repo), *[x for v in WORKLOAD_VIEWS[workload] for x in ("--view", v)],
           "--workers", str(workers), "--offline-root", str(offline)]
    clock = WorkerClock(state)
    label = label or f"`freshet replay --workers {workers}`"
    say(f"  {workload} / {label}")
    load = load_average()
    measured = run_measured(cmd, cli_env(stack, offline, state), run_dir, on_tick=clock.tick)
    summary = measured.json()
    run = CommandRun(label, workload, measured, load, events=_int(summary.get("read")), workers=workers,
                     reported_s=_float(summary.get("seconds")), processing_s=clock.processing_s,
                     checkpoint_rate=clock.checkpoint_rate,
                     values_written=_int(summary.get("values_written")),
                     offline_root=offline)
    shown = (f"{run.processing_rate:,.0f} events/s over {run.processing_s:.1f}s of processing; "
             if run.processing_rate and run.processing_s else "")
    if run.checkpoint_rate:
        shown += f"{run.checkpoint_rate:,.0f} events/s between checkpoints; "
    say(f"      {shown}{run.events:,} events in {measured.wall_s:.1f}s wall, peak RSS "
        f"{measured.max_rss_mb:,.0f} MB" + ("" if run.ok else f"; FAILED: {run.note}"))
    return run


def provision_empty(stack: Stack, run_id: str, what: str) -> str:
    from bench.common import PARTITIONS
    from freshet.infra.topics import provision_topics, source_topic_specs

    topic = f"bench-{run_id}.{what}-{uuid.uuid4().hex[:4]}"
    provision_topics(stack.kafka_config, source_topic_specs(topic, PARTITIONS))
    return topic


def check_parity(run: CommandRun, live_offline: Path | None, views: list[str]) -> None:
    """Compare the replay's log with a live run's, view by view (rows matched by entity, window, offset)."""
    if live_offline is None or run.offline_root is None or not run.ok:
        return
    try:
        from freshet.replay.parity import compare

        for view in views:
            report = compare(view, live_offline, run.offline_root)
            run.parity[view] = "OK" if report.equal else (
                f"{len(report.missing)} missing, {len(report.extra)} extra, "
                f"{len(report.different)} different")
    except Exception as exc:  # a changed parity API must not lose the rest of the run
        run.parity["error"] = f"{type(exc).__name__}: {exc}"


def run_cli(stack: Stack, label: str, workload: str, args: list[str], workdir: Path) -> CommandRun:
    """A whole `freshet ...` command (e.g. `run --until-caught-up` on an empty topic)."""
    run_dir = workdir / f"cli-{uuid.uuid4().hex[:6]}"
    say(f"  {label}")
    load = load_average()
    measured = run_measured([*CLI, *args], cli_env(stack, run_dir / "offline", run_dir / "state"), run_dir,
                            timeout_s=600)
    summary = measured.json()
    run = CommandRun(label, workload, measured, load, events=_int(summary.get("read")))
    say(f"      {measured.wall_s:.1f}s wall (exit {measured.returncode}), peak RSS "
        f"{measured.max_rss_mb:,.0f} MB" + ("" if run.ok else f"; FAILED: {run.note}"))
    return run


@dataclass
class EmptyTopic:
    topic: str
    runs: list[CommandRun]


def measure_empty(stack: Stack, run_id: str, workdir: Path) -> EmptyTopic:
    """Whole-command wall times on a freshly provisioned, empty topic."""
    from bench.common import retargeted_repo

    topic = provision_empty(stack, run_id, "empty")
    repo = retargeted_repo(workdir / f"repo-{topic}", topic)
    say(f"empty topic {topic}: whole commands")
    runs = [
        run_cli(stack, "`freshet validate` (interpreter, imports, repository: the floor)", "all",
                ["validate", "--repo", str(repo)], workdir),
        run_cli(stack, "`freshet run --until-caught-up`", "all",
                ["run", "--repo", str(repo), "--until-caught-up",
                 "--group", f"bench-empty-{uuid.uuid4().hex[:6]}"],
                workdir),
        run_replay(stack, repo, "all", 1, workdir, label="`freshet replay --workers 1`"),
        run_replay(stack, repo, "all", 2, workdir, label="`freshet replay --workers 2`"),
    ]
    return EmptyTopic(topic, runs)


@dataclass
class Memory:
    topic: str
    events: int
    cards: int
    distinct_keys: int
    run: CommandRun


def distinct_keys(spec: Any) -> int:
    """Entities among the valid events of the synthetic stream (it is deterministic for a seed)."""
    from freshet.synthetic import generate

    return len({key for key, _value, kind in generate(spec) if kind is None})


def measure_memory(stack: Stack, run_id: str, events: int, cards: int, workdir: Path) -> Memory:
    """Peak RSS of `freshet replay` (example views, one worker) over a topic with many keys."""
    from bench.common import retargeted_repo
    from bench.throughput import make_topic

    topic = make_topic(stack, events, run_id, cards=cards, suffix=f"keys{cards}")
    keys = distinct_keys(topic.spec)
    say(f"memory: {keys:,} distinct keys among {topic.summary.valid:,} valid events")
    repo = retargeted_repo(workdir / f"repo-{topic.name}", topic.name)
    run = run_replay(stack, repo, "all", 1, workdir)
    return Memory(topic.name, topic.records, cards, keys, run)


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
