"""`python -m bench.object_store`: the training set over a log on S3 next to the same log on local disk.

One run: a log of card_spend_5m with --log-rows rows (30 date partitions, 100k cards) and --labels
labels are written to a local directory, and the same files are copied to a local S3-compatible
server (SeaweedFS ``weed mini``, from the dev extra). Then, each in a fresh process (time and peak RSS,
reading the Parquet log included):

- Freshet's ``get_historical_features`` over the local directory;
- the same over ``s3://`` (pyarrow's S3 filesystem; DuckDB scans the pyarrow dataset);
- the baselines: pyarrow reading the needed columns of the whole log, from disk and from S3 (the
  floor of any join over it), and DuckDB's own ASOF JOIN over the local files.

Both sides run the same code on the same bytes: the difference is the storage. Results go to
stdout as Markdown and, unless --no-record, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.common import say
from bench.read_paths import DUCKDB_JOIN, EXAMPLE_REPO, FRESHET_JOIN, make_labels, make_log, run_join
from bench.report import publish, section_header

READ_LOG = """
import sys, time
# VmHWM: this process's own peak RSS (ru_maxrss would carry the forking parent's peak across exec)
def peak_kb(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])
import pyarrow.dataset as ds
from freshet.features.log_store import open_log_root
t0 = time.perf_counter()
root = open_log_root(sys.argv[3])
files = [p for p in root.files(root.join("card_spend_5m", "v1")) if p.endswith(".parquet")]
table = root.dataset(files).to_table(columns=["card_id", "feature_ts", "source_partition", "source_offset",
                                              "txn_count", "amount_sum"])
print(time.perf_counter() - t0, peak_kb(), table.num_rows, 0)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.object_store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=1_000_000, help="label rows (default 1,000,000)")
    parser.add_argument("--log-rows", type=int, default=10_000_000, help="log rows (default 10,000,000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement; the median is shown")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    import pyarrow.fs as pafs

    from freshet.infra.object_store import s3_filesystem, start_object_store, stop_object_store

    lines = section_header("Log on S3 vs local disk", "object_store", argv,
                           "S3: SeaweedFS `weed mini` on loopback (same machine).")
    with tempfile.TemporaryDirectory(prefix="freshet-s3-bench-") as tmp:
        work = Path(tmp)
        root, labels = work / "offline", work / "labels.parquet"
        say(f"writing a {args.log_rows:,}-row log and {args.labels:,} labels")
        make_log(root, args.log_rows, 100_000, 30)
        make_labels(labels, args.labels, 100_000, 30)
        size_mb = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 2**20
        say("starting the object store and copying the log to it")
        store = start_object_store(work / "s3")
        try:
            fs = s3_filesystem(store)
            pafs.copy_files(str(root), f"{store.bucket}/offline", source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)
            env = {**os.environ, **store.env()}
            s3_uri = store.offline_root
            runs = [
                ("Freshet training set, log on local disk", FRESHET_JOIN, str(root)),
                ("Freshet training set, log on S3", FRESHET_JOIN, s3_uri),
                ("baseline: pyarrow reads the log's columns, local disk", READ_LOG, str(root)),
                ("baseline: pyarrow reads the log's columns, S3", READ_LOG, s3_uri),
                ("baseline: DuckDB ASOF JOIN, local files", DUCKDB_JOIN, str(root)),
            ]
            results: dict[str, dict[str, float]] = {}
            every_run: dict[str, list[float]] = {}
            for label, script, where in runs:
                samples = []
                for i in range(args.repeat):
                    say(f"{label} ({i + 1}/{args.repeat})")
                    samples.append(run_join(script, str(EXAMPLE_REPO), str(labels), where, env=env))
                samples.sort(key=lambda r: r["seconds"])
                results[label] = samples[len(samples) // 2]
                every_run[label] = [r["seconds"] for r in samples]
        finally:
            stop_object_store(work / "s3")
    local, s3 = results[runs[0][0]], results[runs[1][0]]
    lines += [f"Training set: {args.labels:,} labels x {args.log_rows:,}-row log ({size_mb:.0f} MB of Parquet, "
              "30 dates, 100k cards), one view; each a fresh process:", "",
              "| run | seconds | peak RSS | rows | null values |", "| --- | ---: | ---: | ---: | ---: |"]
    for label, _script, _where in runs:
        r = results[label]
        shown = f"{r['seconds']:.2f}" + (f" (runs: {', '.join(f'{x:.2f}' for x in every_run[label])})"
                                         if args.repeat > 1 else "")
        lines.append(f"| {label} | {shown} | {r['peak_rss_mb']:.0f} MB | {int(r['rows']):,} | {int(r['nulls']):,} |")
    lines += ["", f"S3 / local: {s3['seconds'] / local['seconds']:.2f}x; both training sets have "
              f"{int(local['rows']):,} rows and {int(local['nulls']):,} / {int(s3['nulls']):,} null values "
              "(the test suite checks the tables are equal).", ""]
    return publish(lines, no_record=args.no_record)


if __name__ == "__main__":
    sys.exit(main())
