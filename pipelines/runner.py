"""Run a built pipeline: progress every few seconds, optional stop once caught up.

Quix Streams' own signal handlers turn SIGTERM/SIGINT into a graceful stop: the
last checkpoint flushes the sinks (Redis, Parquet, DLQ/late) and commits. Once the run
ends, the handlers the caller had are put back (pipelines.signal_handlers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from freshet.features.errors import PipelineError
from freshet.pipelines.gc_tuning import checkpoint_gc
from freshet.pipelines.offsets import GroupLag, Lag
from freshet.pipelines.signal_handlers import callers_signal_handlers
from freshet.pipelines.topology import Pipeline

log = logging.getLogger("freshet.run")
LAG_WAIT_MAX_S = 1.0


class ProgressMonitor:
    """Logs throughput and lag; stops the app once caught up if asked to."""

    def __init__(self, pipeline: Pipeline, *, until_caught_up: bool, interval_s: float = 5.0,
                 check_s: float = 0.25, report: Callable[[str], None] | None = None) -> None:
        self.pipeline = pipeline
        self.until_caught_up = until_caught_up
        self.interval_s = interval_s
        self.check_s = check_s
        self.report = report or log.info
        self.caught_up = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="freshet-progress", daemon=True)
        self._last_report = time.monotonic()
        self._last_read = 0
        self._confirmations = 0
        # while far behind, measuring the lag every check_s only costs the broker and this process
        # work: the next measurement waits for a part of the time the lag needs at the current rate
        self._next_lag_at = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self._lag = GroupLag(pipeline.kafka_config, pipeline.consumer_group, pipeline.topics)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self._lag.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.check_s):
            try:
                self._tick()
            except Exception as exc:  # progress must never kill the pipeline
                log.debug("progress check failed: %s", str(exc))

    def _measure_lag(self) -> Lag | None:
        found = self._lag.per_partition()
        if found is None:
            return None
        behind, _started = found
        self.pipeline.stats.lag_by_partition = behind  # for metrics
        return Lag(sum(behind.values()), all(n == 0 for n in behind.values()), len(behind))

    def _lag_wait(self, now: float, lag_total: int) -> float:
        """Seconds until the lag is worth measuring again: a quarter of the time it needs at the rate
        since the last measurement, between check_s and 1 s (so stopping once caught up stays prompt)."""
        then, windowed_then = self._rate_mark
        windowed = int(self.pipeline.stats.snapshot()["windowed"])  # type: ignore[call-overload]
        self._rate_mark = (now, windowed)
        rate = (windowed - windowed_then) / (now - then) if now > then else 0.0
        if lag_total <= 0 or rate <= 0:
            return self.check_s
        return min(LAG_WAIT_MAX_S, max(self.check_s, lag_total / rate / 4))

    def _tick(self) -> None:
        if self.caught_up:
            # stop() before the app's run loop has started is forgotten by Quix: repeat it until it ends
            self.pipeline.app.stop()
            return
        now = time.monotonic()
        need_lag = (self.until_caught_up and now >= self._next_lag_at) or now - self._last_report >= self.interval_s
        lag = self._measure_lag() if need_lag else None
        if lag is not None:
            self._next_lag_at = now + self._lag_wait(now, lag.total)
        if now - self._last_report >= self.interval_s:
            stats = self.pipeline.stats.snapshot()
            # events through the windows (the source is read ahead of them when re-keying)
            rate = (int(stats["windowed"]) - self._last_read) / (now - self._last_report)  # type: ignore[call-overload]
            self._last_read = int(stats["windowed"])  # type: ignore[call-overload]
            self._last_report = now
            self.report(
                f"{rate:,.0f} events/s | read {stats['read']:,} | windowed {stats['windowed']:,} | lag {lag.total if lag else '?'} | "
                f"late {stats['late']} | invalid {stats['invalid']} | online writes {stats['online_writes']:,} "
                f"| offline rows {stats['offline_rows']:,}"
                + (f" | online refills {stats['online_refills']} ({stats['online_refilled']:,} values)"
                   if stats["online_refills"] else "")
                + (f" | ONLINE STORE LOST {stats['online_lost']} view(s), no log to refill from"
                   if stats["online_lost"] else "")
            )
        if self.until_caught_up and lag is not None:
            # two consecutive readings: a broker once reported an end offset below the true end
            self._confirmations = self._confirmations + 1 if lag.caught_up else 0
            if self._confirmations >= 2:
                self.caught_up = True
                self.report(f"caught up on {lag.partitions} partition(s); stopping")
                self.pipeline.app.stop()


def run_pipeline(pipeline: Pipeline, *, until_caught_up: bool = False, interval_s: float = 5.0,
                 report: Callable[[str], None] | None = None) -> dict[str, object]:
    if until_caught_up:
        lag = GroupLag(pipeline.kafka_config, pipeline.consumer_group, pipeline.topics)
        try:
            before = lag.measure()
        finally:
            lag.close()
        if before is not None and before.caught_up:  # nothing to do: do not join the group at all
            (report or log.info)(f"already caught up on {before.partitions} partition(s); nothing to do")
            pipeline.close()
            return pipeline.stats.snapshot()
    monitor = ProgressMonitor(pipeline, until_caught_up=until_caught_up, interval_s=interval_s, report=report)
    monitor.start()
    stage = pipeline.stage
    try:
        if stage is not None:
            stage.start()
        # Quix Streams installs its own signal handlers when it runs: the caller's come back after
        with callers_signal_handlers(), checkpoint_gc() as collect:  # collected after each checkpoint's flush
            pipeline.after_checkpoint.append(collect)
            try:
                pipeline.app.run()
            finally:
                pipeline.after_checkpoint.remove(collect)
    finally:
        monitor.stop()
        pipeline.close()
    if stage is not None and stage.error is not None:
        raise PipelineError(f"the re-key stage stopped the run: {stage.error}") from stage.error
    return pipeline.stats.snapshot()
