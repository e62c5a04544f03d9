"""`python -m bench.as_of_reads`: request-time views online (issue 11): read latency next to last-event
views on the same data, Redis memory per entity, and a hot entity.

- Data: the example views (examples/fraud: tumbling 5m, hopping 1h/5m, sliding 10m) twice: as they are
  (``as_of: last_event``: one hash per entity and view) and as request-time copies (``as_of: request``:
  each entity's accepted events in a sorted set per view, plus its meta hash), written through the
  pipeline's writer (``RedisOnlineWriter.add`` / ``add_accepted``). ``--entities`` cards make one
  transaction every ``--every`` minutes on average (Poisson) over the last 2 hours (the longest retention
  of the example views: its ttl); ``--quiet-entities`` more make one an hour.
- Latency: ``OnlineClient.get_online_features`` as of now, 1 and 100 entities x 3 views, p50/p99 over
  ``--iterations`` reads after 200 warm-up reads; the same entities for both kinds.
- Memory: ``MEMORY USAGE <key> SAMPLES 0`` of every key of 1,000 entities of each density, per view.
- Hot entity: 10,000 transactions in the last 10 minutes (the cap per key): its 3 request-time views
  read together and its sliding view alone (p50/p99), and its keys' memory.

Results go to stdout as Markdown and, unless --no-record, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import EXAMPLE_REPO, say, stack
from bench.read_paths import pct
from bench.report import publish, section_header

SPAN_MS = 2 * 3_600_000  # the longest retention of the example views (card_spend_1h: ttl 2h)
HOT_EVENTS = 10_000


def request_time(views: dict[str, Any]) -> dict[str, Any]:
    return {name: view.model_copy(update={"as_of": "request"}) for name, view in views.items()}


def first_start(view: Any, ts: int) -> int:
    window = view.window
    if window.type == "sliding":
        return ts
    return max(0, ((ts - window.size) // window.step + 1) * window.step)


def fill(url: str, last: dict[str, Any], request: dict[str, Any], entities: list[str], every_min: float,
         now: int, rng: random.Random) -> int:
    """Each entity's transactions over the last 2 hours into both kinds of views; returns the events."""
    from freshet.features.as_of_layout import read_columns
    from freshet.features.online_layout import online_key
    from freshet.pipelines.online_sink import RedisOnlineWriter

    writer = RedisOnlineWriter(url, background=False, batch_size=20_000)
    columns = {name: read_columns(view) for name, view in request.items()}
    offset = total = 0
    try:
        for entity in entities:
            times = sorted(now - int(rng.random() * SPAN_MS) for _ in range(_poisson(rng, SPAN_MS / 60_000 / every_min)))
            total += len(times)
            for ts in times:
                offset += 1
                event = {"amount": round(rng.lognormvariate(3.5, 1.0), 2), "merchant": f"m-{rng.randrange(5000):05d}"}
                for name, view in request.items():
                    writer.add_accepted(view, entity, ts, first_start(view, ts), offset % 4, offset,
                                        [event[c] for c in columns[name]])
            for view in last.values():  # the value emitted with the entity's last event
                types = view.feature_types()
                values = [rng.randrange(20) if types[f] == "int" else round(rng.random() * 500, 2)
                          for f in view.feature_names()]
                ts = times[-1] if times else now - SPAN_MS
                writer.add(online_key(view.name, view.version, entity), ts, offset, view.ttl, view.feature_names(),
                           values, ts - view.window.size, ts)
        writer.flush()
    finally:
        writer.close()
    return total


def _poisson(rng: random.Random, mean: float) -> int:
    n, t = 0, rng.expovariate(1.0)
    while t < mean:
        n += 1
        t += rng.expovariate(1.0)
    return n


def latency(read: Callable[[int], Any], iterations: int, warmup: int = 200) -> dict[str, float]:
    """p50/p99 of ``read``; what the bench built before (its data, the clients) is frozen out of the
    collector's sight first, as `freshet serve` does at start-up, so both kinds pay only for their own
    allocations (without it a full collection walking the bench's heap lands in one kind's p99)."""
    gc.collect()
    gc.freeze()
    samples = []
    for i in range(iterations + warmup):
        t0 = time.perf_counter_ns()
        read(i)
        if i >= warmup:
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "n": len(samples)}


