"""`python -m bench.read_paths`: SDK and HTTP latency, and training-set time and memory.

- SDK: ``OnlineClient.get_online_features`` for 1 entity x 3 views and 100
  entities x 3 views against a Redis holding 100k entities x 3 views.
- HTTP: ``freshet serve`` under a fixed request rate from one client (keep-alive),
  latency measured at the client.
- Training set: 1M labels against a 10M-row log (30 date partitions), Freshet's
  ``get_historical_features`` next to DuckDB's ASOF JOIN on the same files, each
  in a fresh process (time and peak RSS, reading the Parquet log included).

Results go to stdout as Markdown and, unless --no-record, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import EXAMPLE_REPO, REPO_ROOT, say, stack
from bench.report import publish, section_header

DAY = 86_400_000
BASE = 1_790_000_000_000


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fill_redis(url: str, views: list[Any], entities: int) -> None:
    from freshet.features.online_layout import encode_value, online_key
    from freshet.features.redis_connect import is_cluster, sync_client

    client = sync_client(url)
    now = int(time.time() * 1000)
    pipe = client.pipeline() if is_cluster(url) else client.pipeline(transaction=False)
    for i in range(entities):
        for view in views:
            fields: dict[str, str] = {"__ts": str(now - 1000), "__off": str(i)}
            for name, kind in view.feature_types().items():
                fields[name] = encode_value(i if kind == "int" else float(i) / 3)
            pipe.hset(online_key(view.name, view.version, f"card-{i:06d}"), mapping=fields)
        if i % 2000 == 0:
            pipe.execute()
    pipe.execute()


def sdk_latency(url: str, views: dict[str, Any], batch: int, iterations: int) -> dict[str, float]:
    from freshet.features.online import OnlineClient

    client = OnlineClient(url, views)
    names = sorted(views)
    samples = []
    for i in range(iterations + 200):
        entities = [f"card-{(i * 7919 + j) % 100_000:06d}" for j in range(batch)]
        t0 = time.perf_counter_ns()
        client.get_online_features(entities, names)
        if i >= 200:
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    client.close()
    return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "n": len(samples)}


def redis_floor(url: str, batch: int, iterations: int) -> dict[str, dict[str, float]]:
    """The same run's floor: a bare PING, and the same HMGETs as a plain redis-py pipeline."""
    import redis

    client = redis.Redis.from_url(url)
    views = ("card_spend_5m", "card_spend_1h", "card_activity_10m")
    out = {}
    for name in ("ping", "pipeline"):
        samples = []
        for i in range(iterations + 200):
            t0 = time.perf_counter_ns()
            if name == "ping":
                client.ping()
            else:
                pipe = client.pipeline(transaction=False)
                for v in views:
                    for j in range(batch):
                        pipe.hmget(f"freshet:{{card-{(i * 7919 + j) % 100_000:06d}}}:{v}:v1", ["__ts", "a", "b"])
                pipe.execute()
            if i >= 200:
                samples.append((time.perf_counter_ns() - t0) / 1e6)
        out[name] = {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "n": len(samples)}
    return out


SERVERS = {
    "new": ["-m", "freshet", "serve", "--quiet"],  # FastAPI; no access log, as the old one had none
    "legacy": ["-m", "bench.legacy_serve"],  # the 0.2 hand-written ASGI server
}


