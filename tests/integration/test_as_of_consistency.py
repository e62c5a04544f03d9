"""Reads as of an instant agree everywhere: online (`at`), the training set, and brute force.

A stream with out-of-order, late and invalid records, duplicate times and long silences goes through
the live pipeline (real broker, real Redis, the Parquet log) for request-time views of every window
kind with all nine functions. Then, for every entity and many instants (on and between events, on and
next to window edges, after silences, far after the last event), three answers must be equal: the
online store's read with ``at``, the training set's row at a label with that time, and the rule by
brute force over the accepted events (those the independent window model of tests/window_reference.py
did not report late for every window they fall in).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa

from freshet.features import Aggregation, FeatureView, HoppingWindow, SlidingWindow, Source, TumblingWindow
from freshet.features.as_of import AcceptedEvent, AsOfValue
from freshet.features.online import OnlineClient
from freshet.features.training import get_historical_features
from tests.as_of_reference import accepted_by_reference, brute
from tests.integration.conftest import Servers
from tests.integration.harness import pipeline_config, produce, provision, redis_db, run_until_caught_up
from tests.operator_harness import same_value
from tests.window_reference import Event

SOURCE = Source(name="asof", topic="asof", partitions=2, key="k", timestamp="ts",
                schema={"k": "str", "x": "float", "q": "int", "m": "str", "ts": "int"})
AGGS = [Aggregation(function=f, column=c, name=n) for f, c, n in [
    ("count", None, "n"), ("sum", "x", "sx"), ("mean", "x", "mx"), ("min", "x", "lo"), ("max", "q", "hi"),
    ("last", "m", "lm"), ("stddev", "x", "sd"), ("stddev_pop", "q", "sdp"), ("count_distinct", "m", "dm")]]
SECOND = 1000
T0 = 1_700_000_040_000  # a multiple of 10 s, 20 s and 6 s


def views(topic: str, suffix: str) -> list[FeatureView]:
    """Request-time views of every kind over ``topic``, named with ``suffix`` (keys never meet an earlier run's)."""
    source = SOURCE.model_copy(update={"topic": topic, "name": topic})
    windows = {"tum": (TumblingWindow(size=10 * SECOND), "final", 2 * SECOND),
               "hop": (HoppingWindow(size=9 * SECOND, step=6 * SECOND), "final", 1 * SECOND),
               "sli": (SlidingWindow(size=10 * SECOND), "current", 2 * SECOND)}
    return [FeatureView(name=f"asof_{name}_{suffix}", source=source, window=window, emit=emit, grace=grace,
                        aggregations=AGGS, ttl="1d", as_of="request")
            for name, (window, emit, grace) in windows.items()]


def stream(seed: int, entities: int, per_entity: int) -> list[tuple[str, int, dict[str, Any]]]:
    """(entity, ts, event) in production order: runs of close events, jitter back (out of order, some
    late), repeated times, and silences of a minute or more."""
    rng = random.Random(seed)
    out = []
    clocks = {f"c{i:02d}": T0 + rng.randrange(0, 20 * SECOND) for i in range(entities)}
    for _ in range(per_entity):
        for entity in clocks:
            roll = rng.random()
            if roll < 0.05:
                clocks[entity] += rng.randrange(60, 180) * SECOND  # a long silence
            elif roll < 0.85:
                clocks[entity] += rng.randrange(0, 3 * SECOND)
            ts = clocks[entity] - (rng.randrange(0, 15 * SECOND) if rng.random() < 0.15 else 0)  # back in time
            event = {"k": entity, "x": round(rng.uniform(-50, 50), 3), "q": rng.randrange(-5, 6),
                     "m": rng.choice("abcd"), "ts": ts}
            out.append((entity, ts, event))
    return out


def instants(view: FeatureView, times: list[int]) -> list[int]:
    size = view.window.size
    step = size if isinstance(view.window, SlidingWindow) else view.window.step
    first, last = min(times), max(times)
    edges = {s + d for s in range(first - first % step, last + size + step, step) for d in (-1, 0, 1)}
    near = {ts + d for ts in times for d in (-1, 0, 1, size, size + 1)}
    far = {last + 10 * size, last + 3600 * SECOND}
    chosen = sorted(edges | near)
    return sorted(set(chosen[:: max(1, len(chosen) // 60)]) | far | {first - 1})


def values_equal(a: AsOfValue | None, b: dict[str, Any], names: list[str]) -> bool:
    if a is None:
        return all(b[n] is None for n in names)
    return all(same_value(a.values[n], b[n]) for n in names)


def test_online_training_and_brute_force_agree_at_every_instant(servers: Servers, unique: str,
                                                                 tmp_path: Path) -> None:
    topic = f"asof-{unique}"
    chosen = views(topic, unique.replace("-", "_"))
    provision(servers, topic, 2)
    records = stream(seed=7, entities=10, per_entity=40)
    # keyed by entity, an entity's events in one partition (its arrival order)
    payloads: list[tuple[int, str | None, Any]] = [(int(entity[1:]) % 2, entity, event)
                                                   for entity, _ts, event in records]
    payloads[17:17] = [(0, "c00", b"not json"), (1, "c01", {"k": "c01", "x": 1.0})]  # dead letters
    positions = produce(servers, topic, payloads)
    events: list[Event] = []
    for (_p, _key, body), (partition, offset) in zip(payloads, positions, strict=True):
        if isinstance(body, dict) and "ts" in body:
            events.append((body["ts"], body, partition, offset))
    events.sort(key=lambda e: (e[2], e[3]))  # read order within each partition: an entity's order
    accepted = accepted_by_reference(chosen, events)

    redis_url = redis_db(servers.redis_url, 9)
    config = pipeline_config(servers, tmp_path, f"asof-{unique}")
    config.redis_url = redis_url
    stats = run_until_caught_up(chosen, config)
    assert stats["invalid"] == 2 and stats["late"] > 0, stats

    registry = {v.name: v for v in chosen}
    client = OnlineClient(redis_url, registry)
    checked = nonempty = 0
    try:
        for view in chosen:
            names = view.feature_names()
            features = [f"{view.name}:{n}" for n in names]
            entities = sorted(accepted[view.name])
            label_rows: list[tuple[str, int]] = []
            expected: dict[tuple[str, int], AsOfValue | None] = {}
            for entity in entities:
                mine: list[AcceptedEvent] = [e for _o, e in accepted[view.name][entity]]
                for t in instants(view, [e.ts for e in mine]):
                    expected[(entity, t)] = brute(view, mine, t)
                    label_rows.append((entity, t))
            # online, with `at`: one call per instant for every entity
            for t in sorted({t for _e, t in label_rows}):
                asked = [e for e in entities if (e, t) in expected]
                for entity, vector in zip(asked, client.get_online_features(asked, features, at=t), strict=True):
                    got = {n: vector.values[f"{view.name}:{n}"] for n in names}
                    assert values_equal(expected[(entity, t)], got, names), (view.name, entity, t, got,
                                                                             expected[(entity, t)])
                    checked += 1
                    nonempty += bool(expected[(entity, t)] and expected[(entity, t)].values["n"])
            # the training set: a label per (entity, instant)
            labels = pa.table({"k": [e for e, _t in label_rows], "ts": [t for _e, t in label_rows]})
            table = get_historical_features(labels, features, registry, tmp_path / "offline").to_pylist()
            assert len(table) == len(label_rows)
            for row in table:
                want = expected[(row["k"], row["ts"])]
                assert values_equal(want, row, names), (view.name, row, want)
    finally:
        client.close()
    assert checked > 1000 and checked / 4 < nonempty < checked  # windows with events, and empty ones
