"""The replay driver's per-event path in one process, no broker: us/event by stage, min of repeats.

    python -m bench.operator_path [--events 100000] [--repeats 5] [--checkpoint-every 50000]

A seeded synthetic stream (:mod:`freshet.synthetic`, the card stream `bench.run` produces:
2,000 cards, 30 min of event time, out-of-order, late and malformed records) is turned into
in-memory records (key, value, Kafka timestamp, partition by a CRC of the key, offsets per
partition; the partitions take turns in runs of 1,000 records, as ``consume`` hands them over) and run through the example views (tumbling 5m, hopping 1h/5m, sliding 10m
current), stage by stage:

- ``views``: the operator alone, one view at a time, over events decoded beforehand;
- ``decode``: :class:`freshet.pipelines.decode.EventDecoder` over every record;
- ``operator``: decode + :class:`freshet.pipelines.tiles.SourceOperator` over per-key states;
- ``apply``: the replay driver's per-record work (:class:`freshet.replay.driver.BatchDriver`:
  decode, operator, Parquet rows, late and dead-letter records to a producer that only counts),
  no checkpoint, with the drivers' collector settings (``gc_tuning.checkpoint_gc``);
- ``replay``: apply + the driver's checkpoints, every ``--checkpoint-every`` records and at the end
  (Parquet files and the RocksDB state commit in a temporary folder, the young generations collected),
  what `freshet replay --workers 1` pays besides reading Kafka; the checkpoints' own share per record
  read is printed after it;
- ``online``: the live run's extra sink work per record: ``apply`` with a Redis writer queuing
  every value (nothing sent: the writer's batch never fills).

Each stage runs ``--repeats`` times from fresh state; the minimum of its CPU time (``time.process_time``:
the machine is shared, and the CPU time of the least disturbed run moves least) is printed. A digest of every emitted value, late report
and dead letter is printed too: a change that makes the path faster must leave it unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import EXAMPLE_REPO, PARTITIONS
from freshet.features.definitions import FeatureView
from freshet.features.registry import Registry
from freshet.pipelines.decode import EventDecoder, InvalidEvent
from freshet.pipelines.gc_tuning import checkpoint_gc
from freshet.pipelines.online_sink import RedisOnlineWriter
from freshet.pipelines.tiles import EmittedValue, LateReport, SourceOperator
from freshet.replay.driver import BatchDriver
from freshet.synthetic import StreamSpec, generate

END_MS = 1_795_000_000_000  # a fixed end of event time: the same stream on every run
TOPIC = "bench-operator-path"
CONSUME_BATCH = 5000  # records per `consume` call, as the replay driver asks for


class Record:
    """What the driver reads of a confluent-kafka message."""

    __slots__ = ("_key", "_value", "_ts", "_partition", "_offset")

    def __init__(self, key: bytes | None, value: bytes, ts: int, partition: int, offset: int) -> None:
        self._key, self._value, self._ts, self._partition, self._offset = key, value, ts, partition, offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return 1, self._ts  # TIMESTAMP_CREATE_TIME

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


class CountingProducer:
    """Stands in for the side outputs' producer: takes every record, sends nothing."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None = None, **_kwargs: Any) -> None:
        self.records.append((topic, value))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float | None = None) -> int:
        return 0


def records(events: int, chunk: int = 1000) -> list[Record]:
    """The stream as the driver reads it: ``consume`` hands over each partition's records in runs
    (one fetch each), so the partitions take turns in runs of ``chunk`` records."""
    by_partition: list[list[Record]] = [[] for _ in range(PARTITIONS)]
    spec = StreamSpec(events=events, cards=2_000, end_ms=END_MS)
    for key, value, _kind in generate(spec):
        raw_key = key.encode() if key is not None else None
        p = zlib.crc32(raw_key or b"") % PARTITIONS
        by_partition[p].append(Record(raw_key, value, END_MS, p, len(by_partition[p])))
    out: list[Record] = []
    for start in range(0, max(len(r) for r in by_partition), chunk):
        for recs in by_partition:
            out.extend(recs[start:start + chunk])
    return out


