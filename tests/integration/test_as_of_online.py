"""Request-time views online, on a real Redis (one node) and a real Redis Cluster (3 masters).

- The accept script (through RedisOnlineWriter.add_accepted): idempotent, monotone under out-of-order
  flushes, trimmed behind the watermark, capped with the floor moved past what it dropped, expiring.
- The writer's guarantees for accepted events: a Redis that is down keeps the batch pending (sent when
  it is back), ``discard`` drops what was added since the last flush.
- Reads (sync and async clients, many entities and views in one call) equal the rule by brute force
  (``read_as_of``) at many instants: between events, on window edges, after silences, before the first
  window; for tumbling, hopping (a size that is not a multiple of the step too) and sliding views with
  all nine functions; a window before the floor raises AsOfHorizonError.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from freshet.features import FeatureView, HoppingWindow, SlidingWindow, TumblingWindow
from freshet.features.as_of import AcceptedEvent, AsOfHorizonError, read_as_of
from freshet.features.as_of_layout import (
    MAX_ONLINE_EVENTS,
    decode_member,
    events_key,
    events_meta_key,
    expire_ms,
    read_columns,
)
from freshet.features.online import AsyncOnlineClient, OnlineClient
from freshet.features.redis_connect import sync_client
from freshet.infra.localstack import free_port
from freshet.pipelines.online_sink import OnlineStoreUnavailable, RedisOnlineWriter
from tests.integration.conftest import Servers
from tests.integration.harness import start_redis
from tests.unit.test_operator_rules import AGGS, SOURCE

BASE = 1_700_000_000_000  # event times past 14 digits: the script must not round them
WINDOWS = {"tum": TumblingWindow(size=10_000), "hop": HoppingWindow(size=20_000, step=5_000),
           "hop3": HoppingWindow(size=9_000, step=6_000), "sli": SlidingWindow(size=10_000)}


def view_of(window: Any, name: str, **options: Any) -> FeatureView:
    return FeatureView(name=name, source=SOURCE, window=window, grace=3_000, aggregations=AGGS,
                       **{"ttl": "1d", "as_of": "request", **options})


def accept(writer: RedisOnlineWriter, view: FeatureView, entity: str, events: list[tuple[AcceptedEvent, int, int]]
           ) -> None:
    columns = read_columns(view)
    for ev, partition, offset in events:
        writer.add_accepted(view, entity, ev.ts, ev.first_start, partition, offset,
                            [ev.event.get(c) for c in columns])


def stored(url: str, view: FeatureView, entity: str) -> tuple[list[tuple[int, tuple[Any, ...]]], dict[str, int]]:
    """The set (time, decoded member) in score order, and the meta hash."""
    client = sync_client(url)
    try:
        members = client.zrange(events_key(view.name, view.version, entity), 0, -1, withscores=True)
        meta = client.hgetall(events_meta_key(view.name, view.version, entity))
    finally:
        client.close()
    return ([(int(score), decode_member(m)[:3]) for m, score in members],
            {k.decode(): int(v) for k, v in meta.items()})


def event(rng: random.Random, ts: int, first_start: int) -> AcceptedEvent:
    return AcceptedEvent(ts, {"x": rng.choice([None, round(rng.uniform(-50, 50), 3)]), "q": rng.randint(-5, 5),
                              "m": rng.choice("abc"), "ts": ts}, first_start)


def test_the_script_is_idempotent_monotone_and_trims(url: str, unique: str) -> None:
    # sliding 1 s, ttl 1 s: events stay 1 s behind the newest (retention = max(ttl, size + grace) = 4 s with
    # grace 3 s)
    view = view_of(SlidingWindow(size=1_000), f"trim_{unique}", ttl="1s")
    rng = random.Random(5)
    writer = RedisOnlineWriter(url, background=False, batch_size=1 << 20)
    try:
        newer = [(event(rng, BASE + 20_000 + i * 10, BASE + 20_000 + i * 10), 0, 100 + i) for i in range(50)]
        accept(writer, view, "e", newer)
        writer.flush()
        assert writer.events_added == 50
        first, meta = stored(url, view, "e")
        assert meta == {"wm": BASE + 20_490, "floor": BASE + 20_490 - 4_000}
        accept(writer, view, "e", newer)  # the same batch again (a retry, a replay): nothing changes
        writer.flush()
        assert writer.events_added == 50 and stored(url, view, "e") == (first, meta)

        # an older batch flushed late: what is behind the floor is not added; wm and floor stay
        older = [(event(rng, BASE + 15_000 + i * 100, BASE + 15_000 + i * 100), 0, i) for i in range(40)]
        accept(writer, view, "e", older)
        writer.flush()
        now, meta_now = stored(url, view, "e")
        assert meta_now == meta
        kept = [ev for ev, _p, _o in older if ev.ts >= meta["floor"]]
        assert len(kept) == 25 and len(now) == 50 + len(kept)
        assert all(ts >= meta["floor"] for ts, _m in now)

        # a newer batch moves wm and the floor up and trims what fell behind
        accept(writer, view, "e", [(event(rng, BASE + 30_000, BASE + 30_000), 1, 7)])
        writer.flush()
        after, meta_after = stored(url, view, "e")
        assert meta_after == {"wm": BASE + 30_000, "floor": BASE + 26_000}
        assert [ts for ts, _m in after] == [BASE + 30_000]

        client = sync_client(url)
        try:
            ttl = [client.pttl(k) for k in (events_key(view.name, 1, "e"), events_meta_key(view.name, 1, "e"))]
        finally:
            client.close()
        assert all(expire_ms(view) - 60_000 < t <= expire_ms(view) for t in ttl), ttl
    finally:
        writer.close()


def test_the_cap_moves_the_floor_past_what_it_drops(url: str, unique: str) -> None:
    view = view_of(SlidingWindow(size=600_000), f"hot_{unique}")
    rng = random.Random(9)
    # two events per millisecond (ties at the cut), 10,010 in all: over the cap by 10
    events = [(event(rng, BASE + i // 2, BASE + i // 2), i % 2, i) for i in range(MAX_ONLINE_EVENTS + 10)]
    writer = RedisOnlineWriter(url, background=False, batch_size=1 << 20)
    try:
        accept(writer, view, "hot", events)
        writer.flush()
    finally:
        writer.close()
    members, meta = stored(url, view, "hot")
    drop = 10 + MAX_ONLINE_EVENTS // 8  # the oldest eighth of the cap and what was over it
    floor = BASE + (drop - 1) // 2 + 1
    assert meta == {"wm": BASE + (MAX_ONLINE_EVENTS + 9) // 2, "floor": floor}
    assert [ts for ts, _m in members] == [ev.ts for ev, _p, _o in events if ev.ts >= floor]
    assert len(members) <= MAX_ONLINE_EVENTS - MAX_ONLINE_EVENTS // 8

    client = OnlineClient(url, {view.name: view})
    try:
        at = floor + 600_000  # the oldest instant whose window the store still holds whole
        got = client.get_online_features(["hot"], [view.name], at=at)[0]
        want = read_as_of(view, [ev for ev, _p, _o in events], at)
        assert want is not None and want.values["n"] > 0
        assert_same(got.values, view.name, want.values, (view.name, at))
        with pytest.raises(AsOfHorizonError, match="only from .* on.*training set"):
            client.get_online_features(["hot"], [view.name], at=at - 1)
    finally:
        client.close()


def test_an_outage_keeps_the_events_and_discard_drops_them(tmp_path: Path, unique: str) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis(port, tmp_path, persist=False)
    view = view_of(TumblingWindow(size=10_000), f"down_{unique}")
    rng = random.Random(3)
    writer = RedisOnlineWriter(url, background=False, batch_size=1 << 20)
    try:
        accept(writer, view, "e", [(event(rng, BASE + 1, BASE), 0, 1)])
        writer.flush()
        proc.terminate()
        proc.wait(10)
        second = [(event(rng, BASE + 2, BASE), 0, 2), (event(rng, BASE + 3, BASE), 0, 3)]
        accept(writer, view, "e", second)
        with pytest.raises(OnlineStoreUnavailable):
            writer.flush()
        with pytest.raises(OnlineStoreUnavailable):  # still pending, still refused
            writer.flush()
        proc = start_redis(port, tmp_path, persist=False)  # back, empty (no persistence)
        writer.flush()
        assert [ts for ts, _m in stored(url, view, "e")[0]] == [BASE + 2, BASE + 3]

        accept(writer, view, "e", [(event(rng, BASE + 4, BASE), 0, 4)])
        writer.discard()  # a rewind: the event will come again
        assert writer.write_pending() == 0
        assert [ts for ts, _m in stored(url, view, "e")[0]] == [BASE + 2, BASE + 3]
    finally:
        writer.close()
        proc.terminate()
        proc.wait(10)


# --- reads against the rule -----------------------------------------------------------------------


def first_start_of(window: Any, ts: int, rng: random.Random) -> int:
    """A window start the event may count from: sliding its time, tumbling its window, hopping one
    of the windows holding it (mostly the earliest; a later one as for a partly late event)."""
    if isinstance(window, SlidingWindow):
        return ts
    step, size = window.step, window.size
    starts = [s for s in range((ts - size) // step * step, ts + 1, step) if s >= 0 and s <= ts < s + size]
    return starts[0] if rng.random() < 0.75 else rng.choice(starts)


def stream(rng: random.Random, window: Any) -> list[tuple[AcceptedEvent, int, int]]:
    """An entity's accepted events in arrival order: bursts and silences, out of order, tied times."""
    times = sorted([BASE + rng.randint(0, 15_000) for _ in range(25)] + [BASE + rng.randint(40_000, 55_000)
                   for _ in range(20)] + [BASE + 100_000 + rng.randint(0, 3) for _ in range(6)])
    for i in range(0, len(times) - 1, 3):  # out of order in arrival
        times[i], times[i + 1] = times[i + 1], times[i]
    return [(event(rng, ts, first_start_of(window, ts, rng)), 0, i) for i, ts in enumerate(times)]


