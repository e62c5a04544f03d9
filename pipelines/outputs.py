"""Where the operator's outputs go, for both drivers: Redis, the Parquet log, late and dead letters.

:class:`OperatorOutputs` takes emitted values and late reports from the window
operator (:mod:`freshet.pipelines.tiles`) and dead letters from the decoder, and makes them
durable in :meth:`flush`: the live runtime calls it at every Quix checkpoint
(before offsets are committed), the replay driver at each of its own checkpoints.
Nothing here knows which driver runs it.
"""

from __future__ import annotations

import threading
import time
from array import array
from operator import itemgetter
from typing import Any

from freshet.features.definitions import FeatureView
from freshet.features.log_store import RootLike, open_log_root
from freshet.features.online_layout import online_key
from freshet.pipelines.accepted_columns import AcceptedColumns
from freshet.pipelines.accepted_events import AcceptedEvents, AcceptedRecord
from freshet.pipelines.accepted_online import accepting_views
from freshet.pipelines.accepted_sink import AcceptedLogWriter
from freshet.pipelines.background_writes import BackgroundLogRoot, BackgroundWrites
from freshet.pipelines.int64_arrays import INT64
from freshet.pipelines.offline_sink import ParquetLogWriter
from freshet.pipelines.online_sink import RedisOnlineWriter
from freshet.pipelines.side_outputs import SideOutputs
from freshet.pipelines.stats import PipelineStats
from freshet.pipelines.store_guard import StoreGuard
from freshet.pipelines.tiles import EmittedValue, LateReport

_FEATURE_TS = itemgetter(2)  # an EmittedValue's feature_ts


