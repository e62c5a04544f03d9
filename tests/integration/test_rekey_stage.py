"""The re-key stage (pipelines.rekey_stage, pipelines.rekey_router) on the real broker.

- Wire compatibility: for the same source records, the stage writes the repartition topic exactly as
  Quix Streams' group_by does (partition, key, value, timestamp per record), so either can read what the
  other wrote and the upgrade from group_by loses nothing in flight.
- The stage and group_by leave the same Parquet log and dead letters.
- A group's window state carries over from group_by to the stage (the upgrade): the log equals one
  run's over the whole stream.
- A record the repartition topic refuses stops the router with nothing committed.
- Which path a run takes: the stage by default and on every restart; group_by with --exactly-once, for
  a one-partition source, and when the config asks for it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from freshet.features import Aggregation, FeatureView, SlidingWindow, Source, TumblingWindow
from freshet.features.errors import PipelineError
from freshet.pipelines.rekey_router import RekeyRouter, RouterSettings
from freshet.pipelines.rekey_stage import repartition_topic_name
from freshet.pipelines.stats import PipelineStats
from freshet.pipelines.topology import build_pipeline
from tests.integration.conftest import Servers
from tests.integration.harness import (
    pipeline_config,
    produce,
    provision,
    read_log,
    read_topic,
    row_identity,
    run_until_caught_up,
)

T = 1_700_000_040_000


def make_views(topic: str, partitions: int = 3) -> list[FeatureView]:
    source = Source(name="tx", topic=topic, partitions=partitions, key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "ts": "int"})
    aggs = [Aggregation(function="count", name="n"), Aggregation(function="sum", column="amount", name="total")]
    return [FeatureView(name="spend", source=source, window=TumblingWindow(size=60_000), grace=5_000,
                        emit="final", aggregations=aggs, ttl="1d"),
            FeatureView(name="recent", source=source, window=SlidingWindow(size=30_000), grace=5_000,
                        aggregations=aggs, ttl="1d")]


def records(n: int, seed: int) -> list[tuple[int, str | None, Any]]:
    rng = random.Random(seed)
    out: list[tuple[int, str | None, Any]] = []
    for i in range(n):
        card = f"c{rng.randrange(12)}"
        value: Any = {"card_id": card, "amount": round(rng.uniform(1, 50), 2), "ts": T + i * 700 - rng.randrange(9_000)}
        if i % 37 == 5:
            value = b"{broken"
        # keys are not to be trusted; a card's records share a source partition, so the order its events
        # reach the windows in (which decides lateness) is the partition's, however the reads interleave
        out.append((int(card[1:]) % 3, rng.choice([card, "wrong", None]), value))
    return out


def test_stage_writes_what_group_by_writes(servers: Servers, unique: str, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    topic = f"rekey-{unique}"
    provision(servers, topic, 3)
    produce(servers, topic, records(400, 3))
    views = make_views(topic)
    runs = {}
    for path in ("stage", "group_by"):
        group = f"{path}-{unique}"
        config = pipeline_config(servers, tmp_path / path, group, rekey_stage=path == "stage")
        stats = run_until_caught_up(views, config)
        repartitioned = read_topic(servers, repartition_topic_name(group, topic, "card_id"))
        runs[path] = (stats, repartitioned, tmp_path / path / "offline")
    stage_stats, stage_topic, stage_root = runs["stage"]
    quix_stats, quix_topic, quix_root = runs["group_by"]
    for stats in (stage_stats, quix_stats):
        assert stats["read"] == 400 and stats["invalid"] == 11 and stats["windowed"] == 389
    # the router's last report (its final counts, then "done") reached the run before the router ended
    assert not [r.getMessage() for r in caplog.records if "without its last report" in r.getMessage()]

    def wire(messages: list[Any]) -> Counter[tuple[Any, ...]]:
        return Counter((m.partition(), m.key(), m.value(), m.timestamp()) for m in messages)

    assert len(stage_topic) == 389 and wire(stage_topic) == wire(quix_topic)
    for view in views:
        stage_rows = sorted(map(row_identity, read_log(stage_root, view)))
        assert stage_rows and stage_rows == sorted(map(row_identity, read_log(quix_root, view)))

    # both runs dead-lettered the same 11 records, with the same source positions and reasons
    dead = Counter((m.partition(), m.value(), dict(m.headers())["freshet.source.offset"],
                    dict(m.headers())["freshet.reason"]) for m in read_topic(servers, f"{topic}.dlq"))
    assert len(dead) == 11 and set(dead.values()) == {2}


def test_window_state_carries_over_from_group_by_to_the_stage(servers: Servers, unique: str,
                                                               tmp_path: Path) -> None:
    topic = f"upgrade-{unique}"
    provision(servers, topic, 3)
    stream = records(600, 5)
    views = make_views(topic)
    produce(servers, topic, stream[:300])
    upgraded = pipeline_config(servers, tmp_path / "upgraded", f"up-{unique}", rekey_stage=False)
    run_until_caught_up(views, upgraded)  # before the upgrade: group_by
    produce(servers, topic, stream[300:])
    upgraded.rekey_stage = True
    pipeline = build_pipeline(views, upgraded)
    try:
        assert pipeline.stage is not None  # the same group, now through the stage
    finally:
        pipeline.close()
    run_until_caught_up(views, upgraded)
    reference = pipeline_config(servers, tmp_path / "reference", f"ref-{unique}")
    run_until_caught_up(views, reference)
    for view in views:
        rows = sorted(map(row_identity, read_log(tmp_path / "upgraded" / "offline", view)))
        assert rows and rows == sorted(map(row_identity, read_log(tmp_path / "reference" / "offline", view)))


def test_which_path_a_run_takes(servers: Servers, unique: str, tmp_path: Path) -> None:
    topic = f"paths-{unique}"
    provision(servers, topic, 3)
    one = f"paths-one-{unique}"
    provision(servers, one, 1)
    views = make_views(topic)

    def stage_of(views: list[FeatureView], group: str, **kw: Any) -> bool:
        pipeline = build_pipeline(views, pipeline_config(servers, tmp_path, group, **kw))
        try:
            return pipeline.stage is not None
        finally:
            pipeline.close()

    assert stage_of(views, f"a-{unique}")
    assert stage_of(views, f"a-{unique}")  # a restart of the same group (its state's changelog exists now)
    assert not stage_of(views, f"b-{unique}", exactly_once=True)
    assert not stage_of(views, f"c-{unique}", rekey=False)
    assert not stage_of(views, f"e-{unique}", rekey_stage=False)
    assert not stage_of(make_views(one, partitions=1), f"d-{unique}")


def test_a_record_the_repartition_topic_refuses_stops_the_router_and_commits_nothing(
        servers: Servers, unique: str) -> None:
    """The router's producer reports failures only (no per-record report): a refused record still stops
    it, and the source offsets of what it routed stay uncommitted, so a restart routes them again."""
    topic = f"refused-{unique}"
    provision(servers, topic, 2)
    produce(servers, topic, [(i % 2, None, {"card_id": f"c{i % 5}", "amount": 1.0, "ts": T + i}) for i in range(20)])
    source = make_views(topic, partitions=2)[0].source
    group = f"refused-{unique}"
    settings = RouterSettings(source, "card_id", servers.kafka_config(), group, "not a valid topic name!",
                              max_ahead_ms=3_600_000, auto_offset_reset="earliest", session_timeout_ms=10_000,
                              fetch_wait_max_ms=25)
    stats = PipelineStats()
    started = time.monotonic()
    router = RekeyRouter(settings, stats, lambda: stats.read >= 20 or time.monotonic() - started > 60)
    with pytest.raises(PipelineError, match="did not take") as raised:
        router.run()
    # the broker refuses the name at once (INVALID_TOPIC): an unknown but valid name would be created,
    # and a refusal that needs the producer's timeouts would take as long as the router's flush
    assert "Invalid topic" in str(raised.value)
    assert stats.read >= 1  # it stops at its first commit after the refusal, whether or not all were read
    consumer = Consumer({**servers.kafka_config(), "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == [OFFSET_INVALID, OFFSET_INVALID]