def instants(events: list[AcceptedEvent], views: list[FeatureView], rng: random.Random) -> list[int]:
    points = {BASE + 500_000}
    for ev in events:
        points.update((ev.ts - 1, ev.ts, ev.ts + 1))
    for view in views:
        step = view.window.size if isinstance(view.window, SlidingWindow) else view.window.step
        for start in range(BASE - BASE % step - step, BASE + 130_000, step):
            points.update((start, start + view.window.size - 1, start + view.window.size,
                           start + view.window.size + 1))
    return sorted(rng.sample(sorted(p for p in points if p >= BASE - 30_000), 180))


EARLY = [0, 1, 4_999, 5_000, 9_999, 10_000, 10_001]  # before the first window ends, and just after


def assert_same(got: dict[str, Any], label: str, want: dict[str, Any], where: Any) -> None:
    for name, value in want.items():
        have = got[f"{label}:{name}"]
        if isinstance(value, float) or isinstance(have, float):
            assert have is not None and value is not None and math.isclose(have, value, rel_tol=1e-9,
                                                                             abs_tol=1e-9), (where, name, have, value)
        else:
            assert have == value, (where, name, have, value)


@pytest.fixture(scope="module")
def rng() -> Iterator[random.Random]:
    yield random.Random(17)


def test_reads_follow_the_rule_at_many_instants(url: str, unique: str, rng: random.Random) -> None:
    views = {v.name: v for v in (view_of(w, f"{k}_{unique}") for k, w in WINDOWS.items())}
    entities = ["e0", "e1", "e2"]
    accepted: dict[tuple[str, str], list[AcceptedEvent]] = {}
    writer = RedisOnlineWriter(url, background=False, batch_size=1 << 20)
    try:
        for view in views.values():
            for n, entity in enumerate(entities):
                events = [(ev, n % 2, o) for ev, _p, o in stream(rng, view.window)]
                accepted[(view.name, entity)] = [ev for ev, _p, _o in events]
                accept(writer, view, entity, events)
        writer.flush()
    finally:
        writer.close()
    everything = [ev for evs in accepted.values() for ev in evs]
    asked = [*entities, "never-seen"]
    client = OnlineClient(url, views)
    checked = 0
    try:
        for t in instants(everything, list(views.values()), rng):
            vectors = client.get_online_features(asked, list(views), at=t)
            for vector in vectors:
                for name, view in views.items():
                    want = read_as_of(view, accepted.get((name, vector.entity), []), t)
                    fresh = vector.freshness[name]
                    if want is None:
                        assert fresh["found"] is False and t < view.window.size, (t, name)
                        assert all(vector.values[f"{name}:{f}"] is None for f in view.feature_names())
                        continue
                    assert fresh["found"] and fresh["feature_ts"] == want.feature_ts and not fresh["stale"]
                    assert_same(vector.values, name, want.values, (t, name, vector.entity))
                    checked += want.values["n"] > 0
        # before the first window (and a day before the events: behind the floor of an entity with events)
        for t in EARLY:
            for name, view in views.items():
                for entity in asked:
                    if entity in entities and not (t < view.window.size and view.window.type != "sliding"):
                        with pytest.raises(AsOfHorizonError):
                            client.get_online_features([entity], [name], at=t)
                        continue
                    vector = client.get_online_features([entity], [name], at=t)[0]
                    want = read_as_of(view, [], t)
                    assert vector.freshness[name]["found"] == (want is not None), (t, name)
                    if want is not None:
                        assert_same(vector.values, name, want.values, (t, name, entity))
    finally:
        client.close()
    assert checked > 1_000  # most reads saw events, not only empty windows

    async def read_async(at: int) -> list[dict[str, Any]]:
        aclient = AsyncOnlineClient(url, views)
        try:
            return [v.as_dict() for v in await aclient.get(asked, aclient.plan(list(views)), at)]
        finally:
            await aclient.close()

    client = OnlineClient(url, views, clock=lambda: (BASE + 50_000) / 1000)
    try:
        for at in (BASE + 12_345, BASE + 50_000):
            sync = [v.as_dict() for v in client.get_online_features(asked, list(views), at=at)]
            assert strip_age(asyncio.run(read_async(at))) == strip_age(sync)
        now = client.get_online_features(asked, list(views))  # no `at`: as of the clock's now
        assert strip_age([v.as_dict() for v in now]) == strip_age(
            [v.as_dict() for v in client.get_online_features(asked, list(views), at=BASE + 50_000)])
        assert now[0].freshness[f"sli_{unique}"]["age_ms"] == 0
    finally:
        client.close()


