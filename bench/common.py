"""Shared pieces of the benchmark: where the stack is, the example views, the progress clock."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path

from features.definitions import FeatureView
from features.registry import Registry

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = REPO_ROOT / "examples" / "fraud"
PARTITIONS = 4
TUMBLING_VIEW = "card_spend_5m"


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
    from infra.localstack import start_stack, stop_stack

    stack_dir = workdir / "stack"
    info = start_stack(stack_dir)
    try:
        yield Stack(info.kafka_bootstrap, info.redis_url, started_here=True)
    finally:
        stopped = stop_stack(stack_dir)
        say(f"stopped the local stack (pids {', '.join(map(str, stopped))})")


def example_views(topic: str, names: list[str] | None = None) -> list[FeatureView]:
    """The example repository's views, re-pointed at ``topic`` (as the demo does)."""
    registry = Registry.load(EXAMPLE_REPO)
    views = [v for v in registry.views.values() if names is None or v.name in names]
    if names is not None and len(views) != len(names):
        raise SystemExit(f"unknown view(s) in {names}; the example has {sorted(registry.views)}")
    return [v.model_copy(update={"source": v.source.model_copy(update={"topic": topic})}) for v in views]


class ProgressClock:
    """Samples a run's progress every ``interval_s`` from a thread.

    ``first`` is when ``read()`` was first seen above zero, ``last`` when the
    progress ``signature()`` last changed (the last record processed), and
    ``reached`` when ``read()`` first reached ``target``. ``on_target`` is called
    once at that point; ``on_stall`` once if progress stops for ``stall_s``
    (a run that never finishes must not hang the benchmark).
    """

    def __init__(self, read: Callable[[], int], signature: Callable[[], Hashable], target: int, *,
                 on_target: Callable[[], None] | None = None, on_stall: Callable[[], None] | None = None,
                 stall_s: float = 120.0, interval_s: float = 0.02) -> None:
        self._read = read
        self._signature = signature
        self._target = target
        self._on_target = on_target
        self._on_stall = on_stall
        self._stall_s = stall_s
        self._interval_s = interval_s
        self.first: float | None = None
        self.last: float | None = None
        self.reached: float | None = None
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
            if read >= self._target and self.reached is None:
                self.reached = now
                if self._on_target is not None:
                    self._on_target()
            if now - moved > self._stall_s and not self.stalled:
                self.stalled = True
                say(f"      no progress for {self._stall_s:.0f}s at {read:,}/{self._target:,} records; stopping")
                if self._on_stall is not None:
                    self._on_stall()

    @property
    def seconds(self) -> float | None:
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return self.last - self.first