def http_latency(url: str, rate: float, seconds: float, batch: int, server: str = "new") -> dict[str, float]:
    from freshet.infra.localstack import free_port

    port = free_port()
    env = {**os.environ, "FRESHET_REDIS_URL": url}
    proc = subprocess.Popen([sys.executable, *SERVERS[server], "--repo", str(EXAMPLE_REPO),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=REPO_ROOT)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(100):
            try:
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                break
            except OSError:
                time.sleep(0.1)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        samples: list[float] = []
        interval = 1.0 / rate
        start = time.perf_counter()
        i = 0
        late = 0
        while time.perf_counter() - start < seconds:
            due = start + i * interval
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            elif now - due > interval:
                late += 1
            body = json.dumps({"entities": [f"card-{(i * 31 + j) % 100_000:06d}" for j in range(batch)],
                               "features": ["card_spend_5m", "card_spend_1h", "card_activity_10m"]})
            t0 = time.perf_counter_ns()
            conn.request("POST", "/features", body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            samples.append((time.perf_counter_ns() - t0) / 1e6)
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            i += 1
        return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "n": len(samples),
                "achieved_rps": len(samples) / seconds, "behind_schedule": late}
    finally:
        proc.terminate()
        proc.wait(10)


# --- training sets --------------------------------------------------------

def make_log(root: Path, rows: int, entities: int, days: int) -> None:
    """A 10M-row log of card_spend_5m, written through the real schema, one file per date."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from freshet.features.offline_layout import date_of, part_path, view_schema
    from freshet.features.registry import Registry

    view = Registry.load(EXAMPLE_REPO).view("card_spend_5m")
    schema = view_schema(view)
    per_day = rows // days
    names = pa.array([f"card-{i:06d}" for i in range(entities)])
    for d in range(days):
        rnd = pc.random(per_day)
        ent = pc.cast(pc.floor(pc.multiply(pc.random(per_day), entities)), pa.int64())
        ts = pc.add(pc.cast(pc.floor(pc.multiply(rnd, DAY - 1)), pa.int64()), BASE + d * DAY)
        table = pa.table({
            "card_id": pc.take(names, ent),
            "feature_ts": pc.cast(ts, pa.timestamp("ms", tz="UTC")),
            "window_start": pc.cast(pc.subtract(ts, 300_000), pa.timestamp("ms", tz="UTC")),
            "window_end": pc.cast(ts, pa.timestamp("ms", tz="UTC")),
            "txn_count": pc.cast(pc.floor(pc.multiply(pc.random(per_day), 20)), pa.int64()),
            "amount_sum": pc.multiply(pc.random(per_day), 500.0),
            "source_partition": pa.array([d % 4] * per_day, pa.int32()),
            "source_offset": pc.cast(pc.add(pc.cast(pc.floor(pc.multiply(rnd, 1e9)), pa.int64()), 0), pa.int64()),
            "produced_at": pc.cast(ts, pa.timestamp("ms", tz="UTC")),
        }, schema=schema)
        path = Path(part_path(root, view, date_of(BASE + d * DAY), d % 4, d * per_day))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def make_labels(path: Path, rows: int, entities: int, days: int) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = pa.array([f"card-{i:06d}" for i in range(entities)])
    ent = pc.cast(pc.floor(pc.multiply(pc.random(rows), entities)), pa.int64())
    ts = pc.add(pc.cast(pc.floor(pc.multiply(pc.random(rows), days * DAY)), pa.int64()), BASE)
    pq.write_table(pa.table({"card_id": pc.take(names, ent), "ts": pc.cast(ts, pa.timestamp("ms", tz="UTC"))}),
                   path)


FRESHET_JOIN = """
import sys, time
# VmHWM: this process's own peak RSS (ru_maxrss would carry the forking parent's peak across exec)
def peak_kb(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])
from pathlib import Path
import pyarrow.parquet as pq
from freshet.features.registry import Registry
from freshet.features.training import get_historical_features
t0 = time.perf_counter()
views = Registry.load(sys.argv[1]).views
out = get_historical_features(pq.read_table(sys.argv[2]), ["card_spend_5m"], views, sys.argv[3])
print(time.perf_counter() - t0, peak_kb(), out.num_rows,
      out.column("txn_count").null_count)