def strip_age(vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**v, "freshness": {k: {f: x for f, x in fresh.items() if f != "age_ms"}
                                for k, fresh in v["freshness"].items()}} for v in vectors]


def test_a_window_before_the_floor_is_refused(url: str, unique: str) -> None:
    view = view_of(TumblingWindow(size=60_000), f"old_{unique}", ttl="1m")  # retention: 1m + grace 3s + 1m
    writer = RedisOnlineWriter(url, background=False)
    rng = random.Random(1)
    try:
        accept(writer, view, "e", [(event(rng, BASE, BASE), 0, 0), (event(rng, BASE + 600_000, BASE + 600_000), 0, 1)])
        writer.flush()
    finally:
        writer.close()
    floor = BASE + 600_000 - 123_000
    assert stored(url, view, "e")[1]["floor"] == floor
    client = OnlineClient(url, {view.name: view})
    try:
        with pytest.raises(AsOfHorizonError, match=r"entity 'e'.*reach back 123s behind"):
            client.get_online_features(["e", "f"], [view.name], at=BASE + 120_000)
        edge = floor - floor % 60_000 + 60_000  # the first window starting at or after the floor
        got = client.get_online_features(["e"], [view.name], at=edge + 60_000)[0]
        assert got.values[f"{view.name}:n"] == 0 and got.freshness[view.name]["feature_ts"] == edge + 60_000
    finally:
        client.close()


