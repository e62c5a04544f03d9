"""The batch replay driver: the planned partitions, read directly, through the same operator.

No consumer group and no repartition hop: the driver assigns its partitions at
their start (or checkpointed) offsets, reads them in batches with confluent-kafka,
decodes, runs :class:`freshet.pipelines.tiles.SourceOperator` over per-entity states held in
memory (at most ``max_cached_states`` between checkpoints; others are read back from the
store), and writes through the same :class:`freshet.pipelines.outputs.OperatorOutputs` as a
live run. Every ``checkpoint_s`` it makes the outputs durable, then writes the states
that changed and the read positions to its own RocksDB store in one atomic batch, so
a killed replay resumes from its last checkpoint (the Parquet writer's last-flush
manifest drops rows the lost interval had already written). The checkpoint's file writes and
commit run in a background thread, in that order, while the next batch is processed
(:mod:`freshet.pipelines.background_writes`); the next checkpoint, and the end of the replay, wait for them.
Only then is Redis's writer (with ``--online``) told the log holds that checkpoint's values
(:meth:`~freshet.pipelines.outputs.OperatorOutputs.log_landed`): until then it keeps them, to send again
after a refill from the log.

Re-keying: a worker owns whole source partitions, so each entity must live in one
partition, which holds when messages are keyed by the entity (the normal case). Each
record's key is checked; a record keyed otherwise stops a replay with several workers
(run it with ``--workers 1``, where one process reads every partition and keeps one
state per entity, as the live run's re-key hop does).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, TopicPartition
from rocksdict import AccessType, Options, Rdict, WriteBatch

from freshet.features.definitions import FeatureView
from freshet.features.errors import ReplayError
from freshet.features.log_store import RootLike, open_log_root
from freshet.pipelines.background_writes import BackgroundLogRoot, BackgroundWrites
from freshet.pipelines.decode import (
    DEFAULT_MAX_EVENT_AHEAD_MS,
    EventDecoder,
    InvalidEvent,
)
from freshet.pipelines.gc_tuning import checkpoint_gc
from freshet.pipelines.offsets import consumer_config
from freshet.pipelines.online_sink import OnlineStoreUnavailable
from freshet.pipelines.outputs import make_outputs
from freshet.pipelines.stats import PipelineStats
from freshet.pipelines.tiles import EmittedValue, KeyState, LateReport, SourceOperator

log = logging.getLogger("freshet.replay")
POSITIONS_KEY = b"\x00positions"
STATE_PREFIX = b"k:"


class StateStore:
    """A worker's checkpoint: entity states and read positions, in RocksDB (rocksdict)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        access = AccessType.read_only() if read_only else AccessType.read_write()
        self._db = Rdict(str(path), options, access_type=access)

    def get(self, key: str) -> KeyState | None:
        raw = self._db.get(STATE_PREFIX + key.encode())
        if raw is None:
            return None
        state: KeyState = orjson.loads(raw)
        return state

    def positions(self) -> dict[int, int]:
        raw = self._db.get(POSITIONS_KEY)
        return {} if raw is None else {int(p): o for p, o in orjson.loads(raw).items()}

    def prepare(self, states: dict[str, KeyState], positions: dict[int, int]) -> WriteBatch:
        """The states and positions as they are now, serialised into one atomic batch (:meth:`write`)."""
        batch = WriteBatch(raw_mode=True)
        for key, state in states.items():
            batch.put(STATE_PREFIX + key.encode(), orjson.dumps(state))
        batch.put(POSITIONS_KEY, orjson.dumps({str(p): o for p, o in positions.items()}))
        return batch

    def write(self, batch: WriteBatch) -> None:
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()


