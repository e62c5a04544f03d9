"""Redis goes down mid-stream: the pipeline applies backpressure and loses nothing.

A Redis server of this test's own is stopped while the pipeline writes and
started again on the same port a few seconds later. Once caught up, Redis holds
for every entity the latest value of the Parquet log, and the log has every
row of an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import redis

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.features.online_layout import decode_value, online_key
from freshet.infra.localstack import free_port
from freshet.pipelines.runner import run_pipeline
from freshet.pipelines.topology import build_pipeline
from freshet.synthetic import StreamSpec
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import (
    RedisRestart,
    latest_by_entity,
    pipeline_config,
    provision,
    read_log,
    row_identity,
    run_until_caught_up,
    start_redis,
)


def test_redis_outage_loses_nothing(servers: Servers, unique: str, tmp_path: Path) -> None:
    topic = f"bp-{unique}"
    source = Source(name="tx", topic=topic, partitions=2, key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "merchant": "str", "country": "str", "ts": "int"})
    view = FeatureView(name="spend_now", source=source, window=TumblingWindow(size="1m"), grace="10s",
                       emit="current", ttl="1d",
                       aggregations=[Aggregation(function="count", name="n"),
                                     Aggregation(function="sum", column="amount", name="total")])
    provision(servers, topic, 2)
    produce_stream(servers.kafka_config(), topic,
                   StreamSpec(events=10_000, cards=200, span_ms=10 * 60_000, end_ms=1_700_000_000_000, seed=3))

    port = free_port()
    redis_proc = start_redis(port, tmp_path, persist=True)
    config = pipeline_config(servers, tmp_path / "bp", f"bp-{unique}")
    config.redis_url = f"redis://127.0.0.1:{port}/0"
    pipeline = build_pipeline([view], config)
    restart = RedisRestart(redis_proc, port, tmp_path, persist=True, when=lambda: pipeline.stats.online_writes > 0,
                           record=lambda: pipeline.stats.online_writes, down_s=3)
    restart.start()
    try:
        run_pipeline(pipeline, until_caught_up=True)
    finally:
        restart.join()
    try:
        assert pipeline.stats.backpressured > 0, "the outage never caused backpressure"
        assert restart.recorded is not None and pipeline.stats.online_writes > restart.recorded, "nothing was written after Redis came back"
        # reference: an uninterrupted run with its own log
        ref_root = tmp_path / "ref"
        ref_config = pipeline_config(servers, ref_root, f"bp-ref-{unique}")
        ref_config.redis_url = None
        ref_stats = run_until_caught_up([view], ref_config)
        # each event counted once, though the outage made the pipeline read part of the input twice
        got = pipeline.stats.snapshot()
        for key in ("read", "windowed", "valid", "invalid", "late", "emitted_by_view"):
            assert got[key] == ref_stats[key], (key, got[key], ref_stats[key])
        rows = read_log(tmp_path / "bp" / "offline", view)
        reference = read_log(ref_root / "offline", view)
        assert sorted(map(row_identity, rows)) == sorted(map(row_identity, reference))
        latest = latest_by_entity(reference)
        client = redis.Redis(port=port)
        assert len(latest) == 200
        for card, row in latest.items():
            stored = client.hgetall(online_key(view.name, view.version, card))
            assert int(stored[b"__ts"]) == row["feature_ts"], card
            assert decode_value(stored[b"n"]) == row["n"], card
    finally:
        restart.stop()
