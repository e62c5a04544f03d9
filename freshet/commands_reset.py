"""`freshet reset`: start a source's live processing over after its history changed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from freshet.features.errors import ConfigError
from freshet.features.registry import Registry


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option

    p = sub.add_parser(
        "reset", help="start a source over: delete its group's offsets, state and internal topics, move its log aside",
        description="After a source topic was deleted and recreated, or the broker came back empty, "
        "`freshet run` refuses to go on with the old group's offsets and window state. `reset` removes them "
        "(the consumer group, the window state directory, Quix Streams' changelog and repartition topics of "
        "the group) and moves the log of each of the source's views aside to v<N>.before-reset-<time> (kept, "
        "not read any more), so the next `freshet run` starts at the topic's beginning and overwrites no file. "
        "Every view of the source is reset together: they share one state. Stop every `freshet run` of the "
        "group first. Without --yes it only prints what it would do.",
        epilog="example: freshet reset --repo examples/fraud --yes && freshet run --repo examples/fraud",
    )
    add_repo_option(p)
    p.add_argument("--topic", help="the source topic, when the repository reads several")
    p.add_argument("--group", help="the consumer group to reset (default freshet.<topic>, as `freshet run`)")
    p.add_argument("--yes", action="store_true", help="do it (without: print what would be done)")
    p.add_argument("--json", action="store_true", help="print the steps as JSON")
    add_connection_options(p, redis=False)
    p.set_defaults(handler=cmd_reset)


def cmd_reset(args: argparse.Namespace) -> int:
    from freshet.infra.settings import kafka_client_config
    from freshet.pipelines.config import settings_from_args
    from freshet.pipelines.reset import apply_reset, plan_reset

    registry = Registry.load(args.repo)
    by_topic = registry.views_by_topic(None)
    if args.topic is None and len(by_topic) > 1:
        raise ConfigError(f"the repository reads {len(by_topic)} topics ({', '.join(by_topic)}): choose one with --topic")
    topic = args.topic or next(iter(by_topic))
    if topic not in by_topic:
        raise ConfigError(f"no view reads topic {topic!r}; topics: {', '.join(by_topic)}")
    views = by_topic[topic]
    settings = settings_from_args(args)
    group = args.group or f"freshet.{topic}"
    plan = plan_reset(kafka_client_config(settings), views, group=group, state_root=Path(settings.state_dir),
                      offline_root=settings.log_root())
    steps = [f"delete consumer group {group} (its committed offsets)",
             *(f"delete internal topic {t}" for t in plan.internal_topics),
             f"remove window state {plan.state_dir}" + ("" if plan.state_dir.exists() else " (not there)"),
             *(f"move log {plan.root.display(a)} -> {plan.root.display(b)}" for a, b in plan.logs if plan.root)]
    if not args.yes:
        print("\n".join(["freshet reset would:", *(f"  {s}" for s in steps),
                         "nothing was done: run again with --yes"]), file=sys.stderr)
        return 0
    apply_reset(kafka_client_config(settings), plan)
    if args.json:
        print(json.dumps({"topic": topic, "group": group, "done": plan.done}, indent=2))
    else:
        print("\n".join([f"reset {topic} (group {group}):", *(f"  {s}" for s in plan.done),
                         f"next: freshet run --repo {args.repo} reads {topic} from its beginning"]))
    return 0
