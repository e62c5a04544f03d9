"""The re-key stage: source records to the repartition topic, keyed by entity, in a process of its own.

Quix Streams' ``group_by`` sends every record through the application's per-message path twice (the
source record, then its repartition record): on the example views that cost 34 us more per event than
trusting the message key (bench/RESULTS.md, 01:55), more than the window operator itself. The stage
does the first half with plain confluent-kafka calls (:mod:`freshet.pipelines.rekey_router`) in a child
process, so it runs on another core than the application's one interpreter; the Quix application reads
only the repartition topic, which the router writes exactly as ``group_by`` would.

Guarantees, as ``group_by``'s: the router's consumer is a member of the run's consumer group (the
group's committed source offsets, its lag, ``reset`` and the replay handover are unchanged); it commits
source offsets only after the broker acknowledged what it wrote (at least once: a record routed twice
after a crash is skipped by the operator, which knows each key's last source offset per partition).
The router ignores SIGINT/SIGTERM (the run stops it after its own last checkpoint) and stops on its own
when the run's process is gone. It sends its counts (records read, invalid ones by reason) to the
run's :class:`~freshet.pipelines.stats.PipelineStats`; an error stops the run with it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from freshet.features.errors import PipelineError
from freshet.pipelines.rekey_router import RekeyRouter, RouterSettings
from freshet.pipelines.stats import PipelineStats

log = logging.getLogger(__name__)
REPORT_EVERY_S = 0.2
STOP_TIMEOUT_S = 45.0  # the router's last flush may wait FLUSH_TIMEOUT_S for the broker


def repartition_topic_name(group: str, source_topic: str, entity_key: str) -> str:
    """The name Quix Streams gives ``group_by``'s topic (``repartition__<group>--<topic>--<operation>``)."""
    return f"repartition__{group}--{source_topic}--rekey_{entity_key}"


class RekeyStage:
    """The run's handle on the router process."""

    def __init__(self, settings: RouterSettings, stats: PipelineStats,
                 on_failure: Callable[[], None] | None = None) -> None:
        """``on_failure``: called once when the router stopped on an error (the run then stops; ``error``
        says why)."""
        self.topic = settings.topic
        self.error: PipelineError | None = None
        self._settings = settings
        self._stats = stats
        self._on_failure = on_failure
        context = multiprocessing.get_context("spawn")  # the run's threads and Kafka clients stay behind
        self._stop = context.Event()
        self._updates: Any = context.Queue()
        self._process = context.Process(target=route, name="freshet-rekey", daemon=True,
                                        args=(settings, self._stop, self._updates, os.getpid()))
        self._relay = threading.Thread(target=self._receive, name="freshet-rekey-relay", daemon=True)
        self._stopping = False
        self._base: tuple[int, Counter[str]] = (0, Counter())  # the run's counts before this stage started

    def start(self) -> None:
        with self._stats._lock:  # a restarted run keeps counting from where the last attempt was
            self._base = (self._stats.read, Counter(self._stats.invalid))
        self._process.start()
        self._relay.start()

    def stop(self) -> None:
        """Stop the router; what it routed is flushed and committed first, its last counts taken."""
        if self._stopping:
            return
        self._stopping = True
        self._stop.set()
        if self._process.pid is None:  # never started
            self._updates.close()
            return
        self._process.join(STOP_TIMEOUT_S)
        if self._process.is_alive():  # it ignores SIGTERM (see route): kill it
            self._process.kill()
            self._process.join(5)
            self._fail(f"the re-key router did not stop within {STOP_TIMEOUT_S:.0f}s and was killed; what it "
                       "routed since its last commit is routed again by the next run")
        self._relay.join(5)

    def _receive(self) -> None:
        done = False
        while not (done or self._stopping and not self._process.is_alive() and self._updates.empty()):
            if self.error is not None and not self._stopping and self._on_failure is not None:
                # again until the run stops: a stop asked for while the application starts is forgotten
                self._on_failure()
            try:
                item = self._updates.get(timeout=0.2)
            except queue.Empty:
                if not self._process.is_alive() and not self._stopping and self.error is None:
                    self._fail(f"the re-key router process ended unexpectedly (exit code {self._process.exitcode})")
                continue
            if item[0] == "counts":
                read, invalid = self._base
                with self._stats._lock:
                    self._stats.read, self._stats.invalid = read + item[1], invalid + Counter(item[2])
            elif item[0] == "error":
                self._fail(item[1])
            elif item[0] == "done":
                done = True
        if not done and self.error is None:
            log.warning("the re-key router ended without its last report (exit code %s); what it routed since "
                        "its last commit is routed again by the next run", self._process.exitcode)

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = PipelineError(message)
            log.error("%s", message)


def route(settings: RouterSettings, stop: Any, updates: Any, parent: int) -> None:
    """The router process: route until the run says stop (or is gone), reporting counts on the way."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops it after its own last checkpoint
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="freshet-rekey: %(message)s")
    stats = PipelineStats()
    reported = [0.0]

    def report(force: bool = False) -> None:
        now = time.monotonic()
        if force or now - reported[0] >= REPORT_EVERY_S:
            updates.put(("counts", stats.read, dict(stats.invalid)))
            reported[0] = now

    def should_stop() -> bool:
        return bool(stop.is_set()) or os.getppid() != parent

    def last_report(item: tuple[Any, ...]) -> None:
        """The final counts and ``item``, in the run's hands before this process ends: a queue's items
        are written to the pipe by a thread of their own, which a process that just returns may not wait
        for (then the run would miss them). A run that is gone is not waited for (its pipe may be full)."""
        report(force=True)
        updates.put(item)
        if os.getppid() == parent:
            updates.close()
            updates.join_thread()
        else:
            updates.cancel_join_thread()

    try:
        RekeyRouter(settings, stats, should_stop, report).run()
    except BaseException as exc:  # noqa: BLE001 - whatever stopped it goes to the run, which stops too
        last_report(("error", f"the re-key router stopped: {type(exc).__name__}: {exc}"))
        return
    last_report(("done",))