"""

DUCKDB_JOIN = """
import sys, time
# VmHWM: this process's own peak RSS (ru_maxrss would carry the forking parent's peak across exec)
def peak_kb(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])
import duckdb
t0 = time.perf_counter()
con = duckdb.connect()
n, nulls = con.execute(f'''
  with log as (select * from read_parquet('{sys.argv[3]}/card_spend_5m/v1/date=*/*.parquet')),
       labels as (select *, row_number() over () as rid from read_parquet('{sys.argv[2]}'))
  select count(*), count(*) - count(txn_count) from (
    select l.rid, case when epoch_ms(l.ts) - epoch_ms(f.feature_ts) <= 3600000 then f.txn_count end as txn_count,
           f.amount_sum, f.feature_ts from labels l
    asof left join log f on l.card_id = f.card_id and l.ts >= f.feature_ts)
''').fetchone()
print(time.perf_counter() - t0, peak_kb(), n, nulls)
"""


def run_join(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                            env=env)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    seconds, rss_kb, rows, nulls = result.stdout.split()[-4:]
    return {"seconds": float(seconds), "peak_rss_mb": int(rss_kb) / 1024, "rows": int(rows), "nulls": int(nulls)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_paths", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--log-rows", type=int, default=10_000_000)
    parser.add_argument("--http-rate", type=float, default=200.0)
    parser.add_argument("--http-seconds", type=float, default=15.0)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    from freshet.features.registry import Registry

    views = Registry.load(EXAMPLE_REPO).views
    lines = section_header("Read paths", "read_paths", argv)
    with tempfile.TemporaryDirectory(prefix="freshet-read-bench-") as tmp, stack(Path(tmp)) as s:
        say("filling Redis with 100k entities x 3 views")
        fill_redis(s.redis_url, list(views.values()), 100_000)
        lines += ["| measurement | p50 | p99 | samples | goal |", "| --- | --- | --- | --- | --- |"]
        for batch, goal in ((1, "p99 < 1 ms"), (100, "p99 < 3 ms")):
            say(f"SDK latency, {batch} entities x 3 views")
            floor = redis_floor(s.redis_url, batch, args.iterations)
            r = sdk_latency(s.redis_url, views, batch, args.iterations)
            label = f"{batch} entit{'y' if batch == 1 else 'ies'} x 3 views"
            lines.append(f"| SDK {label} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {r['n']} | {goal} |")
            lines.append(f"| baseline: redis-py pipeline of the same {3 * batch} HMGETs | "
                         f"{floor['pipeline']['p50_ms']:.3f} ms | {floor['pipeline']['p99_ms']:.3f} ms | "
                         f"{floor['pipeline']['n']} | - |")
        lines.append(f"| baseline: redis-py PING (the loopback round trip) | {floor['ping']['p50_ms']:.3f} ms | "
                     f"{floor['ping']['p99_ms']:.3f} ms | {floor['ping']['n']} | - |")
        for server, label in (("legacy", "0.2 hand-written ASGI server (baseline)"),
                              ("new", "FastAPI server (`freshet serve`)"),
                              ("legacy", "0.2 hand-written ASGI server again (drift check)")):
            say(f"HTTP latency at {args.http_rate:g} req/s: {label}")
            h = http_latency(s.redis_url, args.http_rate, args.http_seconds, 1, server)
            lines.append(f"| HTTP POST /features, 1 entity x 3 views at {args.http_rate:g} req/s, {label} "
                         f"(achieved {h['achieved_rps']:.0f}) | {h['p50_ms']:.3f} ms | {h['p99_ms']:.3f} ms | "
                         f"{h['n']} | - |")
        lines.append("")
        if not args.skip_training:
            root = Path(tmp) / "offline"
            labels = Path(tmp) / "labels.parquet"
            say(f"writing a {args.log_rows:,}-row log and {args.labels:,} labels")
            make_log(root, args.log_rows, 100_000, 30)
            make_labels(labels, args.labels, 100_000, 30)
            say("training set: Freshet")
            f = run_join(FRESHET_JOIN, str(EXAMPLE_REPO), str(labels), str(root))
            say("training set: DuckDB ASOF JOIN")
            try:
                d = run_join(DUCKDB_JOIN, str(EXAMPLE_REPO), str(labels), str(root))
            except Exception as exc:  # duckdb missing or failed: say so in the results
                d = {"seconds": float("nan"), "peak_rss_mb": float("nan"), "rows": 0, "nulls": 0}
                say(f"duckdb baseline failed: {exc}")
            lines += [f"Training set: {args.labels:,} labels x {args.log_rows:,}-row log (30 dates, 100k cards), "
                      "one view, time and peak RSS of a fresh process, reading Parquet included:", "",
                      "| engine | seconds | peak RSS | rows | null values |", "| --- | --- | --- | --- | --- |",
                      f"| Freshet get_historical_features (DuckDB engine: dedup ties, ASOF, TTL) | {f['seconds']:.2f} | {f['peak_rss_mb']:.0f} MB | "
                      f"{f['rows']:,} | {f['nulls']:,} |",
                      f"| DuckDB ASOF JOIN (TTL applied after; no tie-break on offset) | {d['seconds']:.2f} | "
                      f"{d['peak_rss_mb']:.0f} MB | {d['rows']:,} | {d['nulls']:,} |",
                      "", f"Ratio Freshet / DuckDB: {f['seconds'] / d['seconds']:.2f}x (goal: within 1.5x).", ""]
    return publish(lines, no_record=args.no_record)


if __name__ == "__main__":
    sys.exit(main())
