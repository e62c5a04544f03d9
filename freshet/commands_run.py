"""`freshet run`, `freshet get`, `freshet demo`: the stream processor's commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from freshet.features.definitions import FeatureView
from freshet.features.errors import EXIT_CHECK_FAILED, ConfigError, PipelineError
from freshet.features.registry import Registry
from freshet.pipelines.run_defaults import DEFAULT_COMMIT_INTERVAL_S
from freshet.tables import FEATURE_HEADER, feature_rows, format_table, format_time, per_view

log = logging.getLogger("freshet")


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option

    p = sub.add_parser(
        "run", help="run the stream processor for one source topic",
        description="Consume a source topic, validate events (invalid -> <topic>.dlq), compute every "
        "selected view's windows (late events -> <topic>.late), write the freshest value per entity "
        "to Redis and every value to the Parquet log. Scale out by starting more processes with the "
        "same --group. SIGTERM/SIGINT flush the sinks and commit before exit.",
    )
    add_repo_option(p)
    p.add_argument("--view", action="append", metavar="NAME", help="only this view (repeatable; default: all)")
    p.add_argument("--topic", help="the source topic, when the repository reads several")
    p.add_argument("--group", help="consumer group (default freshet.<topic>); its state lives in the state dir")
    p.add_argument("--from-replay", action="store_true",
                   help="continue where the last finished `freshet replay` of these views stopped: its group, "
                   "window state and log directory (the versioning handover)")
    p.add_argument("--until-caught-up", action="store_true",
                   help="stop once every assigned partition has been read to its end (for jobs and tests)")
    p.add_argument("--no-online", action="store_true", help="do not write Redis")
    p.add_argument("--no-offline", action="store_true", help="do not write the Parquet log")
    p.add_argument("--commit-interval", type=float, default=DEFAULT_COMMIT_INTERVAL_S, metavar="SECONDS",
                   help="checkpoint interval: how soon the Parquet log and the dead-letter and late topics hold "
                   "a record, and how much input a crash makes the run read again; Redis is written as values "
                   f"are made, whatever it is (default {DEFAULT_COMMIT_INTERVAL_S:g})")
    p.add_argument("--trust-message-key", action="store_true",
                   help="skip re-keying: only if producers always key messages by the entity field")
    p.add_argument("--exactly-once", action="store_true",
                   help="Kafka transactions: outputs to Kafka and offsets commit together (slower)")
    p.add_argument("--progress-interval", type=float, default=5.0, metavar="SECONDS",
                   help="how often to log events/s, lag, late and invalid counts (default 5)")
    add_metrics_options(p, default_port=DEFAULT_METRICS_PORT)
    add_connection_options(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser(
        "get", help="print entities' feature values from Redis (a table, or --json)",
        description="Read the latest values of one or more views for one or more entities from Redis, with "
        "feature_ts (the event time from which the value holds, UTC), age and staleness (older than the "
        "view's ttl). Request-time views (as_of: request) answer their window as of now, or as of --at: "
        "sliding, the events in [at - size, at]; tumbling and hopping, the latest window ended by then (an entity "
        "without events reads count 0). Exit 0 when every entity has a value in every view, 1 when any is "
        "missing (named on stderr), 2 for a bad --at (not a time, used with a last-event view, or before what "
        "Redis keeps), 3 when Redis cannot be reached. Reads FRESHET_REDIS_URL, else the local stack.",
        epilog="examples: freshet get --repo examples/fraud --view card_spend_5m --view card_activity_10m "
        "card-00001 card-00002; for request-time views, as of an instant: freshet get --repo REPO --view VIEW "
        "--at 2026-11-22T12:00:00Z card-00001",
    )
    add_repo_option(p)
    p.add_argument("--view", required=True, action="append", metavar="NAME", help="view (repeatable)")
    p.add_argument("entities", nargs="+", metavar="ENTITY")
    p.add_argument("--at", metavar="EPOCH_MS|ISO-8601",
                   help="read request-time views (as_of: request) as of this instant instead of now: UTC epoch "
                   "milliseconds or ISO-8601 (a time without a zone is UTC); refused for last-event views")
    p.add_argument("--json", action="store_true", help="print JSON: {entity: {view: {features, found, "
                   "feature_ts, age_ms, stale}}}")
    add_connection_options(p, kafka=False, offline=False, state=False)
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser(
        "demo", help="the main job: local stack, synthetic card stream, features in Redis and Parquet",
        description="Start the local stack unless FRESHET_KAFKA_BOOTSTRAP/FRESHET_REDIS_URL point to one, "
        "provision topics, produce a synthetic card-transaction stream (out-of-order, late and "
        "malformed events included), run the pipeline until caught up, then print fresh features "
        "read back from Redis, the counts, and where the Parquet log is.",
    )
    p.add_argument("--repo", default=None, help="feature repository (default: the shipped examples/fraud)")
    p.add_argument("--events", type=int, default=20_000, help="number of events (default 20000)")
    p.add_argument("--cards", type=int, default=2_000, help="number of cards (default 2000)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the stream (default 7)")
    p.add_argument("--stop-stack", action="store_true",
                   help="stop the local stack at the end (by default it keeps running for `freshet get`)")
    add_connection_options(p)
    p.set_defaults(handler=cmd_demo)


def select_views(registry: Registry, names: list[str] | None, topic: str | None) -> list[FeatureView]:
    by_topic = registry.views_by_topic(names)
    if topic is not None:
        if topic not in by_topic:
            raise PipelineError(f"no selected view reads topic {topic!r}; topics: {', '.join(by_topic)}")
        return by_topic[topic]
    if len(by_topic) > 1:
        raise PipelineError(
            f"the selected views read {len(by_topic)} topics ({', '.join(by_topic)}): one process runs one "
            "source topic; choose with --topic or --view"
        )
    return next(iter(by_topic.values()))


def cmd_run(args: argparse.Namespace) -> int:
    from freshet.infra.settings import kafka_client_config
    from freshet.infra.topics import provision_topics, source_topic_specs
    from freshet.pipelines.config import settings_from_args
    from freshet.pipelines.stats import PipelineStats
    from freshet.pipelines.topology import PipelineConfig

    registry = Registry.load(args.repo)
    registry.require_lock_consistent()
    views = select_views(registry, args.view, args.topic)
    settings = settings_from_args(args)
    kafka = kafka_client_config(settings)
    if settings.redis_url is None and not args.no_online:
        raise ConfigError("no Redis configured: set FRESHET_REDIS_URL, pass --redis-url, run `freshet dev up`, "
                          "or use --no-online")
    source = views[0].source
    provision_topics(kafka, source_topic_specs(source.topic, source.partitions))
    group = args.group or f"freshet.{source.topic}"
    config = PipelineConfig(
        kafka_config=kafka, consumer_group=group, state_dir=Path(settings.state_dir) / group,
        offline_root=None if args.no_offline else settings.log_root(),
        redis_url=None if args.no_online else settings.redis_url,
        commit_interval_s=args.commit_interval, rekey=not args.trust_message_key, exactly_once=args.exactly_once,
        max_event_ahead_ms=settings.max_event_ahead_ms,
    )
    if args.from_replay:
        plan = latest_finished_replay(settings.log_root(), views)
        group = plan.group
        config.consumer_group, config.state_dir = plan.group, Path(plan.state_dir) / "live"
        config.offline_root, config.rekey = plan.log_root(), plan.rekey
        from freshet.replay.runner import seed_states

        config.seed_states = seed_states(plan)
        log.info("continuing replay %s (ended at offsets %s) in group %s", plan.plan_id, plan.end, plan.group)
    if config.redis_url is not None:
        from freshet.pipelines.online_sink import check_credentials

        check_credentials(config.redis_url)  # before anything else: refused credentials are not an outage
    from freshet.pipelines.history import check_history

    check_history(kafka, config.consumer_group, source.topic, source.partitions, state_dir=config.state_dir,
                  restart_hint=(
        f"To start over on the new history: `freshet reset --repo {args.repo} --group {group} --yes` (deletes the "
        f"group's offsets, window state and internal topics, moves the views' logs under "
        f"{config.offline_root or '-'} aside), then run again; or run with a new group and the old logs moved "
        f"aside by hand, e.g. `freshet run --repo {args.repo} --group {group}.2`."))
    if args.until_caught_up and not args.from_replay and _never_written(kafka, source.topic, source.partitions):
        # nothing can be behind (and building the pipeline would create Quix's internal topics: ~2 s)
        log.info("%s has never held a record: nothing to do", source.topic)
        print(json.dumps({"topic": source.topic, "group": group, **PipelineStats().snapshot()}, indent=2))
        return 0
    log.info("running %d view(s) on %s (group %s): %s", len(views), source.topic, group,
             ", ".join(f"{v.name} v{v.version}" for v in views))
    run_stats = PipelineStats()
    metrics = start_metrics(args, run_stats, views, mode="live")
    try:
        stats = _run_restarting(views, config, run_stats, args)
    finally:
        if metrics is not None:
            metrics.close()
    print(json.dumps({"topic": source.topic, "group": group, **stats}, indent=2))
    return 0


RESTARTS = 2


def _run_restarting(views: list[FeatureView], config: Any, stats: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Run the pipeline; restart it from its last commit when Quix Streams hands a state-changelog record to
    processing (a race of its state recovery after a rebalance, seen with the local broker under load: the
    run stopped with KeyError 'changelog__...'). Nothing is lost: the restart reads from the last commit,
    the sinks are idempotent and the counts go back to that commit."""
    from freshet.pipelines.runner import run_pipeline
    from freshet.pipelines.topology import build_pipeline

    for attempt in range(RESTARTS + 1):
        pipeline = build_pipeline(views, config, stats)
        try:
            return run_pipeline(pipeline, until_caught_up=args.until_caught_up, interval_s=args.progress_interval)
        except KeyError as exc:
            if "changelog__" not in str(exc) or attempt == RESTARTS:
                raise
            stats.rewind()
            log.warning("Quix Streams delivered a state-changelog record (%s) to processing after a rebalance; "
                        "restarting the run from its last commit (%d of %d)", exc, attempt + 1, RESTARTS)
    raise RuntimeError("unreachable: the loop returns or raises")


