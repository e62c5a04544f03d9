"""`python -m bench.as_of_training`: training sets of request-time views next to today's as-of join.

One run, on the example views (card_activity_10m: sliding 10m, count + count_distinct(merchant);
card_spend_1h: hopping 1h every 5m, count + sum(amount); card_spend_5m: tumbling 5m, count +
sum(amount)):

- one synthetic stream of --events card transactions (--entities cards, --days days, 4 source
  partitions keyed by card, merchants from 1,000) is written as each view's accepted-events log
  (``_accepted/<view>/v1``, the schema of ``features.as_of_layout``: one row per event);
- each view also gets a values log of --events rows (``<view>/v1``, random values, the same cards and
  days), what a ``last_event`` view is joined over today;
- --labels labels (card, time) over the same days.

Then, per view, each in a fresh process (time and peak RSS, reading the Parquet files and the labels
included), --repeat times, medians shown: ``get_historical_features`` of the view with
``as_of: last_event`` (the values-log as-of join) and with ``as_of: request`` (the as-of rule over the
accepted log), and for the sliding view the request-time read forced onto its window-function plan
(the plan for dense entities; the automatic choice is shown). Results go to stdout as Markdown and,
unless --no-record, to bench/RESULTS.md. Timings are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import EXAMPLE_REPO, REPO_ROOT, say
from bench.read_paths import BASE, DAY, make_labels
from bench.report import publish, section_header

VIEWS = ("card_activity_10m", "card_spend_1h", "card_spend_5m")
PARTITIONS = 4
MERCHANTS = 1_000

JOIN = """
import json, sys, time
# VmHWM: this process's own peak RSS (ru_maxrss would carry the forking parent's peak across exec)
def peak_kb(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])
import pyarrow.parquet as pq
from freshet.features import training_as_of
from freshet.features.registry import Registry
from freshet.features.training import get_historical_features
repo, labels, root, name, as_of, plan = sys.argv[1:7]
if plan == "window":
    training_as_of.JOIN_PAIRS_PER_ROW = -1.0
said = []
t0 = time.perf_counter()
view = Registry.load(repo).view(name).model_copy(update={"as_of": as_of})
out = get_historical_features(pq.read_table(labels), [name], {name: view}, root, progress=said.append)
seconds = time.perf_counter() - t0
first = view.feature_names()[0]
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb() / 1024, "rows": out.num_rows,
                  "nulls": out.column(first).null_count, "zeros": out.column(first).to_pylist().count(0),
                  "said": said}))
"""


def make_events(entities: int, days: int, events: int, day: int) -> dict[str, Any]:
    """One day's share of the stream: card index, event time, merchant, amount, partition, offset."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = events // days
    card = pc.cast(pc.floor(pc.multiply(pc.random(n), entities)), pa.int64())
    ts = pc.add(pc.cast(pc.floor(pc.multiply(pc.random(n), DAY - 1)), pa.int64()), BASE + day * DAY)
    partition = pc.cast(pc.bit_wise_and(card, PARTITIONS - 1), pa.int32())
    return {"card": card, "ts": ts, "partition": partition, "offset": pa.array(range(day * n, (day + 1) * n), pa.int64()),
            "merchant": pc.binary_join_element_wise(
                "m", pc.cast(pc.cast(pc.floor(pc.multiply(pc.random(n), MERCHANTS)), pa.int64()), pa.string()), ""),
            "amount": pc.multiply(pc.random(n), 500.0)}


def first_window_start(view: Any, ts: Any) -> Any:
    """The earliest window start each event counts in (no event is late here)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from freshet.features.definitions import SlidingWindow

    if isinstance(view.window, SlidingWindow):
        return ts
    size, step = view.window.size, view.window.step
    # the first multiple of step above ts - size: ((ts - size) // step + 1) * step (ts - size > 0 here)
    earliest = pc.multiply(pc.add(pc.divide(pc.subtract(ts, size), pa.scalar(step, pa.int64())), 1), step)
    return earliest


def write_logs(root: Path, labels: Path, entities: int, days: int, events: int, n_labels: int) -> None:
    """Every view's accepted log and values log (a file per date and partition), and the labels."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from freshet.features.as_of_layout import accepted_dir, accepted_schema, read_columns
    from freshet.features.offline_layout import date_of, part_path, view_schema
    from freshet.features.registry import Registry

    registry = Registry.load(EXAMPLE_REPO)
    views = [registry.view(name) for name in VIEWS]
    names = pa.array([f"card-{i:06d}" for i in range(entities)])
    ms = pa.timestamp("ms", tz="UTC")
    for day in range(days):
        ev = make_events(entities, days, events, day)
        n = len(ev["ts"])
        date = date_of(BASE + day * DAY)
        cards = pc.take(names, ev["card"])
        produced = pc.cast(ev["ts"], ms)
        for view in views:
            columns = {view.entity_key: cards, "event_ts": pc.cast(ev["ts"], ms),
                       "first_window_start": pc.cast(first_window_start(view, ev["ts"]), ms),
                       **{c: ev[c] for c in read_columns(view)}, "source_partition": ev["partition"],
                       "source_offset": ev["offset"], "produced_at": produced}
            table = pa.table(columns, schema=accepted_schema(view))
            for partition in range(PARTITIONS):  # part-<partition>-<first offset>, as the writer names them
                part = table.filter(pc.equal(table["source_partition"], partition))
                first = pc.min(part["source_offset"]).as_py()
                path = Path(f"{accepted_dir(root, view)}/date={date}/part-{partition}-{first}.parquet")
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(part, path)
            # the values log: as many rows, random values, the same cards and days
            ft = pc.add(pc.cast(pc.floor(pc.multiply(pc.random(n), DAY - 1)), pa.int64()), BASE + day * DAY)
            values = {view.entity_key: pc.take(names, pc.cast(pc.floor(pc.multiply(pc.random(n), entities)), pa.int64())),
                      "feature_ts": pc.cast(ft, ms), "window_start": pc.cast(pc.subtract(ft, view.window.size), ms),
                      "window_end": pc.cast(ft, ms)}
            for feature, kind in view.feature_types().items():
                random = pc.multiply(pc.random(n), 20.0)
                values[feature] = pc.cast(pc.floor(random), pa.int64()) if kind == "int" else random
            values |= {"source_partition": ev["partition"], "source_offset": ev["offset"], "produced_at": produced}
            table = pa.table(values, schema=view_schema(view))
            for partition in range(PARTITIONS):
                part = table.filter(pc.equal(table["source_partition"], partition))
                path = Path(part_path(root, view, date, partition, pc.min(part["source_offset"]).as_py()))
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(part, path)
    make_labels(labels, n_labels, entities, days)


