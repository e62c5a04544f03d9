"""`python -m bench.materialize`: refilling Redis from the log, next to a plain redis-py pipeline.

A Parquet log of one view (the example's ``card_spend_5m``: two features) holds two
rows for each of N entities (default 1,000,000), written in the log's own layout and
schema. Measured in one run, on one local Redis, each into an emptied database:

- (a) ``freshet materialize``'s work: ``freshet.pipelines.materialize.materialize_view`` (read
  the log, pick the latest row per entity, write each through the newer-wins script
  with its remaining TTL, 5,000 writes per round trip), in process;
- (b) the baseline: the same N hashes (same fields and values, from the same latest
  rows, already in memory) written with a plain redis-py pipeline of ``HSET`` +
  ``PEXPIRE`` per entity, 5,000 entities per ``execute()``, no script and no
  newer-wins check.

Results go to stdout as Markdown and, unless --no-record, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import example_views, say, stack
from bench.report import record

BATCH = 5_000


def write_log(root: Path, view: object, entities: int, end_ms: int) -> int:
    """Two rows per entity (an older and a newer one) in ``root``'s layout; returns the rows written."""
    from freshet.features.offline_layout import part_path, view_schema

    schema = view_schema(view)  # type: ignore[arg-type]
    per_file = 500_000
    written = 0
    for rnd in range(2):
        for first in range(0, entities, per_file):
            ids = range(first, min(first + per_file, entities))
            n = len(ids)
            ts = [end_ms - 600_000 + rnd * 300_000 - (i % 1000) * 60 for i in ids]
            table = pa.table({
                "card_id": [f"card-{i:07d}" for i in ids],
                "feature_ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                "window_start": pa.array([t - 300_000 for t in ts], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                "window_end": pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                "txn_count": pa.array([(i % 7) + rnd for i in ids], pa.int64()),
                "amount_sum": pa.array([(i % 1000) / 7 + rnd for i in ids], pa.float64()),
                "source_partition": pa.array([i % 4 for i in ids], pa.int32()),
                "source_offset": pa.array([rnd * entities + i for i in ids], pa.int64()),
                "produced_at": pa.array([end_ms] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            }, schema=schema)
            path = Path(part_path(root, view, "2026-11-23", rnd, first))  # type: ignore[arg-type]
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="zstd")
            written += n
    return written


def plain_pipeline(url: str, view: object, root: Path) -> tuple[float, int]:
    """Seconds to write the latest rows' hashes with HSET + PEXPIRE in a redis-py pipeline."""
    import redis

    from freshet.features.online_layout import encode_value, online_key
    from freshet.pipelines.materialize import latest_rows

    table, _ = latest_rows(root, view)  # type: ignore[arg-type]
    rows = table.to_pylist()
    names = view.feature_names()  # type: ignore[attr-defined]
    ttl = view.ttl  # type: ignore[attr-defined]
    client = redis.Redis.from_url(url)
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for n, row in enumerate(rows, start=1):
        key = online_key(view.name, view.version, row["card_id"])  # type: ignore[attr-defined]
        fields = {"__ts": int(row["feature_ts"].timestamp() * 1000), "__off": row["source_offset"],
                  "__ws": int(row["window_start"].timestamp() * 1000),
                  "__we": int(row["window_end"].timestamp() * 1000)}
        fields.update({name: encode_value(row[name]) for name in names})
        pipe.hset(key, mapping=fields)
        pipe.pexpire(key, ttl)
        if n % BATCH == 0:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - started, len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.materialize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=1_000_000, help="entities in the log (default 1,000,000)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    import redis

    from freshet.pipelines.materialize import materialize_view
    from freshet.pipelines.online_sink import RedisOnlineWriter

    view = example_views("transactions", ["card_spend_5m"])[0]
    workdir = Path(tempfile.mkdtemp(prefix="freshet-bench-mat-"))
    root = workdir / "offline"
    now = int(time.time() * 1000)
    started = time.perf_counter()
    rows = write_log(root, view, args.entities, now)
    say(f"log: {rows:,} rows for {args.entities:,} entities in {time.perf_counter() - started:.1f}s")
    with stack(workdir) as running:
        url = running.redis_url.rsplit("/", 1)[0] + "/3"
        client = redis.Redis.from_url(url)
        client.flushdb()
        writer = RedisOnlineWriter(url, background=False, batch_size=1 << 30)
        t0 = time.perf_counter()
        summary = materialize_view(root, view, writer)
        freshet_s = time.perf_counter() - t0
        writer.close()
        stored = client.dbsize()
        say(f"materialize: {summary.json()}; {stored:,} keys")
        client.flushdb()
        plain_s, plain_n = plain_pipeline(url, view, root)
        say(f"plain pipeline: {plain_n:,} hashes in {plain_s:.1f}s; {client.dbsize():,} keys")
        client.flushdb()
    machine = f"{platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}"
    section = "\n".join([
        f"## Materialize: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {machine}; Redis: the local stack's redis-server, one database emptied before each path",
        f"- command: `python -m bench.materialize --entities {args.entities}`",
        f"- log: view card_spend_5m v1, {rows:,} rows ({args.entities:,} entities x 2 rows), zstd Parquet",
        "",
        "| path | entities | seconds | entities/s | keys in Redis after |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| (a) `materialize_view`: read log + latest per entity + newer-wins script, TTL left "
        f"| {summary.written:,} | {freshet_s:.1f} | {summary.written / freshet_s:,.0f} | {stored:,} |",
        f"| (b) plain redis-py pipeline: HSET + PEXPIRE, same hashes already in memory "
        f"| {plain_n:,} | {plain_s:.1f} | {plain_n / plain_s:,.0f} | - |",
        "",
        f"(a) includes reading and reducing the {rows:,}-row log ({summary.log_rows:,} rows read); (b) starts "
        "from the latest rows in memory and checks nothing (no newer-wins, a fresher live value would be "
        "overwritten).",
        "",
    ])
    print(section)
    if not args.no_record:
        record(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
