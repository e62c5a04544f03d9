"""Record golden logs from the pre-tiles window engine (Quix Streams' own window operators).

This script imports the OLD engine (``freshet.pipelines.topology``, ``tests.integration.harness``) and only
runs against the code at git commit 6938cd8, the last commit before the tiles engine:

    git worktree add /tmp/old 6938cd8 && cd /tmp/old && \\
        /path/to/.venv/bin/python /path/to/tests/golden/record_golden.py OUTDIR [--seeds 1 2 3 4 5]

It starts its own local stack (tansu + redis-server), and per seed: generates a deterministic stream
(random.Random(seed)), produces it to a fresh 4-partition topic (each card on one fixed partition),
runs six views (tumbling/hopping/sliding x final/current, all nine functions) through the old engine
exactly as the integration tests do, and writes OUTDIR/stream-<seed>.json.gz with the records, the
log rows, the late records and the dead letters. ``--repeat SEED`` records that seed a second time and
fails unless the result is identical (determinism check).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import random
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import quixstreams
from confluent_kafka import Producer

sys.path.insert(0, str(Path.cwd()))  # the old engine's checkout, not whatever is installed
from freshet.features.definitions import (  # noqa: E402
    Aggregation,
    FeatureView,
    HoppingWindow,
    SlidingWindow,
    Source,
    TumblingWindow,
)
from freshet.features.offline_layout import list_parts, view_schema  # noqa: E402
from freshet.infra.localstack import start_stack, stop_stack  # noqa: E402
from freshet.pipelines import topology  # noqa: E402
from tests.integration.conftest import Servers  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    pipeline_config,
    provision,
    read_topic,
    redis_db,
    retarget,
    run_until_caught_up,
)

COMMIT = "6938cd8"
PARTITIONS = 4
SCHEMA = {"card_id": "str", "amount": "float", "qty": "int", "merchant": "str", "flag": "bool", "ts": "int"}
MERCHANTS = ["acme", "bistro", "cinema", "depot", "express", "fuel"]
AGGREGATIONS = [
    ("count", None, "n"), ("count", "amount", "n_amount"), ("sum", "amount", "sum_amount"),
    ("sum", "qty", "sum_qty"), ("mean", "amount", "mean_amount"), ("min", "amount", "min_amount"),
    ("max", "qty", "max_qty"), ("last", "merchant", "last_merchant"), ("last", "amount", "last_amount"),
    ("stddev", "amount", "std_amount"), ("stddev_pop", "qty", "std_pop_qty"),
    ("count_distinct", "merchant", "distinct_merchants"), ("count_distinct", "flag", "distinct_flags"),
]
WINDOWS = {  # prefix -> (window, grace ms)
    "tum": (TumblingWindow(size=10_000), 2_000),
    "hop": (HoppingWindow(size=20_000, step=5_000), 3_000),
    "sli": (SlidingWindow(size=10_000), 2_000),
}


def golden_source() -> Source:
    return Source(name="cards", topic="golden", partitions=PARTITIONS, key="card_id", timestamp="ts",
                  schema=SCHEMA)


def golden_views() -> list[FeatureView]:
    aggs = [Aggregation(function=f, column=c, name=n) for f, c, n in AGGREGATIONS]
    return [FeatureView(name=f"{prefix}_{emit}", source=golden_source(), window=window, grace=grace,
                        emit=emit, aggregations=aggs, ttl="1d")
            for prefix, (window, grace) in WINDOWS.items() for emit in ("final", "current")]


DROP = object()  # a field left out of the record


def malformed(rng: random.Random, key: str, ts: int) -> tuple[str | None, bytes | None]:
    """One invalid record of a random kind (every reason the decoder knows), with its message key."""
    good = {"card_id": key, "amount": 12.5, "qty": 1, "merchant": "acme", "flag": True, "ts": ts}

    def edit(field: str, *values: Any) -> bytes:
        changed = {**good, field: rng.choice(values)}
        return json.dumps({k: v for k, v in changed.items() if v is not DROP}).encode()

    kinds = [
        lambda: (key, None),  # empty
        lambda: (key, rng.choice([json.dumps(good).encode()[:-7], b"\xff\xfe{not json", b"{'card_id': 1}", b"",
                                  json.dumps({**good, "amount": float("nan")}).encode()])),  # bad_json
        lambda: (key, rng.choice([b"[1, 2, 3]", b'"card"', b"42", b"null", b"true"])),  # not_an_object
        lambda: (rng.choice([key, None]), edit("card_id", DROP, "", None)),  # missing_key
        lambda: (key, edit("ts", DROP, None)),  # missing_timestamp
        lambda: (key, edit("ts", "yesterday", "2024-13-45T00:00:00Z", -5_000, True, "12:99", 10**17)),
        # wrong_type; an ISO-8601 or digit-string ts is wrong_type too, as the schema says ts is int
        lambda: (key, edit(*rng.choice([("amount", "12.50"), ("qty", 1.5), ("flag", "yes"), ("card_id", 7),
                                        ("merchant", 3), ("ts", "2023-11-14T22:13:20Z"), ("ts", str(ts)),
                                        ("ts", ts + 0.5)]))),
        lambda: (key, edit(rng.choice(["amount", "qty", "merchant", "flag"]), DROP, None)),  # missing_field
    ]
    return rng.choice(kinds)()


def generate(seed: int, cards: int = 40, mean_events: int = 48) -> list[tuple[int, str | None, bytes | None]]:
    """(partition, key, value) in production order; per card: bursts, duplicates, out of order, late, invalid."""
    rng = random.Random(seed)
    # seed 5 starts at 1 ms, not 0: the old engine re-keys through a topic whose message timestamp is the
    # event time, and librdkafka reads timestamp 0 as "now", so an event at 0 gets the wall-clock time
    base = 1 if seed == 5 else 1_700_000_000_000 + seed * 10**7
    timed: list[tuple[float, int, int, str | None, bytes | None]] = []  # (arrival, card, i, key, value)
    for c in range(cards):
        key = f"card-{c:02d}"
        style = rng.choice(["dense", "normal", "normal", "sparse"])
        t = base + (0 if (seed == 5 and c < 3) else rng.randint(0, 20_000))
        high = t
        for i in range(max(5, int(rng.gauss(mean_events, 12)))):
            r = rng.random()
            if r < 0.05:
                k, value = malformed(rng, key, high)
                timed.append((high, c, i, k, value))
                continue
            if r < 0.15:  # out of order, within grace
                ts = max(1, high - rng.randint(1, 2_000))
            elif r < 0.18:  # late: a few seconds to several window sizes behind
                ts = max(1, high - rng.choice([rng.randint(2_500, 9_000), rng.randint(10_000, 60_000)]))
            elif r < 0.23:  # exact duplicate of the card's latest time
                ts = high
            else:
                if style == "dense" or rng.random() < 0.15:
                    gap = rng.randint(0, 400)  # a burst: several events within a second
                elif style == "sparse" and rng.random() < 0.2:
                    gap = rng.randint(12_000, 45_000)
                else:
                    gap = int(rng.expovariate(1 / 2_500))
                t = high + gap
                ts = t
            high = max(high, ts)
            amount: float = round(rng.uniform(-5, 250), 2) if rng.random() < 0.95 else rng.randint(1, 50)
            event: dict[str, Any] = {"card_id": key, "amount": amount, "qty": rng.randint(-3, 9),
                                     "merchant": rng.choice(MERCHANTS), "flag": rng.random() < 0.5, "ts": ts}
            if rng.random() < 0.03:
                event["note"] = "extra field"
            timed.append((high + rng.random() * 300, c, i, key, json.dumps(event).encode()))
    timed.sort(key=lambda r: (r[0], r[1], r[2]))  # arrival order; per card the generated order holds
    by_card: dict[int, list[tuple[str | None, bytes | None]]] = {}
    for _arrival, c, _i, k, v in sorted(timed, key=lambda r: (r[1], r[2])):
        by_card.setdefault(c, []).append((k, v))
    out = []
    for _arrival, c, _i, _k, _v in timed:
        k, v = by_card[c].pop(0)
        out.append((c % PARTITIONS, k, v))
    return out


def produce(servers: Servers, topic: str, records: list[tuple[int, str | None, bytes | None]]) -> list[
        tuple[int, int]]:
    producer = Producer({**servers.kafka_config(), "linger.ms": 5, "enable.idempotence": False,
                         "max.in.flight.requests.per.connection": 1, "retries": 0})
    placed: list[tuple[int, int] | None] = [None] * len(records)

    def callback(i: int) -> Any:
        def done(err: Any, msg: Any) -> None:
            if err is not None:
                raise RuntimeError(f"delivery failed: {err}")
            placed[i] = (msg.partition(), msg.offset())
        return done

    for i, (partition, key, value) in enumerate(records):
        producer.produce(topic, value=value, key=key, partition=partition, on_delivery=callback(i))
        if i % 200 == 199:
            producer.flush(30)
    producer.flush(30)
    if any(p is None for p in placed):
        raise RuntimeError("some records were not delivered")
    last: dict[int, int] = {}
    for p, o in placed:  # type: ignore[misc]
        if o <= last.get(p, -1):
            raise RuntimeError(f"partition {p}: offsets do not follow production order")
        last[p] = o
    return placed  # type: ignore[return-value]


def read_log(root: Path, view: FeatureView) -> list[dict[str, Any]]:
    """The view's Parquet log with exact epoch-ms ints (harness.read_log goes through float seconds and
    can return 1 ms too little for small times, e.g. 4047 -> 4046)."""
    rows: list[dict[str, Any]] = []
    for path in list_parts(root, view):
        table = pq.read_table(path, schema=view_schema(view))
        for col in ("feature_ts", "window_start", "window_end"):
            i = table.schema.get_field_index(col)
            table = table.set_column(i, col, table.column(col).cast(pa.int64()))
        rows += table.to_pylist()
    return rows


def record_stream(servers: Servers, work: Path, seed: int, db: int) -> dict[str, Any]:
    run = f"golden-{seed}-{uuid.uuid4().hex[:8]}"
    views = golden_views()
    run_views = retarget(views, run)
    records = generate(seed)
    provision(servers, run, PARTITIONS)
    placed = produce(servers, run, records)
    db_servers = Servers(servers.kafka_bootstrap, redis_db(servers.redis_url, db), servers.origin)
    run_until_caught_up(run_views, pipeline_config(db_servers, work / run, run))
    rows: dict[str, list[dict[str, Any]]] = {}
    names = [a[2] for a in AGGREGATIONS]
    for view in run_views:
        rows[view.name] = sorted(
            ({"entity": r["card_id"], "feature_ts": r["feature_ts"], "window_start": r["window_start"],
              "window_end": r["window_end"], "source_partition": r["source_partition"],
              "source_offset": r["source_offset"], "features": {n: r[n] for n in names}}
             for r in read_log(work / run / "offline", view)),
            key=lambda r: (r["entity"], r["window_start"], r["window_end"], r["feature_ts"],
                           r["source_partition"], r["source_offset"]))
    late_keys = ["view", "entity", "event_ts", "late_by_ms", "window_start", "window_end",
                 "source_partition", "source_offset"]
    late = sorted(({k: body[k] for k in late_keys} for body in
                   (json.loads(m.value()) for m in read_topic(servers, f"{run}.late"))),
                  key=lambda r: tuple(r[k] for k in late_keys))
    value_at = {pos: value for pos, (_p, _k, value) in zip(placed, records, strict=True)}
    dlq = []
    for m in read_topic(servers, f"{run}.dlq"):
        h = {k: v.decode() for k, v in (m.headers() or [])}
        pos = (int(h["freshet.source.partition"]), int(h["freshet.source.offset"]))
        if (m.value() or None) != (value_at[pos] or None):
            raise RuntimeError(f"dead letter at {pos} does not carry the original bytes")
        dlq.append({"reason": h["freshet.reason"], "source_partition": pos[0], "source_offset": pos[1]})
    dlq.sort(key=lambda r: (r["source_partition"], r["source_offset"], r["reason"]))
    for view in views:
        if FeatureView.model_validate(view.model_dump(mode="json")) != view:
            raise RuntimeError(f"view {view.name} does not round-trip through model_dump/model_validate")
    return {
        "engine": "quixstreams-windows", "quixstreams": quixstreams.__version__, "commit": COMMIT,
        "seed": seed,
        "source": golden_source().model_dump(mode="json", by_alias=True),
        "views": [v.model_dump(mode="json") for v in views],
        "records": [{"partition": p, "offset": o, "key": k,
                     "value_b64": None if v is None else base64.b64encode(v).decode()}
                    for (p, o), (_p, k, v) in zip(placed, records, strict=True)],
        "rows": rows, "late": late, "dlq": dlq,
    }


def summarize(golden: dict[str, Any]) -> str:
    n = len(golden["records"])
    reasons = Counter(d["reason"] for d in golden["dlq"])
    rows = {v: len(r) for v, r in golden["rows"].items()}
    late = Counter(r["view"] for r in golden["late"])
    late_events = {v: len({(r["source_partition"], r["source_offset"]) for r in golden["late"] if r["view"] == v})
                   for v in rows}
    return (f"seed {golden['seed']}: records {n}, valid {n - len(golden['dlq'])}, dlq {dict(sorted(reasons.items()))}\n"
            f"  rows {rows}\n  late records {dict(late)}\n  late events {late_events}")


def write(golden: dict[str, Any], path: Path) -> None:
    text = json.dumps(golden, separators=(",", ":"), allow_nan=False).encode()
    path.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))


def comparable(golden: dict[str, Any]) -> Any:
    return {k: golden[k] for k in ("records", "rows", "late", "dlq")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--repeat", type=int, nargs="*", default=[], help="seeds to record twice and compare")
    args = parser.parse_args(argv)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head.startswith(COMMIT) or Path(topology.__file__).resolve().parents[1] != Path.cwd().resolve():
        parser.error(f"run from a checkout of {COMMIT} (HEAD here is {head or '?'}, engine {topology.__file__})")
    args.outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        work = Path(tmp)
        info = start_stack(work / "stack")
        try:
            servers = Servers(info.kafka_bootstrap, info.redis_url, "local binaries")
            for i, seed in enumerate(args.seeds):
                golden = record_stream(servers, work, seed, db=1 + i % 14)
                write(golden, args.outdir / f"stream-{seed}.json.gz")
                print(summarize(golden), flush=True)
                if seed in args.repeat:
                    again = record_stream(servers, work, seed, db=15)
                    same = comparable(again) == comparable(golden)
                    print(f"seed {seed}: second recording {'identical' if same else 'DIFFERS'}", flush=True)
                    if not same:
                        return 1
        finally:
            stop_stack(work / "stack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