DEFAULT_METRICS_PORT = 9108


def add_metrics_options(p: argparse.ArgumentParser, *, default_port: int) -> None:
    what = f"default {default_port}" if default_port else "default: off"
    p.add_argument("--metrics-port", type=int, default=default_port, metavar="PORT",
                   help=f"serve Prometheus metrics on http://HOST:PORT/metrics ({what}; 0 turns them off; "
                   "a port in use is logged and the run goes on)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address the metrics server binds (default 127.0.0.1; 0.0.0.0 for a scraper elsewhere)")


def start_metrics(args: argparse.Namespace, stats: Any, views: list[FeatureView], *, mode: str) -> Any:
    if not args.metrics_port:
        return None
    if not 1 <= args.metrics_port <= 65535:
        raise ConfigError(f"--metrics-port {args.metrics_port} is out of range: allowed 1 to 65535, or 0 for off")
    from freshet.pipelines.metrics import MetricsServer

    return MetricsServer(stats, views, port=args.metrics_port, host=args.metrics_host, mode=mode)


def _never_written(kafka: dict[str, Any], topic: str, partitions: int) -> bool:
    from freshet.pipelines.offsets import EndOffsetProbe

    probe = EndOffsetProbe(kafka)
    try:
        ends = probe.end_offsets((topic, p) for p in range(partitions))
    finally:
        probe.close()
    return all(end == 0 for end in ends.values())


