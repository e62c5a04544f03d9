"""The online store rebuilt from the log: `freshet materialize`, and a Redis that comes back empty mid-run.

Each test runs a Redis of its own without persistence (as in production when a Redis
without persistence restarts, or an empty replica is promoted), so it can be emptied
or restarted without touching the shared servers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from freshet.features.as_of_layout import events_key
from freshet.features.definitions import FeatureView
from freshet.features.online import OnlineClient
from freshet.features.online_layout import decode_value, marker_key, online_key
from freshet.features.registry import Registry
from freshet.infra.localstack import free_port
from freshet.pipelines.materialize import materialize_view
from freshet.pipelines.online_sink import RedisOnlineWriter
from freshet.pipelines.runner import run_pipeline
from freshet.pipelines.topology import build_pipeline
from freshet.synthetic import StreamSpec
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import (
    RedisRestart,
    cli_env,
    latest_by_entity,
    pipeline_config,
    provision,
    read_log,
    run_until_caught_up,
    start_redis,
)
from tests.integration.test_replay import END_MS, freshet, write_repo


def assert_redis_equals_log(client: redis.Redis, root: Path, view: FeatureView,
                            except_entities: frozenset[str] = frozenset()) -> int:
    """Every entity's hash holds the log's latest row: values, feature_ts, window, a TTL within the view's."""
    latest = latest_by_entity(read_log(root, view))
    assert latest, f"the log of {view.name} is empty"
    for entity, row in latest.items():
        if entity in except_entities:
            continue
        key = online_key(view.name, view.version, entity)
        stored = client.hgetall(key)
        assert stored, f"{view.name}: {entity} missing from Redis"
        assert int(stored[b"__ts"]) == row["feature_ts"], (view.name, entity)
        assert int(stored[b"__off"]) == row["source_offset"], (view.name, entity)
        assert int(stored[b"__ws"]) == row["window_start"] and int(stored[b"__we"]) == row["window_end"]
        for name in view.feature_names():
            assert decode_value(stored[name.encode()]) == row[name], (view.name, entity, name)
        assert 0 < client.pttl(key) <= view.ttl, (view.name, entity, client.pttl(key))
    return len(latest)


