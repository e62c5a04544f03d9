"""The freshness probe's child process: a steady producer and a Redis poller.

It runs in its own process (spawned, not forked) so that producing and polling
do not share the pipeline's interpreter lock. Event time is the wall clock at
send. For every ``sample_every``-th event it remembers (entity, event ts, send
time) and a poller thread reads the entity's online hash every ``poll_s`` until
its ``__ts`` is at or after the event's ts; the latency is then minus send time.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from confluent_kafka import Producer

from freshet.features.online_layout import TS_FIELD, online_key
from freshet.synthetic import PRODUCER_LINGER_MS

WARMUP_CARD = "card-warmup"
# The load's producer lingers as Freshet's own producer does (freshet.synthetic, 20 ms), not librdkafka's
# default 5 ms: the local broker (tansu 0.6.0, memory storage) keeps each produced batch as an object
# and a fetch lists every batch stored in the partition, so its CPU grows with the number of batches.
# A producer at 5,000 records/s and a bare consumer (fetch.wait.max.ms 25) took it to a whole core
# within 15 s at linger 5 and to 35% at 30 s at linger 25 (by hand, 2026-11-25); the same freshness
# measurement fell behind at 5 (p99 3.6 s) and not at 20. ``bench.run --saturating-linger-ms`` still
# measures at 5 ms, with the broker's own latency beside it.
CLIENT_LINGER_MS = PRODUCER_LINGER_MS


@dataclass(frozen=True)
class LoadPlan:
    bootstrap: str
    redis_url: str
    topic: str
    view_name: str
    view_version: int
    rate: int
    seconds: float
    sample_every: int = 50
    cards: int = 2_000
    poll_s: float = 0.005
    linger_ms: int = CLIENT_LINGER_MS
    warmup_timeout_s: float = 90.0
    settle_s: float = 15.0
    seed: int = 11


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)  # resolved samples, in send order
    samples: int = 0
    produced: int = 0
    produce_s: float = 0.0
    max_behind_ms: float = 0.0
    warmup_s: float = 0.0
    error: str = ""

    @property
    def missing(self) -> int:
        return self.samples - len(self.latencies_ms)


def _event(card: str, ts: int, rng: random.Random) -> bytes:
    event: dict[str, Any] = {
        "card_id": card,
        "amount": round(rng.lognormvariate(3.2, 1.1), 2),
        "merchant": f"m-{rng.randrange(500):04d}",
        "country": "FR",
        "ts": ts,
    }
    # orjson: the same bytes as json.dumps(event, separators=(",", ":")).encode() for these events, at half
    # the cost (3.6 us against 6.8, by hand): the load shares the machine's two cores with what it measures
    return orjson.dumps(event)


def _online_ts(client: redis.Redis, key: str) -> int | None:
    value = client.hget(key, TS_FIELD)
    return int(value) if value is not None else None


def _warm_up(plan: LoadPlan, producer: Producer, client: redis.Redis, rng: random.Random) -> float:
    """Send an event now and then until the pipeline's value for it shows up in Redis."""
    key = online_key(plan.view_name, plan.view_version, WARMUP_CARD)
    started = time.monotonic()
    sent_ts = 0
    last_send = 0.0
    while time.monotonic() - started < plan.warmup_timeout_s:
        if time.monotonic() - last_send >= 0.5:
            sent_ts = int(time.time() * 1000)
            producer.produce(plan.topic, key=WARMUP_CARD, value=_event(WARMUP_CARD, sent_ts, rng))
            producer.flush(5)
            last_send = time.monotonic()
        seen = _online_ts(client, key)
        if seen is not None and seen >= sent_ts > 0:
            return time.monotonic() - started
        time.sleep(0.02)
    raise TimeoutError(f"the pipeline wrote nothing to Redis within {plan.warmup_timeout_s:.0f}s")


class _Poller:
    """Resolves pending samples: one pipelined HGET per pending sample every ``poll_s``."""

    def __init__(self, plan: LoadPlan, client: redis.Redis) -> None:
        self.plan = plan
        self.client = client
        self.incoming: queue.SimpleQueue[tuple[str, int, float]] = queue.SimpleQueue()
        self.resolved: list[tuple[float, float]] = []  # (send time, latency ms)
        self.producing_done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _loop(self) -> None:
        pending: list[tuple[str, int, float]] = []
        deadline: float | None = None
        while True:
            while True:
                try:
                    pending.append(self.incoming.get_nowait())
                except queue.Empty:
                    break
            if pending:
                pipe = self.client.pipeline(transaction=False)
                for key, _ts, _sent in pending:
                    pipe.hget(key, TS_FIELD)
                values = pipe.execute()
                now = time.monotonic()
                still = []
                for (key, ts, sent), value in zip(pending, values, strict=True):
                    if value is not None and int(value) >= ts:
                        self.resolved.append((sent, (now - sent) * 1000))
                    else:
                        still.append((key, ts, sent))
                pending = still
            if self.producing_done.is_set():
                deadline = deadline or time.monotonic() + self.plan.settle_s
                if (not pending and self.incoming.empty()) or time.monotonic() > deadline:
                    return
            time.sleep(self.plan.poll_s)


def probe(plan: LoadPlan) -> LoadResult:
    rng = random.Random(plan.seed)
    result = LoadResult()
    producer = Producer({"bootstrap.servers": plan.bootstrap, "linger.ms": plan.linger_ms})
    client = redis.Redis.from_url(plan.redis_url, socket_timeout=5)
    try:
        result.warmup_s = _warm_up(plan, producer, client, rng)
        poller = _Poller(plan, client)
        poller.start()
        total = int(plan.rate * plan.seconds)
        started = time.monotonic()
        for i in range(total):
            due = started + i / plan.rate
            now = time.monotonic()
            if due - now > 0.002:
                time.sleep(due - now)
            else:
                result.max_behind_ms = max(result.max_behind_ms, (now - due) * 1000)
            card = f"card-{rng.randrange(plan.cards):05d}"
            ts = int(time.time() * 1000)
            sent = time.monotonic()
            while True:
                try:
                    producer.produce(plan.topic, key=card, value=_event(card, ts, rng))
                    break
                except BufferError:
                    producer.poll(0.01)
            if i % plan.sample_every == 0:
                poller.incoming.put((online_key(plan.view_name, plan.view_version, card), ts, sent))
                result.samples += 1
            if i % 100 == 0:
                producer.poll(0)
        result.produced = total
        result.produce_s = time.monotonic() - started
        producer.flush(30)
        poller.producing_done.set()
        poller.join()
        result.latencies_ms = [latency for _sent, latency in sorted(poller.resolved)]  # in send order
    finally:
        client.close()
    return result


def probe_into(plan: LoadPlan, out: Any) -> None:
    """Child process entry point: the result (or the error) goes to the ``out`` queue."""
    try:
        out.put(probe(plan))
    except BaseException as exc:  # the parent must always hear back
        out.put(LoadResult(error=f"{type(exc).__name__}: {exc}"))