def test_last_event_views_keep_their_reads(servers: Servers, unique: str) -> None:
    """A request mixing kinds is read in one script; `at` with a last-event view is refused."""
    from freshet.features.errors import RequestError

    tum, plain = f"tum_{unique}", f"plain_{unique}"
    views = {tum: view_of(TumblingWindow(size=10_000), tum),
             plain: view_of(TumblingWindow(size=10_000), plain, as_of="last_event")}
    raw = redis.Redis.from_url(servers.redis_url)
    raw.hset(f"freshet:{{k}}:{plain}:v1", mapping={"__ts": str(BASE), "__off": "3", "n": "4"})
    raw.close()
    client = OnlineClient(servers.redis_url, views, clock=lambda: BASE / 1000)
    try:
        vector = client.get_online_features(["k"], [plain, f"{tum}:n"])[0]
        assert vector.values == {f"{plain}:n": 4, **{f"{plain}:{f}": None for f in views[plain].feature_names()
                                                     if f != "n"}, f"{tum}:n": 0}
        assert vector.freshness[plain]["feature_ts"] == BASE
        with pytest.raises(RequestError, match=f"view '{plain}' answers with the value of the entity's newest"):
            client.get_online_features(["k"], [plain, tum], at=BASE)
        with pytest.raises(RequestError, match="out of range"):
            client.get_online_features(["k"], [tum], at=-1)
    finally:
        client.close()