def request_time_reads(url: str, views: dict[str, FeatureView], root: Path) -> list[Any]:
    """The request-time views' answers for a few entities at instants across the stream."""
    chosen = [v for v in views.values() if v.as_of == "request"]
    assert chosen
    client = OnlineClient(url, views)
    out: list[Any] = []
    try:
        for view in chosen:
            rows = read_log(root, view)
            entities = sorted({r["card_id"] for r in rows})[:5]
            times = sorted(r["feature_ts"] for r in rows)
            for t in times[:: max(1, len(times) // 8)] + [times[-1] + 60_000]:
                vectors = client.get_online_features(entities, [view.name], at=t)
                out.append([(v.entity, v.values, v.freshness[view.name]["found"], v.freshness[view.name]["feature_ts"])
                            for v in vectors])
    finally:
        client.close()
    assert any(value for vectors in out for _e, values, _f, _t in vectors for value in values.values())
    return out


def test_materialize_refills_a_flushed_store_and_never_moves_values_back(
        servers: Servers, unique: str, tmp_path: Path) -> None:
    topic = f"mat-{unique}"
    repo = write_repo(tmp_path / "repo", topic)
    views = Registry.load(repo).views
    provision(servers, topic, 3)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=4_000, cards=120, end_ms=END_MS, seed=31))
    port = free_port()
    redis_proc = start_redis(port, tmp_path, persist=False)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        config = pipeline_config(servers, tmp_path / "live", f"mat-{unique}")
        config.redis_url = url
        run_until_caught_up(list(views.values()), config)
        root = tmp_path / "live" / "offline"
        client = redis.Redis(port=port)
        # request-time views read from their accepted events: what they answer before the loss
        reads = request_time_reads(url, views, root)
        client.flushall()

        # a live write newer than the log's latest row for one entity, landing before the refill
        view = views["spend_5m"]
        entity, row = sorted(latest_by_entity(read_log(root, view)).items())[0]
        live = RedisOnlineWriter(url, background=False)
        live.add(online_key(view.name, view.version, entity), row["feature_ts"] + 300_000, 0, view.ttl,
                 view.feature_names(), [999, 1.5], row["window_start"] + 300_000, row["window_end"] + 300_000)
        live.write_pending()
        live.close()

        done = freshet("materialize", "--repo", str(repo), "--json", env=cli_env(servers, tmp_path / "live", url))
        assert done.returncode == 0, done.stderr[-2000:]
        summaries = {s["view"]: s for s in json.loads(done.stdout)}
        assert set(summaries) == set(views)
        for name, view in views.items():
            skip = frozenset({entity}) if name == "spend_5m" else frozenset()
            entities = assert_redis_equals_log(client, root, view, skip)
            summary = summaries[name]
            assert summary["entities"] == entities
            assert summary["written"] == entities - len(skip)
            assert summary["skipped_older"] == len(skip) and summary["skipped_expired"] == 0
        assert request_time_reads(url, views, root) == reads  # the accepted events are back
        assert summaries["activity_2m"]["events_added"] > 0 and summaries["spend_5m"]["events_added"] == 0
        kept = client.hgetall(online_key("spend_5m", 1, entity))
        assert decode_value(kept[b"n"]) == 999 and int(kept[b"__ts"]) == row["feature_ts"] + 300_000

        # again: everything is as new as the log already, nothing is written
        again = freshet("materialize", "--repo", str(repo), "--view", "spend_hop",
                        env=cli_env(servers, tmp_path / "live", url))
        assert again.returncode == 0, again.stderr[-2000:]
        table = again.stdout.splitlines()
        assert table[0].split()[:2] == ["VIEW", "VERSION"] and table[1].split()[0] == "spend_hop"

        # --entities-file and --since narrow it; values past their TTL are skipped, not written
        client.flushall()
        picked = sorted(latest_by_entity(read_log(root, views["spend_hop"])))[:3]
        (tmp_path / "cards.txt").write_text("\n".join(picked) + "\n")
        narrow = freshet("materialize", "--repo", str(repo), "--view", "spend_hop", "--entities-file",
                         str(tmp_path / "cards.txt"), "--since", "2023-11-14T00:00:00Z", "--json",
                         env=cli_env(servers, tmp_path / "live", url))
        assert narrow.returncode == 0, narrow.stderr[-2000:]
        assert json.loads(narrow.stdout)[0]["entities"] == 3
        assert sorted(k.decode() for k in client.keys("freshet:{*") if not k.endswith((b":ev", b":evm"))) == sorted(
            online_key("spend_hop", 1, card) for card in picked)
        assert sorted(k.decode() for k in client.keys("freshet:{*:ev")) == sorted(
            events_key("spend_hop", 1, card) for card in picked)
        writer = RedisOnlineWriter(url, background=False, batch_size=1 << 30)
        late = materialize_view(root, views["spend_5m"], writer, now_ms=lambda: int(time.time() * 1000) + 2 * 86_400_000)
        writer.close()
        assert late.written == 0 and late.skipped_expired == late.entities > 0

        bad = freshet("materialize", "--repo", str(repo), "--view", "nope", env=cli_env(servers, tmp_path / "live", url))
        assert bad.returncode != 0 and "unknown view 'nope'" in bad.stderr
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)


def test_redis_back_empty_mid_run_is_noticed_and_refilled(servers: Servers, unique: str, tmp_path: Path) -> None:
    topic = f"empty-redis-{unique}"
    repo = write_repo(tmp_path / "repo", topic)
    view = Registry.load(repo).views["activity_2m"]
    provision(servers, topic, 3)
    # enough events that most are still to be read when Redis dies (at the first ~500 durable rows)
    produce_stream(servers.kafka_config(), topic, StreamSpec(events=15_000, cards=150, end_ms=END_MS, seed=32))
    port = free_port()
    redis_proc = start_redis(port, tmp_path, persist=False)
    config = pipeline_config(servers, tmp_path / "live", f"empty-redis-{unique}")
    config.redis_url = f"redis://127.0.0.1:{port}/0"
    config.commit_interval_s = 0.5
    pipeline = build_pipeline([view], config)
    # a chosen point: once the log holds rows (the first checkpoints are durable), Redis dies and comes
    # back empty, while the rest of the topic is still to be read
    restart = RedisRestart(redis_proc, port, tmp_path, persist=False, when=lambda: pipeline.stats.offline_rows >= 500,
                           record=lambda: pipeline.stats.offline_rows, down_s=1)
    restart.start()
    try:
        stats = run_pipeline(pipeline, until_caught_up=True)
    finally:
        restart.join()
    try:
        assert restart.recorded is not None and restart.recorded >= 500
        assert stats["online_refills"] >= 1 and stats["online_refilled"] > 0, stats
        assert stats["online_lost"] == 0
        client = redis.Redis(port=port)
        assert client.exists(marker_key(view.name, view.version))
        # every entity, including those with no event after the restart, equals the log's latest row
        root = tmp_path / "live" / "offline"
        assert assert_redis_equals_log(client, root, view) == 150
        # and the log is the uninterrupted run's
        reference = run_until_caught_up([view], pipeline_config(servers, tmp_path / "ref", f"empty-ref-{unique}"))
        assert reference["emitted_by_view"] == stats["emitted_by_view"]
    finally:
        restart.stop()
