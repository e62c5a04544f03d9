"""A realistic synthetic card-transaction stream for the demo, the tests and the benchmarks.

Thousands of cards with a home country and favourite merchants; event times
spread over a span ending now; a share of events arrives out of order (within
grace), a share arrives late beyond grace, and a share is malformed. Every
choice comes from one seeded RNG, so a seed gives the same stream.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from freshet.features.errors import SinkError

COUNTRIES = ["FR", "DE", "GB", "ES", "IT", "NL", "US", "PL", "SE", "BR"]
MALFORMED_KINDS = ("bad_json", "missing_timestamp", "bad_timestamp", "wrong_type", "missing_key")
PRODUCER_LINGER_MS = 20  # how long the producer waits to fill a batch (librdkafka's default is 5)


@dataclass(frozen=True)
class StreamSpec:
    events: int = 50_000
    cards: int = 2_000
    merchants: int = 500
    span_ms: int = 30 * 60_000
    end_ms: int | None = None  # default: now
    out_of_order_share: float = 0.05
    out_of_order_max_ms: int = 20_000
    late_share: float = 0.005
    late_min_ms: int = 6 * 60_000
    late_max_ms: int = 15 * 60_000
    malformed_share: float = 0.005
    seed: int = 7


@dataclass
class StreamSummary:
    produced: int = 0
    valid: int = 0
    malformed: int = 0
    delayed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    first_ts: int = 0
    last_ts: int = 0


def card_id(i: int) -> str:
    return f"card-{i:05d}"


def generate(spec: StreamSpec) -> Iterator[tuple[str | None, bytes, str | None]]:
    """Yields (key, value bytes, malformed kind or None) in log order."""
    rng = random.Random(spec.seed)
    end = spec.end_ms if spec.end_ms is not None else int(time.time() * 1000)
    start = end - spec.span_ms
    homes = [rng.choice(COUNTRIES) for _ in range(spec.cards)]
    step = spec.span_ms / max(1, spec.events)
    for i in range(spec.events):
        ts = int(start + i * step)
        card = rng.randrange(spec.cards)
        roll = rng.random()
        if roll < spec.late_share:
            ts -= rng.randint(spec.late_min_ms, spec.late_max_ms)
        elif roll < spec.late_share + spec.out_of_order_share:
            ts -= rng.randint(1, spec.out_of_order_max_ms)
        event: dict[str, Any] = {
            "card_id": card_id(card),
            "amount": round(rng.lognormvariate(3.2, 1.1), 2),
            "merchant": f"m-{int(rng.paretovariate(1.2)) % spec.merchants:04d}",
            "country": homes[card] if rng.random() > 0.03 else rng.choice(COUNTRIES),
            "ts": max(ts, 0),
        }
        key: str | None = event["card_id"]
        if rng.random() < spec.malformed_share:
            kind = rng.choice(MALFORMED_KINDS)
            yield key, _malform(event, kind), kind
            continue
        yield key, json.dumps(event, separators=(",", ":")).encode(), None


CARD_SCHEMA = {"card_id": "str", "amount": "float", "merchant": "str", "country": "str", "ts": "int"}


def generate_for_schema(schema: dict[str, str], key: str, timestamp: str,
                        spec: StreamSpec) -> Iterator[tuple[str | None, bytes, str | None]]:
    """A stream for any source schema: the card stream for the example's schema, otherwise events with
    ``spec.cards`` entities (``<key without _id>-00042``), times spread over the span like the card
    stream (with out-of-order and late shares), numbers, words and booleans in the other fields."""
    if schema == CARD_SCHEMA and key == "card_id" and timestamp == "ts":
        yield from generate(spec)
        return
    rng = random.Random(spec.seed)
    end = spec.end_ms if spec.end_ms is not None else int(time.time() * 1000)
    start = end - spec.span_ms
    step = spec.span_ms / max(1, spec.events)
    prefix = key.removesuffix("_id") or "entity"
    for i in range(spec.events):
        ts = int(start + i * step)
        roll = rng.random()
        if roll < spec.late_share:
            ts -= rng.randint(spec.late_min_ms, spec.late_max_ms)
        elif roll < spec.late_share + spec.out_of_order_share:
            ts -= rng.randint(1, spec.out_of_order_max_ms)
        entity = f"{prefix}-{rng.randrange(spec.cards):05d}"
        event: dict[str, Any] = {}
        for field_name, kind in schema.items():
            if field_name == timestamp:
                event[field_name] = max(ts, 0)
            elif field_name == key:
                event[field_name] = entity if kind == "str" else int(entity.rsplit("-", 1)[1])
            elif kind == "float":
                event[field_name] = round(rng.lognormvariate(3.2, 1.1), 2)
            elif kind == "int":
                event[field_name] = rng.randrange(100)
            elif kind == "bool":
                event[field_name] = rng.random() < 0.5
            else:
                event[field_name] = f"{field_name}-{int(rng.paretovariate(1.2)) % 50:02d}"
        if rng.random() < spec.malformed_share:
            broken = dict(event)
            del broken[timestamp]
            yield str(event[key]), json.dumps(broken).encode(), "missing_timestamp"
            continue
        yield str(event[key]), json.dumps(event, separators=(",", ":")).encode(), None


def _malform(event: dict[str, Any], kind: str) -> bytes:
    if kind == "bad_json":
        return json.dumps(event).encode()[:-7]
    broken = dict(event)
    if kind == "missing_timestamp":
        del broken["ts"]
    elif kind == "bad_timestamp":
        broken["ts"] = "yesterday at noon"
    elif kind == "wrong_type":
        broken["amount"] = "twelve euros"
    elif kind == "missing_key":
        del broken["card_id"]
    return json.dumps(broken).encode()


def produce(producer_config: dict[str, Any], topic: str, spec: StreamSpec,
            progress: Callable[[int], None] | None = None, *,
            events: Iterator[tuple[str | None, bytes, str | None]] | None = None,
            rate: float | None = None, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> StreamSummary:
    """Produce ``events`` (default: the card stream of ``spec``), at most ``rate`` per second when given."""
    producer = Producer({"linger.ms": PRODUCER_LINGER_MS, "batch.num.messages": 10_000, **producer_config})
    summary = StreamSummary(by_kind={})
    started = clock()
    for n, (key, value, kind) in enumerate(events if events is not None else generate(spec), start=1):
        if rate:
            ahead = (n - 1) / rate - (clock() - started)
            if ahead > 0:
                producer.poll(0)
                sleep(ahead)
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        summary.produced += 1
        if kind:
            summary.malformed += 1
            summary.by_kind[kind] = summary.by_kind.get(kind, 0) + 1
        else:
            summary.valid += 1
        if n % (1_000 if rate else 10_000) == 0:
            producer.poll(0)
            if progress:
                progress(n)
    remaining = producer.flush(60)
    if remaining:
        raise SinkError(f"{remaining} of {summary.produced} synthetic events were not delivered to {topic} "
                        "within 60 s: is the broker running (`freshet dev up`)?")
    return summary
