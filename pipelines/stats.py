"""Counters of one pipeline run: read, invalid (by reason), late and emitted (by view).

Each event is counted once: when the live runtime rewinds its input after backpressure, the
counts go back to those of the last commit (:meth:`PipelineStats.rewind`)."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class DelayHistogram:
    """Seconds values waited in a sink before they were durable (one observation per batch: its oldest)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(DELAY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(DELAY_BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += seconds


@dataclass
class PipelineStats:
    """Shared by the operators and sinks of one run; read by progress reports."""

    read: int = 0
    windowed: int = 0  # valid events that reached the windows (after the re-key hop)
    invalid: Counter[str] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)
    emitted: Counter[str] = field(default_factory=Counter)
    online_writes: int = 0
    offline_rows: int = 0
    backpressured: int = 0
    offline_skipped: int = 0
    accepted_rows: int = 0  # rows made durable in request-time views' accepted-event logs
    duplicates: int = 0  # records the repartition hop delivered twice, skipped
    online_refills: int = 0  # views refilled from the log after Redis lost them (pipelines.store_guard)
    online_refilled: int = 0  # entity values those refills wrote
    online_lost: int = 0  # views Redis lost with no log to refill them from
    # for metrics (pipelines.metrics): read at scrape time, never per event
    sink_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # flush time, by sink
    sink_flushes: Counter[str] = field(default_factory=Counter)
    newest_feature_ts: dict[str, int] = field(default_factory=dict)  # by view name: newest made durable
    write_delay: dict[str, DelayHistogram] = field(
        default_factory=lambda: {"redis": DelayHistogram(), "parquet": DelayHistogram()})
    lag_by_partition: dict[tuple[str, int], int] = field(default_factory=dict)  # last measured
    started: float = field(default_factory=time.monotonic)
    processed_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    # False when a re-key stage reads the source (pipelines.rekey_stage): it is not rewound with the
    # windows' input, so its counts (read, invalid) are not either
    reads_rewind: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _marked: tuple[Any, ...] | None = field(default=None, repr=False)

    def mark(self) -> None:
        """The input up to here is committed: remember the counts of events processed so far."""
        with self._lock:
            self._marked = (self.read, self.windowed, self.duplicates, Counter(self.invalid), Counter(self.late),
                            Counter(self.emitted))

    def rewind(self) -> None:
        """The input is rewound to the last commit: what was counted since will be counted again."""
        with self._lock:
            marked: tuple[Any, ...] = self._marked or (0, 0, 0, Counter(), Counter(), Counter())
            read, windowed, duplicates, invalid, late, emitted = marked
            if self.reads_rewind:
                self.read, self.invalid = read, Counter(invalid)
            self.windowed, self.duplicates = windowed, duplicates
            self.late, self.emitted = Counter(late), Counter(emitted)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "read": self.read,
                "windowed": self.windowed,
                "valid": self.read - sum(self.invalid.values()),
                "invalid": sum(self.invalid.values()),
                "invalid_by_reason": dict(self.invalid),
                "late": sum(self.late.values()),
                "late_by_view": dict(self.late),
                "emitted_by_view": dict(self.emitted),
                "online_writes": self.online_writes,
                "offline_rows": self.offline_rows,
                "backpressured": self.backpressured,
                "offline_skipped_after_restart": self.offline_skipped,
                "accepted_rows": self.accepted_rows,
                "duplicates_skipped": self.duplicates,
                "online_refills": self.online_refills,
                "online_refilled": self.online_refilled,
                "online_lost": self.online_lost,
                "elapsed_s": round(time.monotonic() - self.started, 3),
            }