def example_views() -> list[FeatureView]:
    registry = Registry.load(EXAMPLE_REPO)
    return [registry.views[n] for n in ("card_spend_5m", "card_spend_1h", "card_activity_10m")]


def stage_decode(views: list[FeatureView], recs: list[Record], _tmp: Path) -> str:
    decoder = EventDecoder(views[0].source)
    letters = []
    for r in recs:
        try:
            decoder.decode(r.value(), r.timestamp()[1])
        except InvalidEvent as exc:
            letters.append(f"{r.partition()}:{r.offset()}:{exc.reason}:{exc.detail}")
    return f"dead letters {hashlib.sha256('|'.join(sorted(letters)).encode()).hexdigest()[:16]}"


def stage_operator(views: list[FeatureView], recs: list[Record], _tmp: Path) -> Callable[[], str]:
    decoder = EventDecoder(views[0].source)
    operator = SourceOperator(views)
    states: dict[str, Any] = {}
    emitted: list[EmittedValue] = []
    late: list[LateReport] = []
    key_field = operator.entity_key
    for r in recs:
        try:
            event = decoder.decode(r.value(), r.timestamp()[1])
        except InvalidEvent:
            continue
        key = str(event[key_field])
        state = states.get(key)
        if state is None:
            state = states[key] = operator.initial()
        operator.process(state, event, r.partition(), r.offset(), emitted, late)

    def digest() -> str:  # computed after the timing; sorted: the same whatever order the keys take turns in
        d = hashlib.sha256()
        for text in sorted(repr(v) for v in emitted):
            d.update(text.encode())
        for text in sorted(repr(rep._replace(event=sorted(rep.event.items()))) for rep in late):
            d.update(text.encode())
        return f"values and late reports {d.hexdigest()[:16]} ({len(emitted)} values, {len(late)} late)"

    return digest


def decoded_events(views: list[FeatureView], recs: list[Record]) -> list[tuple[dict[str, Any], int, int]]:
    """The valid records decoded beforehand, as (event, partition, offset): the operator's input alone."""
    decoder = EventDecoder(views[0].source)
    events = []
    for r in recs:
        try:
            events.append((decoder.decode(r.value(), r.timestamp()[1]), r.partition(), r.offset()))
        except InvalidEvent:
            continue
    return events


def per_view(views: list[FeatureView], recs: list[Record], repeats: int) -> None:
    """The operator alone, one view at a time, over events decoded beforehand."""
    events = decoded_events(views, recs)
    for view in views:
        best = float("inf")
        for _ in range(repeats):
            operator = SourceOperator([view])
            states: dict[str, Any] = {}
            emitted: list[EmittedValue] = []
            late: list[LateReport] = []
            key_field = operator.entity_key
            with checkpoint_gc():  # as the drivers run
                started = time.process_time()
                for event, p, offset in events:
                    key = event[key_field]
                    state = states.get(key)
                    if state is None:
                        state = states[key] = operator.initial()
                    operator.process(state, event, p, offset, emitted, late)
                best = min(best, time.process_time() - started)
        print(f"{view.name:>18}: {best / len(recs) * 1e6:6.2f} us/event (operator alone, per record read)", flush=True)


def _driver(views: list[FeatureView], tmp: Path) -> tuple[BatchDriver, CountingProducer]:
    driver = BatchDriver(views, {"bootstrap.servers": "127.0.0.1:9", "log_level": 0}, topic=TOPIC,
                         start=dict.fromkeys(range(PARTITIONS), 0), end=dict.fromkeys(range(PARTITIONS), 1 << 40),
                         state_dir=tmp / "state", offline_root=tmp / "offline", redis_url=None, check_keys=False)
    producer = CountingProducer()
    driver._outputs.side._producer = producer  # type: ignore[assignment]  # nothing leaves the process
    return driver, producer


