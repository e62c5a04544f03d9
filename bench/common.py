"""Shared pieces of the benchmark: where the stack is, the example views, the progress clock,
a retargeted copy of the example repository and measured subprocesses."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path

from freshet.features.definitions import FeatureView
from freshet.features.registry import Registry

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = REPO_ROOT / "examples" / "fraud"
PARTITIONS = 4
TUMBLING_VIEW = "card_spend_5m"
CLI = [sys.executable, "-m", "freshet"]


def load_average() -> float:
    """The 1-minute load average (other work on the machine skews every figure)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def say(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the Markdown section."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Stack:
    kafka_bootstrap: str
    redis_url: str
    started_here: bool
    broker_pid: int | None = None  # when started here: its CPU can be sampled (bench.broker_hops)

    @property
    def kafka_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.kafka_bootstrap}

    def describe(self) -> str:
        if self.started_here:
            return "local stack started by the benchmark (tansu broker, in-memory storage + redis-server)"
        return f"configured stack (FRESHET_KAFKA_BOOTSTRAP={self.kafka_bootstrap}, FRESHET_REDIS_URL)"


@contextlib.contextmanager
def stack(workdir: Path) -> Iterator[Stack]:
    """The configured stack if both FRESHET_* variables are set, else a local one stopped on exit."""
    bootstrap = os.environ.get("FRESHET_KAFKA_BOOTSTRAP", "").strip()
    redis_url = os.environ.get("FRESHET_REDIS_URL", "").strip()
    if bootstrap and redis_url:
        yield Stack(bootstrap, redis_url, started_here=False)
        return
    from freshet.infra.localstack import start_stack, stop_stack

    stack_dir = workdir / "stack"
    info = start_stack(stack_dir)
    try:
        yield Stack(info.kafka_bootstrap, info.redis_url, started_here=True, broker_pid=info.broker_pid)
    finally:
        stopped = stop_stack(stack_dir)
        say(f"stopped the local stack (pids {', '.join(map(str, stopped))})")


def bench_as_of() -> str | None:
    """``FRESHET_BENCH_AS_OF=last_event|request``: run the example views read that way (default: as the
    repository says, request since 0.4), to measure what request-time views cost."""
    value = os.environ.get("FRESHET_BENCH_AS_OF", "").strip() or None
    if value not in (None, "last_event", "request"):
        raise SystemExit(f"FRESHET_BENCH_AS_OF={value!r}: use last_event or request")
    return value


def example_views(topic: str, names: list[str] | None = None) -> list[FeatureView]:
    """The example repository's views, re-pointed at ``topic`` (as the demo does)."""
    registry = Registry.load(EXAMPLE_REPO)
    views = [v for v in registry.views.values() if names is None or v.name in names]
    if names is not None and len(views) != len(names):
        raise SystemExit(f"unknown view(s) in {names}; the example has {sorted(registry.views)}")
    as_of = bench_as_of()
    return [v.model_copy(update={"source": v.source.model_copy(update={"topic": topic}),
                                 **({"as_of": as_of} if as_of else {})}) for v in views]


def retargeted_repo(dest: Path, topic: str) -> Path:
    """A copy of the example repository whose source reads ``topic`` (no lock file: the topic is
    part of a view's fingerprint, so the copy's views are simply new)."""
    shutil.copytree(EXAMPLE_REPO, dest, ignore=shutil.ignore_patterns("freshet.lock", "__pycache__"))
    for path in dest.iterdir():
        if path.suffix in (".py", ".yaml", ".yml"):
            text = path.read_text()
            changed = re.sub(r"""(\btopic\s*[=:]\s*["']?)transactions(["']?)""", rf"\g<1>{topic}\g<2>", text)
            if (as_of := bench_as_of()) is not None:
                changed = re.sub(r"""(\bas_of\s*[=:]\s*["']?)request(["']?)""", rf"\g<1>{as_of}\g<2>", changed)
            if changed != text:
                path.write_text(changed)
    topics = set(Registry.load(dest).views_by_topic(None))
    if topics != {topic}:
        raise SystemExit(f"could not retarget the example repository to {topic}: its views read {topics}")
    return dest


def cli_env(stack: Stack, offline_root: Path, state_dir: Path) -> dict[str, str]:
    """The environment of a `freshet` subprocess on the benchmark's stack."""
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": pythonpath, "FRESHET_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "FRESHET_REDIS_URL": stack.redis_url, "FRESHET_OFFLINE_ROOT": str(offline_root),
            "FRESHET_STATE_DIR": str(state_dir)}


@dataclass
class Measured:
    """One finished subprocess: wall time, exit code, output, and its peak RSS."""

    wall_s: float
    returncode: int
    stdout: str
    stderr: str
    max_rss_kb: int  # the command's ru_maxrss: the largest of it and the children it waited for (0: unknown)

    @property
    def max_rss_mb(self) -> float:
        return self.max_rss_kb / 1024

    def json(self) -> dict[str, object]:
        """The JSON object the command printed on stdout ({} if none)."""
        import json

        start = self.stdout.find("{")
        if start < 0:
            return {}
        try:
            found = json.loads(self.stdout[start:])
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def tail(self, chars: int = 600) -> str:
        return " ".join(self.stderr[-chars:].split())