def memory(url: str, last: dict[str, Any], request: dict[str, Any], entities: list[str]) -> dict[str, float]:
    """Mean bytes per entity of each view's keys (MEMORY USAGE, exact)."""
    import redis

    from freshet.features.as_of_layout import events_key, events_meta_key
    from freshet.features.online_layout import online_key

    client = redis.Redis.from_url(url)
    out: dict[str, float] = {}
    try:
        for name, view in last.items():
            pipe = client.pipeline(transaction=False)
            for e in entities:
                pipe.memory_usage(online_key(name, view.version, e), samples=0)
            out[f"last:{name}"] = sum(b or 0 for b in pipe.execute()) / len(entities)
        for name, view in request.items():
            pipe = client.pipeline(transaction=False)
            for e in entities:
                pipe.memory_usage(events_key(name, view.version, e), samples=0)
                pipe.memory_usage(events_meta_key(name, view.version, e), samples=0)
            out[f"request:{name}"] = sum(b or 0 for b in pipe.execute()) / len(entities)
            counts = client.pipeline(transaction=False)
            for e in entities:
                counts.zcard(events_key(name, view.version, e))
            out[f"events:{name}"] = sum(counts.execute()) / len(entities)
    finally:
        client.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.as_of_reads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=20_000, help="busy cards (default 20000)")
    parser.add_argument("--every", type=float, default=10.0, help="minutes between a busy card's transactions")
    parser.add_argument("--quiet-entities", type=int, default=1_000, help="cards with one transaction an hour")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--hot-iterations", type=int, default=100)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    import redis

    from freshet.features.online import OnlineClient
    from freshet.features.registry import Registry

    # the example's views read both ways (they are request-time since 0.4): the same definitions otherwise
    last = {name: view.model_copy(update={"as_of": "last_event"})
            for name, view in Registry.load(EXAMPLE_REPO).views.items()}
    request = request_time(last)
    names = sorted(last)
    rng = random.Random(11)
    busy = [f"card-{i:06d}" for i in range(args.entities)]
    quiet = [f"quiet-{i:06d}" for i in range(args.quiet_entities)]
    lines = section_header(
        "Request-time reads (as_of: request)", "as_of_reads", argv,
        f"Example views ({', '.join(f'{n} {last[n].window.describe()}' for n in names)}), each also as a "
        f"request-time copy; {args.entities:,} cards with a transaction every {args.every:g} min on average and "
        f"{args.quiet_entities:,} with one an hour, over the last 2 hours.")
    with tempfile.TemporaryDirectory(prefix="freshet-as-of-bench-") as tmp, stack(Path(tmp)) as s:
        now = int(time.time() * 1000)
        say(f"writing {args.entities:,} busy and {args.quiet_entities:,} quiet cards")
        started = time.perf_counter()
        events = fill(s.redis_url, last, request, busy, args.every, now, rng)
        events += fill(s.redis_url, last, request, quiet, 60.0, now, rng)
        fill_s = time.perf_counter() - started
        version = redis.Redis.from_url(s.redis_url).info("server")["redis_version"]
        lines += [f"Redis {version}; {events:,} transactions written in {fill_s:.1f} s (x 3 request-time views "
                  "through `add_accepted`, plus the last-event hashes through `add`).", "",
                  "| read (SDK, as of now) | kind | p50 | p99 | samples |", "| --- | --- | ---: | ---: | ---: |"]
        clients = {"last_event": OnlineClient(s.redis_url, last), "request": OnlineClient(s.redis_url, request)}
        try:
            for batch in (1, 100):
                for kind, client in clients.items():
                    say(f"latency: {batch} x 3 views, {kind}")
                    r = latency(lambda i, c=client, b=batch: c.get_online_features(
                        [busy[(i * 7919 + j) % len(busy)] for j in range(b)], names), args.iterations)
                    lines.append(f"| {batch} entit{'y' if batch == 1 else 'ies'} x 3 views | {kind} | "
                                 f"{r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {r['n']} |")
            say("memory")
            mem = {label: memory(s.redis_url, last, request, group[:1000])
                   for label, group in (("busy", busy), ("quiet", quiet))}
            say(f"hot entity: {HOT_EVENTS:,} transactions in the last 10 minutes")
            hot_now = int(time.time() * 1000)
            hot_writer_started = time.perf_counter()
            _fill_hot(s.redis_url, request, hot_now, rng)
            hot_fill_s = time.perf_counter() - hot_writer_started
            hot = clients["request"]
            hot_all = latency(lambda _i: hot.get_online_features(["hot-card"], names), args.hot_iterations, 10)
            hot_sliding = latency(lambda _i: hot.get_online_features(["hot-card"], ["card_activity_10m"]),
                                  args.hot_iterations, 10)
            hot_mem = memory(s.redis_url, last, request, ["hot-card"])
            got = hot.get_online_features(["hot-card"], names)[0].values
        finally:
            for client in clients.values():
                client.close()
    lines += [f"| hot card ({HOT_EVENTS:,} events in 10 min), 1 entity x 3 views | request | "
              f"{hot_all['p50_ms']:.3f} ms | {hot_all['p99_ms']:.3f} ms | {hot_all['n']} |",
              f"| hot card, the sliding 10m view alone ({got['card_activity_10m:txn_count_10m']:,} events in "
              f"its window) | request | {hot_sliding['p50_ms']:.3f} ms | {hot_sliding['p99_ms']:.3f} ms | "
              f"{hot_sliding['n']} |", "",
              "Redis memory per entity (`MEMORY USAGE ... SAMPLES 0` over each key of 1,000 entities; request-time: "
              "the events' sorted set plus its meta hash):", "",
              "| view | density | events kept (mean) | request-time bytes | last-event hash bytes |",
              "| --- | --- | ---: | ---: | ---: |"]
    for label, per in (("busy", mem["busy"]), ("quiet", mem["quiet"]), ("hot card", hot_mem)):
        density = {"busy": f"1 per {args.every:g} min", "quiet": "1 per hour",
                   "hot card": f"{HOT_EVENTS:,} in 10 min"}[label]
        for name in names:
            lines.append(f"| {name} | {density} | {per[f'events:{name}']:,.1f} | {per[f'request:{name}']:,.0f} | "
                         f"{per[f'last:{name}']:,.0f} |")
        total_req = sum(per[f"request:{n}"] for n in names)
        total_last = sum(per[f"last:{n}"] for n in names)
        lines.append(f"| all 3 views | {density} | | {total_req:,.0f} | {total_last:,.0f} |")
    lines += ["", f"The hot card's {HOT_EVENTS * 3:,} events (3 views) were written in {hot_fill_s:.2f} s. "
              "Reads fold the window's events in Python (decode + sort + the view's folds), so their cost grows "
              "with the events in the window; past the cap (10,000 events per key) the oldest go, the floor "
              "moves past them and windows before it are refused.", ""]
    return publish(lines, no_record=args.no_record)


def _fill_hot(url: str, request: dict[str, Any], now: int, rng: random.Random) -> None:
    from freshet.features.as_of_layout import read_columns
    from freshet.pipelines.online_sink import RedisOnlineWriter

    writer = RedisOnlineWriter(url, background=False, batch_size=1 << 30)
    try:
        for i in range(HOT_EVENTS):
            ts = now - 600_000 + i * 600_000 // HOT_EVENTS
            event = {"amount": round(rng.lognormvariate(3.5, 1.0), 2), "merchant": f"m-{rng.randrange(500):05d}"}
            for view in request.values():
                writer.add_accepted(view, "hot-card", ts, first_start(view, ts), 1, 10_000_000 + i,
                                    [event[c] for c in read_columns(view)])
        writer.flush()
    finally:
        writer.close()


if __name__ == "__main__":
    sys.exit(main())
