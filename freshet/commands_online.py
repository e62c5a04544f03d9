"""`freshet materialize`: refill the online store from the Parquet log."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from freshet.features.errors import ConfigError
from freshet.features.registry import Registry


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option

    p = sub.add_parser(
        "materialize", help="write each entity's latest logged value to Redis (after Redis lost data)",
        description="For each view (its current version), take the latest Parquet log row per entity "
        "(largest feature_ts, ties to the larger source offset: what a training set would read now) "
        "and write it to Redis through the pipeline's newer-wins script: a fresher value already in "
        "Redis is never replaced, so this is safe while `freshet run` is writing. Keys get the TTL "
        "they had left (a value written at produced_at expires at produced_at + the view's ttl); "
        "values already past it are skipped. Prints one summary row per view (--json for scripts); "
        "progress goes to stderr. Exit 0 when every view was materialized.",
        epilog="example: freshet materialize --repo examples/fraud --view card_spend_5m --since 2026-11-20",
    )
    add_repo_option(p)
    p.add_argument("--view", action="append", metavar="NAME",
                   help="view to materialize (repeatable; default: every view of the repository)")
    p.add_argument("--since", metavar="ISO-8601|EPOCH_MS",
                   help="only log rows with feature_ts at or after this time (entities with no such row "
                   "are left alone)")
    p.add_argument("--entities-file", metavar="FILE",
                   help="only these entities: a text file with one entity key per line")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_connection_options(p, kafka=False, state=False)
    p.set_defaults(handler=cmd_materialize)


def _entities(path: str | None, kind: str) -> list[Any] | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--entities-file {path!r} is not a file: give a text file with one entity key per line")
    keys = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if kind != "int":
        return keys
    bad = [k for k in keys if not k.lstrip("-").isdigit()]
    if bad:
        raise ConfigError(f"--entities-file {path!r}: {bad[0]!r} is not an integer key, and this view's "
                          f"entity key is an int")
    return [int(k) for k in keys]


def cmd_materialize(args: argparse.Namespace) -> int:
    from freshet.features.durations import parse_event_time_ms
    from freshet.pipelines.config import settings_from_args
    from freshet.pipelines.materialize import materialize_view
    from freshet.pipelines.online_sink import RedisOnlineWriter
    from freshet.tables import format_table

    registry = Registry.load(args.repo)
    names = args.view or list(registry.views)
    unknown = [n for n in names if n not in registry.views]
    if unknown:
        raise ConfigError(f"unknown view {unknown[0]!r}; the repository has {', '.join(sorted(registry.views))}")
    since_ms = None
    if args.since is not None:
        try:
            since_ms = parse_event_time_ms(args.since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
    settings = settings_from_args(args)
    if settings.redis_url is None:
        raise ConfigError("no Redis configured: set FRESHET_REDIS_URL, pass --redis-url or run `freshet dev up`")
    root = settings.log_root()
    writer = RedisOnlineWriter(settings.redis_url, background=False, batch_size=1 << 30)
    summaries = []
    try:
        for name in names:
            view = registry.views[name]
            entities = _entities(args.entities_file, view.source.event_schema[view.entity_key])
            last_report = [0.0]

            def progress(done: int, total: int, name: str = name, last: list[float] = last_report) -> None:
                now = time.monotonic()
                if now - last[0] >= 1.0 or done == total:
                    last[0] = now
                    print(f"materialize {name}: {done:,}/{total:,} entities", file=sys.stderr, flush=True)

            summaries.append(materialize_view(root, view, writer, since_ms=since_ms, entities=entities,
                                              progress=progress))
    finally:
        writer.close()
    if args.json:
        print(json.dumps([s.json() for s in summaries], indent=2))
        return 0
    header = ("VIEW", "VERSION", "LOG ROWS", "ENTITIES", "WRITTEN", "SKIPPED (OLDER)", "SKIPPED (EXPIRED)",
              "EVENTS ADDED", "SECONDS")
    rows = [header] + [(s.view, str(s.version), f"{s.log_rows:,}", f"{s.entities:,}", f"{s.written:,}",
                        f"{s.skipped_older:,}", f"{s.skipped_expired:,}",
                        f"{s.events_added:,}" if s.events_added or s.events_expired else "-", f"{s.seconds:.1f}")
                       for s in summaries]
    print("\n".join(format_table(rows, right_from=1)))
    return 0