def _apply_all(driver: BatchDriver, recs: list[Record], every: int,
               checkpoint: Callable[[dict[int, int]], None] | None) -> float:
    """The driver's loop over ``recs``; returns the seconds spent in checkpoints."""
    positions = dict.fromkeys(range(PARTITIONS), 0)
    todo = set(range(PARTITIONS))
    in_checkpoints = 0.0
    done = 0
    for lo in range(0, len(recs), CONSUME_BATCH):  # as `consume` hands them over
        driver._apply_batch(recs[lo:lo + CONSUME_BATCH], positions, todo, None)
        driver._hand_over_accepted()
        if checkpoint is not None and (lo + CONSUME_BATCH) // every > done:
            done = (lo + CONSUME_BATCH) // every
            started = time.process_time()
            checkpoint(positions)
            in_checkpoints += time.process_time() - started
    if checkpoint is not None:
        started = time.process_time()
        checkpoint(positions)
        in_checkpoints += time.process_time() - started
    return in_checkpoints


def stage_apply(views: list[FeatureView], recs: list[Record], tmp: Path) -> str:
    driver, producer = _driver(views, tmp)
    try:
        with checkpoint_gc():  # as BatchDriver.run
            _apply_all(driver, recs, 0, None)
        return f"{len(producer.records)} side records"
    finally:
        driver.close()


def stage_online(views: list[FeatureView], recs: list[Record], tmp: Path) -> str:
    driver, _producer = _driver(views, tmp)
    # nothing listens on port 9: the writer starts in an outage and its batch never fills, so no send
    driver._outputs.online = RedisOnlineWriter("redis://127.0.0.1:9/0", background=False, batch_size=1 << 40)
    try:
        _apply_all(driver, recs, 0, None)
        return "queued"
    finally:
        driver._outputs.online = None
        driver.close()


CHECKPOINT_SECONDS: list[float] = []


def stage_replay(views: list[FeatureView], recs: list[Record], tmp: Path,
                 every: int = 50_000) -> Callable[[], str]:
    driver, _producer = _driver(views, tmp)
    try:
        with checkpoint_gc() as collect:  # as BatchDriver.run: the young generations collected at checkpoints
            driver._collect = collect
            CHECKPOINT_SECONDS.append(_apply_all(driver, recs, every, driver._checkpoint))
    finally:
        driver.close()
    return lambda: "log " + _log_digest(tmp / "offline")


def _log_digest(root: Path) -> str:
    """The Parquet log's rows (all but produced_at), sorted: the same rows give the same digest."""
    import pyarrow.parquet as pq

    rows: list[str] = []
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        columns = [c for c in table.column_names if c != "produced_at"]
        cols = [table.column(c).to_pylist() for c in columns]
        rows.extend(f"{path.relative_to(root).parts[0]}|{row!r}" for row in zip(*cols, strict=True))
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()[:16] + f" ({len(rows)} rows)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint-every", type=int, default=50_000)
    parser.add_argument("--stages", default="decode,views,operator,apply,replay,online")
    args = parser.parse_args(argv)
    stages: dict[str, Callable[[list[FeatureView], list[Record], Path], Any]] = {
        "decode": stage_decode, "operator": stage_operator, "apply": stage_apply,
        "replay": lambda v, r, t: stage_replay(v, r, t, args.checkpoint_every), "online": stage_online}
    names = args.stages.split(",")
    unknown = [n for n in names if n != "views" and n not in stages]
    if unknown:
        parser.error(f"--stages: unknown stage(s) {', '.join(unknown)}; choose among views, {', '.join(stages)}")
    views = example_views()
    recs = records(args.events)
    print(f"{len(recs):,} records, example views, min of {args.repeats} repeats")
    for name in names:
        if name == "views":
            per_view(views, recs, args.repeats)
            continue
        best = float("inf")
        note: Any = ""
        CHECKPOINT_SECONDS.clear()
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="freshet-opbench-") as tmp, checkpoint_gc():
                started = time.process_time()
                note = stages[name](views, recs, Path(tmp))
                best = min(best, time.process_time() - started)
                if callable(note):  # a digest, computed after the timing
                    note = note()
        line = f"{name:>10}: {best / len(recs) * 1e6:6.2f} us/event   {note}"
        if CHECKPOINT_SECONDS:
            line += f"   checkpoints min {min(CHECKPOINT_SECONDS) / len(recs) * 1e6:.2f} us/event"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
