"""A known event sequence through the real pipeline: Parquet rows, Redis values, DLQ and late topics.

Expectations are computed here, independently of the pipeline's code, from the
rules in DESIGN.md: per-key watermark = the largest event time read for the
key; a window [start, end) closes once watermark - grace >= end; a `final`
value is emitted at close with feature_ts = end; a `current` value is emitted
for each on-time event with feature_ts = its event time; an event whose window
already closed is late.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.features.online_layout import decode_value, online_key
from tests.integration.conftest import Servers
from tests.integration.harness import (
    pipeline_config,
    produce,
    provision,
    read_log,
    read_topic,
    run_until_caught_up,
)

T = 1_700_000_040_000  # a whole minute
assert T % 60_000 == 0
SIZE, GRACE = 60_000, 10_000


def make_views(topic: str) -> list[FeatureView]:
    source = Source(name="tx", topic=topic, partitions=2, key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "merchant": "str", "ts": "int"})
    aggs = [Aggregation(function="count", name="n"), Aggregation(function="sum", column="amount", name="total"),
            Aggregation(function="max", column="amount", name="biggest")]
    return [
        FeatureView(name="spend_final", source=source, window=TumblingWindow(size=SIZE), grace=GRACE,
                    emit="final", aggregations=aggs, ttl="1d"),
        FeatureView(name="spend_current", source=source, window=TumblingWindow(size=SIZE), grace=GRACE,
                    emit="current", aggregations=aggs, ttl="1d"),
    ]


def ev(card: str, dt_s: float, amount: float) -> dict[str, Any]:
    return {"card_id": card, "amount": amount, "merchant": "m1", "ts": T + int(dt_s * 1000)}


# (partition, message key, value): card a on partition 0, cards b and c on partition 1.
# Two of a's events carry a wrong message key: the pipeline must re-key by card_id.
RECORDS: list[tuple[int, str | None, Any]] = [
    (0, "a", ev("a", 1, 1.0)),
    (1, "b", ev("b", 2, 10.0)),
    (0, "a", ev("a", 20, 2.0)),
    (0, "zzz", ev("a", 5, 4.0)),             # out of order, same window, wrong message key
    (1, "b", b"{not json"),                   # malformed: bad JSON
    (0, "a", ev("a", 61, 8.0)),              # watermark 61s: window [0,60) still open (grace)
    (0, "a", ev("a", 55, 16.0)),             # within grace: counted in [0,60)
    (1, "c", ev("c", 10, 5.0)),              # c's only event: its window never closes
    (0, "a", ev("a", 75, 32.0)),             # watermark 75s: [0,60) closes, emitted
    (0, "a", ev("a", 30, 64.0)),             # late for [0,60): to the late topic
    (1, "b", {"card_id": "b", "amount": 1.0, "merchant": "m1"}),            # malformed: no ts
    (1, "b", {"card_id": "b", "amount": "ten", "merchant": "m1", "ts": T}),  # malformed: wrong type
    (1, None, {"amount": 1.0, "merchant": "m1", "ts": T}),                  # malformed: no key
    (1, "b", ev("b", 200, 20.0)),            # b's watermark 200s: [0,60) closes
    (1, "wrong", ev("b", 3, 99.0)),          # late for b's [0,60), wrong message key
    (0, "a", ev("a", 130, 128.0)),           # a's [60,120) closes
]
MALFORMED = {4: "bad_json", 10: "missing_timestamp", 11: "wrong_type", 12: "missing_key"}


def reference(offsets: list[tuple[int, int]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[tuple[str, int]]]:
    """(final rows, current rows, late (card, offset)) computed from the rules."""
    watermark: dict[str, int] = {}
    windows: dict[tuple[str, int], list[tuple[float, int]]] = {}
    closed: set[tuple[str, int]] = set()
    finals, currents, late = [], [], set()
    for i, (_p, _key, value) in enumerate(RECORDS):
        if i in MALFORMED:
            continue
        card, ts, amount = value["card_id"], value["ts"], value["amount"]
        part, off = offsets[i]
        start = ts - ts % SIZE
        wm = max(watermark.get(card, 0), ts)
        watermark[card] = wm
        if (card, start) in closed or start + SIZE <= wm - GRACE:
            late.add((card, off))
        else:
            windows.setdefault((card, start), []).append((amount, off))
            vals = [a for a, _ in windows[(card, start)]]
            currents.append({"card_id": card, "feature_ts": ts, "window_start": start, "n": len(vals),
                             "total": sum(vals), "biggest": max(vals), "source_offset": off,
                             "source_partition": part})
        for (c, s), items in sorted(windows.items()):
            if c == card and (c, s) not in closed and s + SIZE <= wm - GRACE:
                closed.add((c, s))
                vals = [a for a, _ in items]
                finals.append({"card_id": c, "feature_ts": s + SIZE, "window_start": s, "n": len(vals),
                               "total": sum(vals), "biggest": max(vals), "source_offset": off,
                               "source_partition": part})
    return finals, currents, late


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["card_id"], row["feature_ts"], row["window_start"], row["n"], row["total"], row["biggest"],
            row["source_partition"], row["source_offset"])


def test_known_sequence(servers: Servers, unique: str, work_dir: Path) -> None:
    topic = f"known-{unique}"
    views = make_views(topic)
    provision(servers, topic, 2)
    offsets = produce(servers, topic, RECORDS)
    stats = run_until_caught_up(views, pipeline_config(servers, work_dir, f"known-{unique}"))

    finals, currents, late = reference(offsets)
    assert len(finals) == 3 and len(late) == 2  # the scenario exercises what it claims to

    final_rows = read_log(work_dir / "offline", views[0])
    assert sorted(map(_key, final_rows)) == sorted(map(_key, finals))
    current_rows = read_log(work_dir / "offline", views[1])
    assert sorted(map(_key, current_rows)) == sorted(map(_key, currents))
    for row in final_rows:
        assert row["window_end"] == row["window_start"] + SIZE

    # counters
    assert stats["read"] == len(RECORDS)
    assert stats["invalid"] == len(MALFORMED)
    assert stats["late_by_view"] == {"spend_final": 2, "spend_current": 2}

    # Redis holds, per card and view, the row with the largest (feature_ts, offset)
    client = redis.Redis.from_url(servers.redis_url)
    for view, rows in ((views[0], finals), (views[1], currents)):
        for card in ("a", "b", "c"):
            mine = [r for r in rows if r["card_id"] == card]
            stored = client.hgetall(online_key(view.name, view.version, card))
            if not mine:
                assert stored == {}, (view.name, card)
                continue
            best = max(mine, key=lambda r: (r["feature_ts"], r["source_offset"]))
            assert int(stored[b"__ts"]) == best["feature_ts"]
            assert int(stored[b"__off"]) == best["source_offset"]
            assert decode_value(stored[b"n"]) == best["n"]
            assert decode_value(stored[b"total"]) == best["total"]
            ttl = client.pttl(online_key(view.name, view.version, card))
            assert 0 < ttl <= 86_400_000

    # dead letters: original bytes and the reason in a header
    dlq = read_topic(servers, f"{topic}.dlq")
    by_offset = {(m.partition(), int(dict(m.headers())["freshet.source.offset"])): m for m in dlq}
    assert len(dlq) == len(MALFORMED)
    for i, reason in MALFORMED.items():
        msg = by_offset[offsets[i]]
        headers = dict(msg.headers())
        assert headers["freshet.reason"].decode() == reason
        raw = RECORDS[i][2]
        assert msg.value() == (raw if isinstance(raw, bytes) else json.dumps(raw).encode())

    # late events: view, window and how late, one record per view and window
    late_records = [json.loads(m.value()) for m in read_topic(servers, f"{topic}.late")]
    assert {(r["entity"], r["source_offset"]) for r in late_records} == late
    assert sorted(r["view"] for r in late_records) == ["spend_current"] * 2 + ["spend_final"] * 2
    for r in late_records:
        assert r["window_start"] == T and r["window_end"] == T + SIZE
        assert r["late_by_ms"] > 0