def latest_finished_replay(offline_root: Any, views: list[FeatureView]) -> Any:
    from freshet.replay.plan import find_plans

    wanted = sorted([v.name, v.version] for v in views)
    done = [p for p in find_plans(offline_root)
            if p.status == "done" and sorted([list(x) for x in p.views]) == wanted]
    if not done:
        raise PipelineError(
            f"no finished replay of {', '.join(f'{v.name} v{v.version}' for v in views)} under {offline_root}: "
            "run `freshet replay` for exactly these views first (same --offline-root)")
    return max(done, key=lambda p: p.finished_at or "")


def cmd_get(args: argparse.Namespace) -> int:
    from freshet.features.as_of import AsOfHorizonError
    from freshet.features.durations import parse_event_time_ms
    from freshet.features.errors import RequestError
    from freshet.features.online import OnlineClient
    from freshet.pipelines.config import settings_from_args

    registry = Registry.load(args.repo)
    for name in args.view:
        registry.view(name)  # an unknown view is an error naming the known ones
    settings = settings_from_args(args)
    if settings.redis_url is None:
        raise ConfigError("no Redis configured: set FRESHET_REDIS_URL, pass --redis-url or run `freshet dev up`")
    at = None
    if args.at is not None:
        try:
            at = parse_event_time_ms(args.at)
        except ValueError as exc:
            raise ConfigError(f"--at: {exc}; give UTC epoch milliseconds or ISO-8601 such as "
                              "2026-11-22T12:00:00Z") from None
    client = OnlineClient(settings.redis_url, registry.views)
    try:
        vectors = client.get_online_features(args.entities, args.view, at=at)
    except RequestError as exc:
        raise ConfigError(f"--{exc}") from None  # "--at ...: why"
    except AsOfHorizonError as exc:
        if at is None:  # as of now, past a hot entity's cap: not a usage error
            raise
        raise ConfigError(f"--at {args.at}: {exc}") from None
    finally:
        client.close()
    missing = [(str(v.entity), view) for v in vectors for view, value in per_view(v).items() if not value["found"]]
    if args.json:
        print(json.dumps({str(v.entity): per_view(v) for v in vectors}, indent=2, default=str))
    else:
        print("\n".join(format_table([FEATURE_HEADER, *feature_rows(vectors)])))
    for entity, view in missing:
        if registry.views[view.split("@")[0]].as_of == "request":
            print(f"freshet get: view {view!r} has no window that ended by {format_time(at)} (entity {entity!r})"
                  if at is not None else f"freshet get: view {view!r} has no window that ended yet (entity "
                  f"{entity!r})", file=sys.stderr)
            continue
        print(f"freshet get: no value of view {view!r} for entity {entity!r} in Redis (never written, "
              "expired past the view's TTL, or a key of the wrong type)", file=sys.stderr)
    return EXIT_CHECK_FAILED if missing else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from freshet.demo import run_demo

    return run_demo(args)
