"""`freshet replay`, `freshet parity`, `freshet status`: history rebuilt from the log, and checked."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from freshet.features.as_of_layout import accepted_dir, list_accepted_parts
from freshet.features.errors import ReplayUsageError
from freshet.features.log_store import open_log_root, s3_endpoint_from_env
from freshet.features.offline_layout import list_parts, view_dir
from freshet.features.registry import Registry
from freshet.tables import format_table


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option
    from freshet.commands_run import add_metrics_options

    p = sub.add_parser(
        "replay", help="rebuild a view's offline history by replaying its topic through the same operator",
        description="Fix the end offsets now (or the offsets for --to), read the topic's partitions "
        "directly from --from with fresh state, run the same window operator as `freshet run`, stop exactly "
        "at the end offsets and write the Parquet log (by default into the view's own v<version> directory). "
        "Redis is untouched unless --online. Interrupted? Run the same command again: it resumes the "
        "unfinished plan and ends with the same log as an uninterrupted replay. Afterwards "
        "`freshet run --view NAME --from-replay` continues live from where the replay stopped, "
        "with its window state (the versioning handover).",
    )
    add_repo_option(p)
    p.add_argument("--view", action="append", required=True, metavar="NAME", help="view to rebuild (repeatable)")
    p.add_argument("--from", dest="from_spec", default="earliest", metavar="earliest|ISO-8601",
                   help="where to start: the earliest offset, or the first record at/after a time (default earliest)")
    p.add_argument("--to", dest="to_spec", default="end", metavar="end|ISO-8601",
                   help="where to stop: the end offsets now, or the first record at/after a time (default end)")
    p.add_argument("--online", action="store_true", help="also write Redis (newer-wins keeps live values current)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes, each reading its share of the partitions (default 1; fixed by the plan on resume)")
    p.add_argument("--replace", action="store_true",
                   help="delete the view's existing log in the target directory before replaying")
    p.add_argument("--trust-message-key", action="store_true", help="skip re-keying (see `freshet run`)")
    p.add_argument("--max-rate", type=float, default=None, metavar="EVENTS_PER_S",
                   help="read at most this many events per second in all (spares a shared broker)")
    p.add_argument("--checkpoint-interval", type=float, default=2.0, metavar="SECONDS",
                   help="how often the log is made durable and the position saved for resuming (default 2)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-id", default=None, help=argparse.SUPPRESS)
    p.add_argument("--plan", default=None, help=argparse.SUPPRESS)
    add_metrics_options(p, default_port=0)
    add_connection_options(p)
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser(
        "parity", help="compare two offline logs of a view row for row",
        description="Compare the logs of a view under two roots (or view directories), ignoring "
        "produced_at. Rows are matched by entity, window and source offset; reports missing rows "
        "(in A only), extra rows (in B only) and value differences (floats within --rel-tol/--abs-tol). "
        "Exit 0 when equal, 1 on any difference.",
    )
    p.add_argument("--view", required=True, metavar="NAME")
    p.add_argument("--a", required=True, metavar="DIR|s3://...", help="offline root or view directory A")
    p.add_argument("--b", required=True, metavar="DIR|s3://...", help="offline root or view directory B")
    p.add_argument("--s3-endpoint", metavar="URL", default=None,
                   help="S3 endpoint for s3:// roots (default: FRESHET_S3_ENDPOINT / AWS_ENDPOINT_URL_S3 / "
                   "AWS_ENDPOINT_URL, else the local stack's object store, else AWS)")
    p.add_argument("--version", type=int, default=None, help="compare only this version")
    p.add_argument("--rel-tol", type=float, default=1e-9, help="relative float tolerance (default 1e-9)")
    p.add_argument("--abs-tol", type=float, default=1e-9, help="absolute float tolerance (default 1e-9)")
    p.add_argument("--show", type=int, default=5, help="examples of each kind to print (default 5)")
    p.set_defaults(handler=cmd_parity)

    p = sub.add_parser(
        "status", help="per view and version: consumer lag and the time range its log covers",
        description="For each view and version: the live consumer group's lag (from the broker: needs "
        "FRESHET_KAFKA_BOOTSTRAP or the local stack; without one the lag column shows '-'), the log's rows, "
        "files and the feature_ts range it covers (FRESHET_OFFLINE_ROOT), and the replays recorded for it.",
        epilog="example: freshet status --repo examples/fraud --json",
    )
    add_repo_option(p)
    p.add_argument("--group", help="live consumer group (default freshet.<topic>)")
    p.add_argument("--json", action="store_true", help="print JSON (per view: log, live lag by partition, replays)")
    add_connection_options(p, redis=False, state=False)
    p.set_defaults(handler=cmd_status)


def cmd_replay(args: argparse.Namespace) -> int:
    from freshet.commands_run import select_views, start_metrics
    from freshet.infra.settings import kafka_client_config
    from freshet.infra.topics import provision_topics, source_topic_specs
    from freshet.pipelines.config import settings_from_args
    from freshet.pipelines.stats import PipelineStats
    from freshet.replay.plan import check_resumable, find_unfinished, load_plan, make_plan, plan_key
    from freshet.replay.runner import ProgressLine, commit_end, run_worker, run_workers

    if args.workers < 1 or args.workers > 64:
        raise ReplayUsageError(f"--workers {args.workers} is out of range: allowed 1 to 64")
    registry = Registry.load(args.repo)
    registry.require_lock_consistent()
    views = select_views(registry, args.view, None)
    settings = settings_from_args(args)
    kafka = kafka_client_config(settings)
    offline_root = settings.log_root()

    if args.worker:
        plan = load_plan(offline_root, args.plan)
        stats = run_worker(plan, views, kafka, settings.redis_url, None, int(args.worker_id),
                           max_rate=args.max_rate, checkpoint_s=args.checkpoint_interval)
        print(json.dumps(stats))
        return 0

    if args.online and settings.redis_url is None:
        raise ReplayUsageError("--online needs Redis: set FRESHET_REDIS_URL or pass --redis-url")
    if args.metrics_port and args.workers > 1:
        raise ReplayUsageError(f"--metrics-port serves one process's counters: use it with --workers 1 (got "
                               f"--workers {args.workers})")
    started = time.monotonic()
    unfinished = find_unfinished(offline_root, plan_key(views, args.from_spec, args.to_spec))
    if unfinished is not None:
        plan = unfinished
        check_resumable(kafka, plan)
        print(f"resuming unfinished replay {plan.plan_id} (end offsets fixed {plan.created_at}, "
              f"{plan.workers} worker(s))", file=sys.stderr)
    else:
        for view in views:
            existing = list_parts(offline_root, view) + list_accepted_parts(offline_root, view)
            if existing and not args.replace:
                raise ReplayUsageError(
                    f"view {view.name!r} v{view.version} already has {len(existing)} log file(s) under "
                    f"{offline_root}: replay into a scratch location with --offline-root DIR, or rebuild "
                    "it with --replace")
            if existing:  # the values log, and a request-time view's accepted-event log
                for directory in (view_dir(offline_root, view), accepted_dir(offline_root, view)):
                    if offline_root.is_dir(directory):
                        offline_root.delete_dir(directory)
        source = views[0].source
        provision_topics(kafka, source_topic_specs(source.topic, source.partitions))
        plan = make_plan(kafka, views, from_spec=args.from_spec, to_spec=args.to_spec,
                         offline_root=offline_root, state_root=Path(settings.state_dir), online=args.online,
                         rekey=not args.trust_message_key, workers=args.workers,
                         max_event_ahead_ms=settings.max_event_ahead_ms)
        plan.save()
        print(f"replay {plan.plan_id}: {plan.total:,} events of {plan.topic} "
              f"(offsets {plan.start} -> {plan.end}) into {offline_root}", file=sys.stderr)
    progress = ProgressLine(plan)
    if plan.workers == 1:
        run_stats = PipelineStats()
        metrics = start_metrics(args, run_stats, views, mode="replay")
        try:
            stats = run_worker(plan, views, kafka, settings.redis_url, progress, max_rate=args.max_rate,
                               checkpoint_s=args.checkpoint_interval, stats=run_stats)
        finally:
            if metrics is not None:
                metrics.close()
    else:
        # settings reach the workers through their environment, never argv (which `ps` shows to everyone)
        command = [sys.executable, "-m", "freshet", "replay", "--repo", args.repo, "--plan", plan.plan_id,
                   *[x for v in args.view for x in ("--view", v)], "--checkpoint-interval",
                   str(args.checkpoint_interval)]
        if args.max_rate:
            command += ["--max-rate", str(args.max_rate)]
        env = {**os.environ, "FRESHET_OFFLINE_ROOT": offline_root.uri, "FRESHET_STATE_DIR": str(settings.state_dir),
               "FRESHET_KAFKA_CONFIG": json.dumps(settings.kafka_config)}
        for name, value in (("FRESHET_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
                            ("FRESHET_REDIS_URL", settings.redis_url), ("FRESHET_S3_ENDPOINT", offline_root.endpoint)):
            if value:
                env[name] = value
        stats = run_workers(plan, command, progress, env)
    elapsed = time.monotonic() - started
    if not stats.get("finished"):
        print(json.dumps({"plan": plan.plan_id, "finished": False, **_summary(stats, elapsed)}, indent=2))
        print("replay interrupted: run the same command again to resume it", file=sys.stderr)
        return 130
    commit_end(kafka, plan)
    plan.mark_done()
    print(json.dumps({"plan": plan.plan_id, "finished": True, "events": plan.total,
                      "workers": plan.workers, **_summary(stats, elapsed)}, indent=2))
    return 0


def _summary(stats: dict[str, Any], elapsed: float) -> dict[str, Any]:
    return {
        "read": stats.get("read", 0), "values_written": stats.get("offline_rows", 0),
        "online_writes": stats.get("online_writes", 0), "late": stats.get("late", 0),
        "invalid": stats.get("invalid", 0), "seconds": round(elapsed, 1),
        "events_per_s": round(stats.get("read", 0) / elapsed) if elapsed > 0 else None,
    }


def cmd_parity(args: argparse.Namespace) -> int:
    from freshet.replay.parity import compare, compare_accepted

    endpoint = args.s3_endpoint or s3_endpoint_from_env()
    if endpoint is None and any(str(r).startswith("s3://") for r in (args.a, args.b)):
        from freshet.pipelines.config import local_object_store

        store = local_object_store()  # `freshet dev up --object-store`
        endpoint = store.endpoint if store is not None else None
    root_a = open_log_root(args.a, s3_endpoint=endpoint)
    root_b = open_log_root(args.b, s3_endpoint=endpoint)
    report = compare(args.view, root_a, root_b, version=args.version, rel_tol=args.rel_tol, abs_tol=args.abs_tol)
    accepted = compare_accepted(args.view, root_a, root_b, version=args.version, rel_tol=args.rel_tol,
                                abs_tol=args.abs_tol)
    equal = True
    for part in (report, accepted):
        if part is None:
            continue
        equal = equal and part.equal
        print(f"view {part.view}: {part.rows_a:,} rows in A, {part.rows_b:,} rows in B")
        print(f"missing from B: {len(part.missing)}; extra in B: {len(part.extra)}; value differences: "
              f"{len(part.different)}; duplicates A/B: {part.duplicates_a}/{part.duplicates_b}")
        for label, rows in (("missing", part.missing), ("extra", part.extra)):
            for row in rows[: args.show]:
                print(f"  {label}: {_short(row)}")
        for a, b in part.different[: args.show]:
            cols = sorted(c for c in set(a) | set(b) if c != "produced_at" and a.get(c) != b.get(c))
            print(f"  differs: {_short(a)}: " + ", ".join(f"{c} {a.get(c)!r} != {b.get(c)!r}" for c in cols))
    print("parity: OK" if equal else "parity: DIFFERENT")
    return 0 if equal else 1


def _minute(iso: str | None) -> str:
    return "-" if iso is None else iso[:19].replace("T", " ")


def _short(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items() if k != "produced_at")


def cmd_status(args: argparse.Namespace) -> int:
    from freshet.infra.settings import kafka_client_config
    from freshet.pipelines.config import settings_from_args
    from freshet.replay.status import view_status

    registry = Registry.load(args.repo)
    settings = settings_from_args(args)
    kafka = kafka_client_config(settings) if settings.kafka_bootstrap else None
    if kafka is not None:
        from freshet.infra.topics import cluster_metadata

        cluster_metadata(kafka, timeout_s=15)  # refused credentials or no broker: say so now, once
    rows = view_status(registry, kafka, settings.log_root(), args.group)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = [["VIEW", "VERSION", "TOPIC", "LAG", "LOG ROWS", "FILES", "FEATURE_TS FROM (UTC)", "TO (UTC)", "REPLAYS"]]
    for row in rows:
        live, log = row.get("live"), row["log"]
        lag = "-" if live is None else ("error" if live.get("error") else
                                        "not started" if live["lag"] is None else f"{live['lag']:,}")
        replays = row["replays"]
        table.append([row["view"], str(row["version"]), row["topic"], lag, f"{log['rows']:,}", str(log["files"]),
                      _minute(log["feature_ts_from"]), _minute(log["feature_ts_to"]),
                      f"{len(replays)} (last {replays[-1]['status']})" if replays else "0"])
    print("\n".join(format_table(table)))
    print(f"log: {settings.log_root()}; live group: {args.group or 'freshet.<topic>'}"
          + ("" if kafka else " (no broker configured: lag not measured)"))
    for error in sorted({row["live"]["error"] for row in rows if row.get("live") and row["live"].get("error")}):
        print(f"lag: {error}", file=sys.stderr)
    return 0