class OperatorOutputs:
    def __init__(self, views: list[FeatureView], side: SideOutputs, stats: PipelineStats,
                 online: RedisOnlineWriter | None, offline: list[ParquetLogWriter] | None,
                 accepted: list[AcceptedLogWriter | None] | None = None,
                 writes: BackgroundWrites | None = None) -> None:
        """``accepted``: per view, the accepted-event log of a request-time view (None for the others).
        ``writes``: where the log's file writes run when its root is a BackgroundLogRoot that
        :meth:`finish_flush` waits for (the live run); None: in line, or waited for by the caller (the
        replay driver, at its next checkpoint)."""
        self.views = views
        self.writes = writes
        self.side = side
        self.stats = stats
        self.online = online
        self.offline = offline
        self.accepted = accepted
        self._accepted_writers = [w for w in accepted or [] if w is not None]
        self._names = [v.feature_names() for v in views]
        # per view, for the online writer: the view and how its members take their values from an event
        self._accepting = accepting_views(views)
        self._view_names = [v.name for v in views]
        self._keys = [(v.name, v.version, v.ttl) for v in views]
        self._skipped_seen = [0] * len(views)
        self._newest: list[int | None] = [None] * len(views)  # newest feature_ts added since the last flush
        self._first_emit: float | None = None  # when the oldest value not yet in the log was emitted
        # accepted records not yet handed to their writers: (input partition, records, produced at in epoch ms)
        self._accepted_pending: list[tuple[int, list[AcceptedRecord], int]] = []
        # accepted events handed over as columns (accept_events), each with when it was produced (epoch ms)
        self._accepted_chunks: list[tuple[AcceptedEvents, int]] = []
        # the live run: the operator's holder of accepted events (attach_live), taken by the Redis writer's
        # thread and by the checkpoint, one at a time
        self._live: AcceptedEvents | None = None
        self._live_lock = threading.Lock()
        self._for_online: list[AcceptedEvents] = []  # taken from the live holder, not yet in Redis's batch

    def attach_live(self, events: AcceptedEvents) -> None:
        """The live run's accepted events stay in the operator's ``events`` (with their input partitions:
        :meth:`AcceptedEvents.track_inputs`) until the Redis writer's thread takes them, each time it
        wakes and before each batch it sends (:meth:`RedisOnlineWriter.set_puller`), or the checkpoint
        takes the rest: instead of a hand-over per event in the operator's thread (which cost about a fifth
        of a live run's processing on one request-time view). The log takes them as columns, as a replay's."""
        self._live = events
        if self.online is not None:
            self.online.set_puller(self.take_live)

    def take_live(self) -> None:
        """Hand the live holder's whole events to the log's chunks and to Redis (any thread). Events Redis's
        batch failed to take are kept and handed over first next time (a union: nothing added twice); the
        checkpoint's call raises that failure, so the run stops before its offsets are committed."""
        live = self._live
        if live is None:
            return
        with self._live_lock:
            taken = live.take_ready()
            if taken is not None:
                if self.accepted is not None:
                    self._accepted_chunks.append((taken, time.time_ns() // 1_000_000))
                if self.online is not None:
                    self._for_online.append(taken)
            while self._for_online and self.online is not None:
                self.online.add_accepted_events(self._accepting, self._for_online[0])
                del self._for_online[0]

    def emit(self, value: EmittedValue, input_partition: int) -> None:
        """``input_partition``: the partition the operator read (the source, or the repartition topic)."""
        view = value.view
        self.stats.emitted[self._view_names[view]] += 1
        newest = self._newest[view]
        if newest is None or value.feature_ts > newest:
            self._newest[view] = value.feature_ts
            if self._first_emit is None:
                self._first_emit = time.monotonic()
        if self.offline is not None:
            self.offline[view].add_value(value, input_partition)
        if self.online is not None:
            name, version, ttl = self._keys[view]
            self.online.add(online_key(name, version, value.entity), value.feature_ts, value.source_offset, ttl,
                            self._names[view], value.values, value.window_start, value.window_end)

    def emit_values(self, values: list[EmittedValue]) -> None:
        """:meth:`emit` for each of ``values``, in order, for a driver that reads the source itself (each
        value's input partition is its source partition: the replay driver), all produced now. The values
        are split by view first, so each view's log takes its own in one call."""
        if not values:
            return
        by_view: list[list[EmittedValue]] = [[] for _ in self.views]
        for value in values:
            by_view[value[0]].append(value)
        produced_at = time.time_ns() // 1_000_000
        emitted = self.stats.emitted
        for view, mine in enumerate(by_view):
            if not mine:
                continue
            emitted[self._view_names[view]] += len(mine)
            newest = max(map(_FEATURE_TS, mine))
            last = self._newest[view]
            if last is None or newest > last:
                self._newest[view] = newest
            if self.offline is not None:
                self.offline[view].add_values(mine, produced_at)
            if self.online is not None:
                add = self.online.add
                name, version, ttl = self._keys[view]
                names = self._names[view]
                for value in mine:
                    add(online_key(name, version, value.entity), value.feature_ts, value.source_offset, ttl,
                        names, value.values, value.window_start, value.window_end)
        if self._first_emit is None:
            self._first_emit = time.monotonic()

    def accept(self, records: list[AcceptedRecord], input_partition: int) -> None:
        """Accepted events as records, read from ``input_partition``: their accepted-event logs, and the
        views' events in Redis. Neither driver hands them over this way since 0.4.6 (the replay driver
        uses :meth:`accept_events`, the live run :meth:`attach_live`); it stays as the plain record path
        the tests hold the column paths to (tests/unit/test_accepted_log.py).

        The logs' share is kept as it comes and handed to each view's writer at the flush, a run at a
        time (:meth:`_route_accepted`)."""
        if self.accepted is not None:
            self._accepted_pending.append((input_partition, records, time.time_ns() // 1_000_000))
        if self.online is not None:
            for view_i, entity, ts, first_start, event, partition, offset in records:
                accepting = self._accepting[view_i]
                self.online.add_accepted(accepting.view, entity, ts, first_start, partition, offset,
                                         accepting.values(event))

    def accept_events(self, events: AcceptedEvents) -> None:
        """Accepted events as the operator keeps them (:meth:`AcceptedEvents.take`), for a driver that reads
        the source itself (each event's input partition is its source partition: the replay driver).

        The logs get them as Arrow columns built once per flush for every view
        (:mod:`freshet.pipelines.accepted_columns`); Redis, when there is one, as records now."""
        if not events.rows:
            return
        if self.accepted is not None:
            self._accepted_chunks.append((events, time.time_ns() // 1_000_000))
        if self.online is not None:
            events.first_at = self.online.clock()
            self.online.add_accepted_events(self._accepting, events)

    def _route_accepted(self) -> None:
        """Hand the accepted events taken since the last flush to their views' writers, in order."""
        with self._live_lock:
            chunks, self._accepted_chunks = self._accepted_chunks, []
        if chunks and self.accepted is not None:
            columns = AcceptedColumns(chunks)
            for view, writer in enumerate(self.accepted):
                if writer is not None:
                    writer.add_columns(columns, view)
        pending, self._accepted_pending = self._accepted_pending, []
        writers = self.accepted
        if not pending or writers is None:
            return
        views = len(writers)
        by_input: dict[int, tuple[list[list[AcceptedRecord]], list[array[int]]]] = {}
        for input_partition, records, produced_at in pending:
            lists = by_input.get(input_partition)
            if lists is None:
                lists = by_input[input_partition] = ([[] for _ in range(views)], [array(INT64) for _ in range(views)])
            rows, times = lists
            for record in records:
                view = record[0]
                rows[view].append(record)
                times[view].append(produced_at)
        for input_partition, (rows, times) in by_input.items():
            for view, writer in enumerate(writers):
                if writer is not None and rows[view]:
                    writer.add_records(rows[view], times[view], input_partition)

    def late(self, report: LateReport) -> None:
        self.side.late(self.views[report.view], report.event, str(report.entity), report.late_by_ms,
                       report.window_start, report.window_end, report.source_partition, report.source_offset)

    def flush(self) -> None:
        """Make everything added so far durable. Raises OnlineStoreUnavailable (nothing lost) when Redis is down.
        :meth:`start_flush` then :meth:`finish_flush`, with nothing between them."""
        self.start_flush()
        self.finish_flush()

    def start_flush(self) -> None:
        """The first part of :meth:`flush`: late and dead letters delivered, Redis written (raising
        OnlineStoreUnavailable, nothing lost, before the log is touched), the log writers' checkpoints made
        (with ``writes``, their file writes run in the background until :meth:`finish_flush`)."""
        stats = self.stats
        started = time.perf_counter()
        self.take_live()
        self.side.flush()
        stats.sink_seconds["kafka"] += (done := time.perf_counter()) - started
        stats.sink_flushes["kafka"] += 1
        if self.online is not None:
            self.online.flush()
            self.online.log_checkpoint_started()  # released by log_landed, once the log holds this checkpoint
            stats.sink_seconds["redis"] += (started := time.perf_counter()) - done
            stats.sink_flushes["redis"] += 1
            done = started
        if self.offline is not None:
            self._route_accepted()
            for i, writer in enumerate(self.offline):
                stats.offline_rows += writer.checkpoint()
                stats.offline_skipped += writer.skipped - self._skipped_seen[i]
                self._skipped_seen[i] = writer.skipped
            for accepted in self._accepted_writers:
                stats.accepted_rows += accepted.checkpoint()
            stats.sink_seconds["parquet"] += time.perf_counter() - done

    def finish_flush(self, *, landed: bool = True) -> None:
        """The rest of :meth:`flush`: the log's file writes waited for (``writes``; a failed one raises
        here), then the online writer told the log holds what it sent (:meth:`log_landed`).
        ``landed=False``: the caller's own background writes still hold the log's files (the replay
        driver); it calls :meth:`log_landed` once it has waited for them."""
        if self.offline is not None:
            started = time.perf_counter()
            if self.writes is not None:
                self.writes.wait()
            self.stats.sink_seconds["parquet"] += time.perf_counter() - started
            self.stats.sink_flushes["parquet"] += 1
            if self._first_emit is not None:
                self.stats.write_delay["parquet"].observe(time.monotonic() - self._first_emit)
        self._first_emit = None
        if landed:
            self.log_landed()
        for i, newest in enumerate(self._newest):
            if newest is not None:
                name = self.views[i].name
                self.stats.newest_feature_ts[name] = max(newest, self.stats.newest_feature_ts.get(name, newest))
                self._newest[i] = None

    def log_landed(self) -> None:
        """The oldest flush whose log files were still being written has landed: the online writer
        may forget the values it sent before it (a refill from the log brings them back)."""
        if self.online is not None:
            self.online.log_checkpointed()

    def discard(self) -> None:
        """Forget what was added since the last flush (the input is being rewound)."""
        self._newest = [None] * len(self.views)
        self._first_emit = None
        self._accepted_pending = []
        with self._live_lock:
            self._accepted_chunks = []
            self._for_online = []
            if self._live is not None:
                self._live.clear()
        if self.offline is not None:
            for writer in self.offline:
                writer.discard_uncommitted()
        for accepted in self._accepted_writers:
            accepted.discard_uncommitted()
        if self.online is not None:
            self.online.discard()

    def close(self) -> None:
        if self.writes is not None:
            self.writes.close()
        if self.online is not None:
            self.online.close()
        self.side.close()


def make_outputs(views: list[FeatureView], kafka_config: dict[str, Any], stats: PipelineStats, *,
                 redis_url: str | None, offline_root: RootLike | None, roll_rows: int = 100_000,
                 roll_seconds: float = 120.0, background: BackgroundWrites | None = None) -> OperatorOutputs:
    """``background``: the log's file writes run there, and each flush waits for them before it ends
    (the live run: the checkpoint's other work goes on meanwhile)."""
    side = SideOutputs(views[0].source, kafka_config, stats)
    root = open_log_root(offline_root) if offline_root is not None else None
    online = None
    if redis_url:
        guard = StoreGuard(views, root, redis_url, stats)
        online = RedisOnlineWriter(redis_url, on_written=lambda n: _count_online(stats, n), guard=guard,
                                   on_delay=stats.write_delay["redis"].observe)
    if root is not None and background is not None:
        root = BackgroundLogRoot.wrap(root, background)
    offline = [ParquetLogWriter(root, v, roll_rows=roll_rows, roll_seconds=roll_seconds)
               for v in views] if root is not None else None
    accepted = [AcceptedLogWriter(root, v, roll_rows=roll_rows, roll_seconds=roll_seconds)
                if v.as_of == "request" else None for v in views] if root is not None else None
    return OperatorOutputs(views, side, stats, online, offline, accepted, writes=background)


def _count_online(stats: PipelineStats, n: int) -> None:
    stats.online_writes += n