GNU_TIME = Path("/usr/bin/time")
# without /usr/bin/time: a small wrapper that runs the command and writes its children's ru_maxrss
RSS_WRAPPER = ("import resource, subprocess, sys\n"
               "code = subprocess.call(sys.argv[2:])\n"
               "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
               "sys.exit(code)\n")


def _rss_command(cmd: list[str], rss_file: Path) -> list[str]:
    """``cmd`` behind a small process that reports its peak RSS. Not ``wait4`` on our own child: a
    child forked from this (large) process keeps this process's RSS as its high-water mark across exec."""
    if GNU_TIME.exists():
        return [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *cmd]
    return [sys.executable, "-c", RSS_WRAPPER, str(rss_file), *cmd]


def _read_rss(rss_file: Path) -> int:
    try:
        lines = rss_file.read_text().split()
        return int(lines[-1]) if lines else 0
    except (OSError, ValueError):
        return 0


def run_measured(cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 3600.0,
                 on_tick: Callable[[], None] | None = None) -> Measured:
    """Run ``cmd`` to its end: wall time, output, and peak RSS (`/usr/bin/time -f %M` when there,
    the figure `/usr/bin/time -v` prints as "Maximum resident set size"). ``on_tick`` is called
    every 20 ms while it runs."""
    cwd.mkdir(parents=True, exist_ok=True)
    stem = cwd / f"cmd-{time.monotonic_ns()}"
    out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
    rss_path = stem.with_suffix(".rss")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        # its own session: on a timeout the whole command (and its workers) is stopped by our child's pgid
        proc = subprocess.Popen(_rss_command(cmd, rss_path), env=env, cwd=cwd, stdout=out, stderr=err,
                                start_new_session=True)
        while proc.poll() is None:
            if on_tick is not None:
                on_tick()
            if time.perf_counter() - started > timeout_s:
                say(f"      {cmd[3:5]} still running after {timeout_s:.0f}s: stopping it")
                os.killpg(proc.pid, 9)
                proc.wait()
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
    if on_tick is not None:
        on_tick()
    return Measured(wall, proc.returncode, out_path.read_text(errors="replace"),
                    err_path.read_text(errors="replace"), _read_rss(rss_path))


class ProgressClock:
    """Samples a run's progress every ``interval_s`` from a thread.

    ``first`` is when ``read()`` was first seen above zero, ``last`` when the
    progress ``signature()`` last changed (the last record processed), and
    ``reached`` when ``read()`` first reached ``target``. ``on_target`` is called
    once at that point; ``on_stall`` once if progress stops for ``stall_s``
    (a run that never finishes must not hang the benchmark). With ``mark=(count, n)``,
    ``marked`` is when ``count()`` first reached ``n`` and ``marked_count`` its value then
    (a run's rate over its first ``n`` events); ``on_mark`` is called once then.
    """

    def __init__(self, read: Callable[[], int], signature: Callable[[], Hashable], target: int, *,
                 on_target: Callable[[], None] | None = None, on_stall: Callable[[], None] | None = None,
                 stall_s: float = 120.0, interval_s: float = 0.02,
                 mark: tuple[Callable[[], int], int] | None = None,
                 on_mark: Callable[[], None] | None = None) -> None:
        self._read = read
        self._signature = signature
        self._target = target
        self._on_target = on_target
        self._on_stall = on_stall
        self._stall_s = stall_s
        self._interval_s = interval_s
        self._mark = mark
        self._on_mark = on_mark
        self.first: float | None = None
        self.last: float | None = None
        self.reached: float | None = None
        self.marked: float | None = None
        self.marked_count = 0
        self.stalled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        previous: Hashable = None
        moved = time.perf_counter()
        while not self._stop.wait(self._interval_s):
            now = time.perf_counter()
            read = self._read()
            signature = self._signature()
            if read > 0 and self.first is None:
                self.first = now
            if signature != previous:
                previous = signature
                moved = now
                if read > 0:
                    self.last = now
            if self._mark is not None and self.marked is None:
                count = self._mark[0]()
                if count >= self._mark[1]:
                    self.marked, self.marked_count = now, count
                    if self._on_mark is not None:
                        self._on_mark()
            if read >= self._target and self.reached is None:
                self.reached = now
                if self._on_target is not None:
                    self._on_target()
            if now - moved > self._stall_s and not self.stalled:
                self.stalled = True
                say(f"      no progress for {self._stall_s:.0f}s at {read:,}/{self._target:,} records; "
                    "stopping")
                if self._on_stall is not None:
                    self._on_stall()

    @property
    def seconds(self) -> float | None:
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return self.last - self.first

    @property
    def mark_rate(self) -> float | None:
        """Events per second over the first ``n`` events (``mark``), if reached."""
        if self.first is None or self.marked is None or self.marked <= self.first:
            return None
        return self.marked_count / (self.marked - self.first)
