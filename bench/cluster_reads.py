"""Online reads on a Redis Cluster (3 masters, loopback) next to a single node, in one run.

    python -m bench.cluster_reads [--entities 100000] [--iterations 3000]

Both stores hold the same hashes (the example's 3 views for --entities cards); the SDK reads
1 and 100 entities x 3 views: on the single node one batch script, on the cluster one pipelined
batch of HMGETs per node. Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import EXAMPLE_REPO, say, stack
from bench.read_paths import fill_redis, sdk_latency
from bench.report import publish, section_header


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_reads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    from freshet.features.registry import Registry
    from freshet.infra.redis_cluster import start_cluster, stop_cluster

    views = Registry.load(EXAMPLE_REPO).views
    lines = [*section_header("Cluster reads", "cluster_reads", argv, f"{args.entities:,} cards x 3 views in each store."),
             "| store | read | p50 | p99 | samples |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="freshet-cluster-bench-") as tmp, stack(Path(tmp)) as s:
        cluster = start_cluster(Path(tmp) / "cluster", masters=3)
        try:
            for label, url in (("single node", s.redis_url), ("cluster, 3 masters", cluster.url)):
                say(f"filling {label}")
                fill_redis(url, list(views.values()), args.entities)
                for batch in (1, 100):
                    say(f"{label}: {batch} x 3 views")
                    r = sdk_latency(url, views, batch, args.iterations)
                    lines.append(f"| {label} | SDK {batch} entit{'y' if batch == 1 else 'ies'} x 3 views | "
                                 f"{r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {r['n']} |")
        finally:
            stop_cluster(Path(tmp) / "cluster")
    lines.append("")
    return publish(lines, no_record=args.no_record)


if __name__ == "__main__":
    raise SystemExit(main())
