"""`python -m bench.checkpoint_pauses`: how long each live checkpoint holds up the input, during the
freshness measurement (bench.freshness: a steady rate into a 1-minute tumbling `current` view).

It times, from the outside, each checkpoint's commit (Quix Streams' ``Checkpoint.commit``, the whole
pause), Freshet's sink flush inside it, the Parquet writers' checkpoints inside that (since 0.4.4 their
file writes run in a thread: what is left in line), the state write-back, and the wait for those file
writes after it, and prints them with the freshness percentiles. Options compare a checkpoint interval and
the Parquet writer's bound on open rows (``--unbounded``: as before 0.4.1), and the path
(``--trust-message-key``: without the re-key stage). Starts a local stack unless
FRESHET_KAFKA_BOOTSTRAP and FRESHET_REDIS_URL are set. Timings are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import quixstreams.checkpointing.checkpoint as quix_checkpoint

import freshet.pipelines.offline_sink as offline_sink
import freshet.pipelines.outputs as outputs
import freshet.pipelines.topology as topology
from bench.common import stack
from bench.freshness import measure_freshness

TIMED: dict[str, list[float]] = {"commit": [], "sink flush": [], "parquet": [], "state write-back": [],
                                 "log writes wait": []}


def _timed(owner: Any, name: str, bucket: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMED[bucket].append(time.perf_counter() - started)

    setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=5_000, help="events per second (default 5,000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of steady load (default 60)")
    parser.add_argument("--commit-interval", type=float, default=None,
                        help="the pipeline's checkpoint interval in seconds (default: `freshet run`'s)")
    parser.add_argument("--trust-message-key", action="store_true",
                        help="the pipeline without the re-key stage (`freshet run --trust-message-key`)")
    parser.add_argument("--unbounded", action="store_true",
                        help="no bound on the Parquet writers' open rows (max_open_rows), as before 0.4.1")
    args = parser.parse_args()
    _timed(quix_checkpoint.Checkpoint, "commit", "commit")
    _timed(topology.OperatorSink, "flush", "sink flush")
    _timed(offline_sink.ParquetLogWriter, "checkpoint", "parquet")
    _timed(topology.OperatorStep, "write_back", "state write-back")
    _timed(outputs.OperatorOutputs, "finish_flush", "log writes wait")
    build = topology.build_pipeline

    def configured(views: Any, config: Any, *rest: Any, **kw: Any) -> Any:
        if args.commit_interval is not None:
            config.commit_interval_s = args.commit_interval
        return build(views, config, *rest, **kw)

    topology.build_pipeline = configured
    if args.unbounded:
        init = offline_sink.ParquetLogWriter.__init__

        def unbounded(self: Any, *a: Any, **kw: Any) -> None:
            init(self, *a, **{**kw, "max_open_rows": 10**12})

        offline_sink.ParquetLogWriter.__init__ = unbounded  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="freshet-pauses-") as tmp, stack(Path(tmp)) as running:
        fresh = measure_freshness(running, args.rate, args.seconds, Path(tmp), uuid.uuid4().hex[:6],
                                  rekey=not args.trust_message_key)
    trend = fresh.trend
    print(f"rate {args.rate:,}/s for {args.seconds:g}s, commit interval "
          f"{args.commit_interval if args.commit_interval is not None else 'default'}, "
          f"{'unbounded' if args.unbounded else 'bounded'} open rows, "
          f"{'--trust-message-key' if args.trust_message_key else 're-key stage'}")
    print(f"freshness p50 {fresh.percentile(50):.0f} ms, p99 {fresh.percentile(99):.0f} ms, median of the first -> "
          f"last tenth {trend[0]:.0f} -> {trend[1]:.0f} ms" if trend else "freshness: no samples")
    for bucket, seconds in TIMED.items():
        print(f"{bucket}: {len(seconds)} x, ms: {', '.join(f'{s * 1000:.0f}' for s in seconds)}")


if __name__ == "__main__":
    main()
