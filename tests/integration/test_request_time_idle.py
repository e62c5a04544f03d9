"""A live run's request-time events reach Redis while the input is idle, with no checkpoint (real broker
and Redis).

Since 0.4.6 the live run leaves a request-time view's accepted events in the operator's holder and the
Redis writer's thread takes them, instead of a hand-over per event. Events that arrive and are then
followed by nothing must still be in Redis within the writer's delay, not at the next checkpoint (here
ten minutes away), and the log must get each of them once, in the part of the partition it was read from.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from pathlib import Path
from typing import Any

import redis

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.features.as_of_online_layout import decode_member, events_key
from freshet.features.log_store import open_log_root
from freshet.pipelines.runner import run_pipeline
from freshet.pipelines.stats import PipelineStats
from freshet.pipelines.topology import build_pipeline
from freshet.replay.parity import accepted_files, read_rows
from tests.integration.conftest import Servers
from tests.integration.harness import pipeline_config, produce, provision

T0 = 1_700_000_000_000
CARDS = ["c1", "c2", "c3"]


def test_request_time_events_reach_redis_while_the_input_is_idle(servers: Servers, unique: str,
                                                                 tmp_path: Path) -> None:
    topic = f"idle-{unique}"
    source = Source(name="tx", topic=topic, partitions=2, key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "ts": "int"})
    view = FeatureView(name=f"spend_{unique.replace('-', '_')}", source=source, window=TumblingWindow(size="1m"),
                       as_of="request", aggregations=[Aggregation(function="sum", column="amount", name="total")])
    provision(servers, topic, 2)
    # keyed by another field than the entity: the re-key stage moves them, so the partition the
    # operator reads (the repartition topic's) is not always the source's
    events = [{"card_id": CARDS[i % 3], "amount": float(i), "ts": T0 + i} for i in range(9)]
    placed = produce(servers, topic, [(i % 2, f"other-{i}", e) for i, e in enumerate(events)])
    config = dataclasses.replace(pipeline_config(servers, tmp_path, f"idle-{unique}"), commit_interval_s=600.0)
    pipeline = build_pipeline([view], config)
    client = redis.Redis.from_url(servers.redis_url)
    seen: dict[str, list[tuple[int, int]]] = {}
    outcome: list[str] = []

    def watch(app: Any, stats: PipelineStats) -> None:
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                for card in CARDS:
                    members = client.zrange(events_key(view.name, view.version, card), 0, -1)
                    seen[card] = sorted(decode_member(m)[:2] for m in members)
                if sum(len(v) for v in seen.values()) == len(events):
                    outcome.append(f"all in Redis after {stats.sink_flushes['redis']} flushes")
                    return
                time.sleep(0.05)
            outcome.append("timed out")
        finally:
            while not finished.is_set():  # stop() before the run loop started is forgotten: repeat it
                app.stop()
                finished.wait(0.5)

    finished = threading.Event()
    watcher = threading.Thread(target=watch, args=(pipeline.app, pipeline.stats), daemon=True)
    watcher.start()
    try:
        run_pipeline(pipeline)
    finally:
        finished.set()
        watcher.join(timeout=30)
        client.close()
    del pipeline, watcher  # Quix Streams' finished application is a reference cycle holding Kafka clients:
    gc.collect()  # collected now, they do not outlive the session's broker (and log its absence)
    assert outcome == ["all in Redis after 0 flushes"], (outcome, seen)
    by_card = {card: sorted(placed[i] for i, e in enumerate(events) if e["card_id"] == card) for card in CARDS}
    assert seen == by_card
    # the stop's checkpoint wrote the accepted-event log: each event once, with its source position
    root = open_log_root(tmp_path / "offline")
    rows, entity = read_rows(root, accepted_files(root, view.name, view.version) or [])
    assert entity == "card_id"
    assert sorted((r["card_id"], r["source_partition"], r["source_offset"], r["amount"]) for r in rows) == sorted(
        (e["card_id"], *placed[i], e["amount"]) for i, e in enumerate(events))