def run_join(labels: Path, root: Path, view: str, as_of: str, plan: str = "auto") -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", JOIN, str(EXAMPLE_REPO), str(labels), str(root), view, as_of, plan],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def measure(labels: Path, root: Path, view: str, as_of: str, plan: str, repeat: int) -> dict[str, Any]:
    """The median of ``repeat`` fresh-process runs (by seconds), with every run's seconds."""
    runs = []
    for i in range(repeat):
        say(f"{view} as_of={as_of} plan={plan} ({i + 1}/{repeat})")
        runs.append(run_join(labels, root, view, as_of, plan))
    runs.sort(key=lambda r: r["seconds"])
    median = dict(runs[len(runs) // 2])
    median["all"] = [r["seconds"] for r in runs]
    median["median_s"] = statistics.median(median["all"])
    median["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return median


def _cell(r: dict[str, Any]) -> str:
    runs = r["all"]
    return f"{r['median_s']:.2f}" + (f" ({', '.join(f'{s:.2f}' for s in runs)})" if len(runs) > 1 else "")


def _plan(r: dict[str, Any]) -> str:
    said = " ".join(r["said"])
    for plan in ("join plan", "window plan"):
        if plan in said:
            return plan
    return "fixed windows" if "windows" in said else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.as_of_training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="events, and rows of each values log")
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process runs of each measurement; the median")
    parser.add_argument("--no-window-plan", action="store_true", help="skip the sliding view's forced window plan")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    import duckdb

    lines = section_header("Request-time training sets", "as_of_training", argv, f"DuckDB {duckdb.__version__}.")
    with tempfile.TemporaryDirectory(prefix="freshet-asof-bench-") as tmp:
        root, labels = Path(tmp) / "offline", Path(tmp) / "labels.parquet"
        say(f"writing {args.events:,} events as 3 accepted logs, 3 values logs of as many rows, {args.labels:,} labels")
        write_logs(root, labels, args.entities, args.days, args.events, args.labels)
        size_mb = {kind: sum(p.stat().st_size for p in root.glob(pattern)) / 2**20
                   for kind, pattern in (("accepted", "_accepted/*/v1/*/*.parquet"), ("values", "card_*/v1/*/*.parquet"))}
        rows = []
        for view in VIEWS:
            last = measure(labels, root, view, "last_event", "auto", args.repeat)
            request = measure(labels, root, view, "request", "auto", args.repeat)
            rows.append((view, last, request, "auto"))
            if view == "card_activity_10m" and not args.no_window_plan:
                rows.append((view, last, measure(labels, root, view, "request", "window", args.repeat), "window"))
    lines += [f"{args.labels:,} labels over {args.days} days and {args.entities:,} cards; per view an accepted log of "
              f"{args.events:,} events ({size_mb['accepted'] / 3:.0f} MB of Parquet) and a values log of "
              f"{args.events:,} rows ({size_mb['values'] / 3:.0f} MB), one file per date and source partition. Each run a fresh process "
              "(reading the labels and the logs included); seconds: the median (every run in brackets); "
              "peak RSS: the largest run's.", "",
              "| view | as_of: last_event (values log) s | as_of: request (accepted log) s | request / last_event | "
              "request-time plan | peak RSS last_event / request | rows | first feature null / 0 (request) |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for view, last, request, plan in rows:
        name, last_cell = (view, _cell(last)) if plan == "auto" else (f"{view} (window plan forced)", "(as above)")
        lines.append(f"| {name} | {last_cell} | {_cell(request)} | {request['median_s'] / last['median_s']:.2f}x | "
                     f"{_plan(request)} | {last['peak_rss_mb']:.0f} / {request['peak_rss_mb']:.0f} MB | "
                     f"{request['rows']:,} | {request['nulls']:,} / {request['zeros']:,} |")
    lines += ["", "The goal: a request-time training set within 3x of the last_event join of the same labels over a "
              "values log of as many rows. The window plan is what a sliding view takes when its entities are dense "
              "(many events per window and many labels): shown for its cost on the same data.", ""]
    return publish(lines, no_record=args.no_record)


if __name__ == "__main__":
    sys.exit(main())
