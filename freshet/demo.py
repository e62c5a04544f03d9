"""`freshet demo`: the whole loop on the local stack in about a minute.

Local stack (unless one is configured) -> topics -> a synthetic card stream
with out-of-order, late and malformed events -> the pipeline until caught up
-> fresh features read back from Redis, the counts, and where the log is.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import freshet.examples
from freshet.features.definitions import FeatureView
from freshet.features.online import OnlineClient
from freshet.features.registry import Registry
from freshet.tables import FEATURE_HEADER, feature_rows, format_table

EXAMPLE_REPO = Path(freshet.examples.__file__).resolve().parent / "fraud"  # package data: works from a wheel too


def say(message: str) -> None:
    print(message, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from freshet.infra.localstack import start_stack
    from freshet.infra.settings import kafka_client_config
    from freshet.infra.topics import provision_topics, source_topic_specs
    from freshet.pipelines.config import settings_from_args, stack_dir
    from freshet.pipelines.runner import run_pipeline
    from freshet.pipelines.topology import PipelineConfig, build_pipeline
    from freshet.synthetic import StreamSpec, produce

    started = time.monotonic()
    repo = Path(args.repo) if args.repo else EXAMPLE_REPO
    registry = Registry.load(repo)
    registry.require_lock_consistent()
    settings = settings_from_args(args)
    started_stack = False
    if settings.kafka_bootstrap is None or settings.redis_url is None:
        say("[1/5] starting the local stack (tansu broker + redis-server as child processes)")
        info = start_stack(stack_dir())
        started_stack = True
        settings = settings.model_copy(update={
            "kafka_bootstrap": settings.kafka_bootstrap or info.kafka_bootstrap,
            "redis_url": settings.redis_url or info.redis_url,
        })
    else:
        say("[1/5] using the configured stack")
    say(f"      broker {settings.kafka_bootstrap}, redis {settings.redis_url}")

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    views = _demo_views(registry, run_id)
    source = views[0].source
    kafka = kafka_client_config(settings)
    say(f"[2/5] provisioning {source.topic} (+ .dlq, .late), {source.partitions} partitions")
    provision_topics(kafka, source_topic_specs(source.topic, source.partitions))

    spec = StreamSpec(events=args.events, cards=args.cards, seed=args.seed)
    say(f"[3/5] producing {spec.events:,} card transactions for {spec.cards:,} cards over the last "
        f"{spec.span_ms // 60_000} minutes (out-of-order, late and malformed ones included)")
    summary = produce(kafka, source.topic, spec, progress=lambda n: say(f"      produced {n:,}"))
    say(f"      produced {summary.produced:,}: {summary.malformed} malformed {summary.by_kind}")

    base = Path("data") / "demo" / run_id
    config = PipelineConfig(
        kafka_config=kafka, consumer_group=f"freshet-demo-{run_id}", state_dir=base / "state",
        offline_root=base / "offline", redis_url=settings.redis_url, commit_interval_s=1.0,
        max_event_ahead_ms=settings.max_event_ahead_ms,
    )
    say(f"[4/5] running {len(views)} views until caught up: " + ", ".join(
        f"{v.name} ({v.window.describe()}, {v.emit})" for v in views))
    pipeline = build_pipeline(views, config)
    stats = run_pipeline(pipeline, until_caught_up=True, interval_s=3.0, report=lambda m: say("      " + m))

    say("[5/5] fresh features read back from Redis")
    _print_features(settings.redis_url or "", views, _sample_cards(spec))
    _print_counts(stats, source.topic, base / "offline", time.monotonic() - started)
    if started_stack and args.stop_stack:
        from freshet.infra.localstack import stop_stack

        stop_stack(stack_dir())
        say("stopped the local stack")
    elif started_stack:
        say("the local stack keeps running: try `.venv/bin/freshet get --repo examples/fraud --view "
            "card_spend_5m card-00001`; `.venv/bin/freshet dev down` stops it")
    return 0 if stats["read"] else 1


def _demo_views(registry: Registry, run_id: str) -> list[FeatureView]:
    """The repository's views on a topic of this demo run's own, so runs never mix."""
    topics = registry.views_by_topic(None)
    topic, views = next(iter(topics.items()))
    demo_topic = f"{topic}.demo-{run_id}"
    return [v.model_copy(update={"source": v.source.model_copy(update={"topic": demo_topic})}) for v in views]


def _sample_cards(spec: Any) -> list[str]:
    from freshet.synthetic import card_id

    return [card_id(i) for i in (0, 1, 2, 3, 4)]


def _print_features(redis_url: str, views: list[FeatureView], cards: list[str]) -> None:
    client = OnlineClient(redis_url, {v.name: v for v in views})
    try:
        vectors = client.get_online_features(cards, [v.name for v in views])
    finally:
        client.close()
    rows = feature_rows(vectors)
    for line in format_table([FEATURE_HEADER, *rows]):
        say("      " + line)


def _print_counts(stats: dict[str, Any], topic: str, offline: Path, elapsed: float) -> None:
    say("      counts")
    say(f"        processed {stats['read']:,} records: {stats['valid']:,} valid, {stats['invalid']:,} invalid "
        f"{stats['invalid_by_reason']} -> {topic}.dlq")
    say(f"        late {stats['late']:,} (event x window) {stats['late_by_view']} -> {topic}.late")
    say(f"        emitted values per view {stats['emitted_by_view']}")
    say(f"        Redis writes {stats['online_writes']:,}; Parquet rows {stats['offline_rows']:,}")
    say(f"      Parquet log: {offline.resolve()}")
    say(f"      read it: .venv/bin/python -c \"import duckdb; print(duckdb.sql(\\\"select * from read_parquet("
        f"'{offline}/*/v*/date=*/*.parquet') limit 5\\\"))\"")
    say(f"done in {elapsed:.0f}s")
    sys.stdout.flush()