class BatchDriver:
    def __init__(self, views: list[FeatureView], kafka_config: dict[str, Any], *, topic: str,
                 start: dict[int, int], end: dict[int, int], state_dir: Path, offline_root: RootLike,
                 redis_url: str | None, check_keys: bool, checkpoint_s: float = 2.0, batch_size: int = 5000,
                 stats: PipelineStats | None = None, progress: Callable[[dict[int, int]], None] | None = None,
                 max_rate: float | None = None, max_cached_states: int = 50_000,
                 max_event_ahead_ms: int = DEFAULT_MAX_EVENT_AHEAD_MS) -> None:
        self.views = views
        self.topic = topic
        self.start = start
        self.end = end
        self.stats = stats or PipelineStats()
        self._kafka = kafka_config
        self._store = StateStore(state_dir)
        # a checkpoint's file writes and state commit run in the background, in order (pipelines.background_writes)
        self._writes = BackgroundWrites()
        root = BackgroundLogRoot.wrap(open_log_root(offline_root), self._writes) if offline_root is not None else None
        self._outputs = make_outputs(views, kafka_config, self.stats, redis_url=redis_url, offline_root=root)
        self._reported: dict[int, int] | None = None  # positions of the last checkpoint, reported once durable
        self._operator = SourceOperator(views)
        self._decoder = EventDecoder(views[0].source, max_event_ahead_ms)
        self._check_keys = check_keys
        self._checkpoint_s = checkpoint_s
        self._batch = batch_size
        self._progress = progress
        self._states: dict[str, KeyState] = {}
        self._dirty: set[str] = set()
        self._stopping = False
        self._max_rate = max_rate
        self._max_cached = max_cached_states
        self._collect: Callable[[], None] | None = None  # checkpoint_gc's, while run() reads

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> dict[str, Any]:
        """Read every assigned partition to its planned end. Returns the stats and whether it finished."""
        positions = {p: max(self.start[p], o) for p, o in self._store.positions().items() if p in self.start}
        positions = {p: positions.get(p, self.start[p]) for p in self.start}
        todo = {p for p in positions if positions[p] < self.end[p]}
        if not todo:
            self._finish(positions)
            return {**self.stats.snapshot(), "finished": True}
        consumer = Consumer(consumer_config(self._kafka, purpose="replay-reader",
                                            extra={"fetch.wait.max.ms": 50, "auto.offset.reset": "earliest"}))
        consumer.assign([TopicPartition(self.topic, p, positions[p]) for p in sorted(todo)])
        last_checkpoint = started = time.monotonic()
        read_at_start = self.stats.read
        try:
            with checkpoint_gc() as collect:
                self._collect = collect
                self._read_all(consumer, positions, todo, read_at_start, started, last_checkpoint)
        finally:
            self._collect = None
            consumer.close()
        finished = not todo
        if finished:
            self._finish(positions)
        return {**self.stats.snapshot(), "finished": finished}

    def _read_all(self, consumer: Any, positions: dict[int, int], todo: set[int], read_at_start: int,
                  started: float, last_checkpoint: float) -> None:
        """Batches to the planned ends (or a stop), with a checkpoint every ``checkpoint_s`` and at the end."""
        end = self.end
        while todo and not self._stopping:
            # never more than the plan has left: the last call would wait out its timeout for records
            # that do not come (0.5 s of a 2.5 s replay of 100,000 events)
            left = sum(end[p] - positions[p] for p in todo)
            self._apply_batch(consumer.consume(max(1, min(self._batch, left)), timeout=0.5), positions, todo,
                              consumer)
            self._hand_over_accepted()
            if self._max_rate:  # stay under the asked rate (a shared broker, a busy machine)
                ahead = (self.stats.read - read_at_start) / self._max_rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(min(ahead, 1.0))
            if time.monotonic() - last_checkpoint >= self._checkpoint_s:
                self._checkpoint(positions)
                last_checkpoint = time.monotonic()
        self._checkpoint(positions)
        self._durable()

    def _apply_batch(self, msgs: list[Any], positions: dict[int, int], todo: set[int], consumer: Any) -> None:
        """Run one ``consume`` batch through the operator, in order, advancing ``positions`` and leaving
        ``todo`` (and pausing ``consumer`` on) each partition that reaches its planned end. Late reports and
        dead letters go to the side outputs as they come; emitted values to the sinks at the batch's end."""
        decode = self._decoder.decode
        process = self._operator.process
        entity_key = self._operator.entity_key
        states, dirty, outputs, end = self._states, self._dirty, self._outputs, self.end
        check_keys = self._check_keys
        emitted: list[EmittedValue] = []
        late: list[LateReport] = []
        read = windowed = duplicates = 0
        try:
            for msg in msgs:
                error = msg.error()
                if error:
                    if error.code() == -191:  # end of partition: nothing to do
                        continue
                    raise ReplayError(f"reading {self.topic}: {error}")
                p, offset = msg.partition(), msg.offset()
                if p not in todo or offset < positions[p]:
                    continue
                if offset >= end[p]:
                    todo.discard(p)
                    consumer.pause([TopicPartition(self.topic, p)])
                    continue
                read += 1
                raw = msg.value()
                try:
                    kind, record_ts = msg.timestamp()
                    event = decode(raw, record_ts if kind != TIMESTAMP_NOT_AVAILABLE else None)
                except InvalidEvent as exc:
                    outputs.side.dead_letter(raw, msg.key(), exc.reason, exc.detail, p, offset)
                    event = None
                if event is not None:
                    key = str(event[entity_key])
                    if check_keys:
                        self._check_key(msg, key, p, offset)
                    state = states.get(key)
                    if state is None:
                        state = states[key] = self._store.get(key) or self._operator.initial()
                    if process(state, event, p, offset, emitted, late):
                        dirty.add(key)
                        windowed += 1
                        if late:
                            for report in late:
                                outputs.late(report)
                            late.clear()
                    else:
                        duplicates += 1
                positions[p] = offset + 1
                if offset + 1 >= end[p]:
                    todo.discard(p)
                    consumer.pause([TopicPartition(self.topic, p)])
        finally:
            stats = self.stats
            stats.read += read
            stats.windowed += windowed
            stats.duplicates += duplicates
            outputs.emit_values(emitted)
        # request-time views' accepted events stay with the operator, to be handed over as columns
        # (_hand_over_accepted)

    def _check_key(self, msg: Any, key: str, partition: int, offset: int) -> None:
        message_key = msg.key()
        if message_key is None or message_key.decode(errors="replace") != key:
            raise ReplayError(
                f"{self.topic}[{partition}]@{offset} is keyed {message_key!r} but its entity is {key!r}: "
                "replays with several workers need messages keyed by the entity; run it with --workers 1")

    def _hand_over_accepted(self) -> None:
        """The accepted events of request-time views since the last call, to the outputs (once per batch)."""
        if self._operator.accepted.rows:
            self._outputs.accept_events(self._operator.accepted.take())

    def _checkpoint(self, positions: dict[int, int]) -> None:
        """Make what was read so far durable: the outputs flushed, then the changed states and the read
        positions committed. The file writes and the commit run in the background (pipelines.background_writes);
        this first waits for the previous checkpoint's, so at most one is in flight."""
        self._hand_over_accepted()
        self._durable()
        while True:
            try:
                self._outputs.start_flush()
                break
            except OnlineStoreUnavailable as exc:  # nothing is lost: the batch stays pending
                self.stats.backpressured += 1
                log.warning("%s; retrying in 2s", str(exc))  # as text: no traceback kept by a handler
                time.sleep(2.0)
        # the log's files land in the background: Redis's writer keeps what it sent until _durable says so
        self._outputs.finish_flush(landed=False)
        if self._collect is not None:  # the batch's outputs are released: freeze what is alive (gc_tuning)
            self._collect()
        batch = self._store.prepare({k: self._states[k] for k in self._dirty}, positions)
        self._writes.submit(partial(self._store.write, batch))
        self._reported = dict(positions)
        self._dirty.clear()
        if len(self._states) > self._max_cached:
            self._durable()
            self._states.clear()  # every state is in the store now: memory stays bounded whatever the keys

    def _durable(self) -> None:
        """Wait for the checkpoint in flight (raising its failure), then report its positions."""
        self._writes.wait()
        reported, self._reported = self._reported, None
        if reported is not None:  # the checkpoint's log files landed: the values sent before it can be refilled
            self._outputs.log_landed()
        if reported is not None and self._progress is not None:
            self._progress({p: reported[p] - self.start[p] for p in reported})

    def _finish(self, positions: dict[int, int]) -> None:
        if self._progress is not None:
            self._progress({p: positions[p] - self.start[p] for p in positions})

    def close(self) -> None:
        self._writes.close()
        self._outputs.close()
        self._store.close()


def open_seed_states(state_dirs: list[Path]) -> Callable[[str], KeyState | None]:
    """The handover: a live run's first look-up of a key it has no state for goes to the replay's stores."""
    stores = [StateStore(d, read_only=True) for d in state_dirs if d.exists()]

    def seed(key: str) -> KeyState | None:
        for store in stores:
            found = store.get(key)
            if found is not None:
                return found
        return None

    return seed


def write_progress(path: Path, done: dict[int, int]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({str(p): d for p, d in done.items()}))
    tmp.replace(path)
