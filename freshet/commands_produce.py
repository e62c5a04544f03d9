"""`freshet produce`: a synthetic stream onto a source topic, so a session can be tried end to end."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from freshet.features.errors import ConfigError
from freshet.features.registry import Registry
from freshet.tables import format_table


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option

    p = sub.add_parser(
        "produce", help="write a synthetic event stream to a source topic (for trying things out)",
        description="Produce N synthetic JSON events to a source's topic: entities named after the key "
        "field (card_id -> card-00042), event times spread over --span ending now, with a share out of "
        "order, a share late beyond the grace period and a share malformed (they go to .dlq when run). "
        "The example repository's card schema gets a realistic card stream. Creates the topic (and its "
        ".dlq/.late) when missing. Reads FRESHET_KAFKA_BOOTSTRAP and FRESHET_KAFKA_CONFIG, else the "
        "local stack of `freshet dev up`.",
        epilog="example: freshet produce --repo examples/fraud --events 20000 --rate 2000",
    )
    add_repo_option(p)
    p.add_argument("--source", metavar="NAME", help="source to write (default: the repository's only source)")
    p.add_argument("--events", type=int, default=20_000, metavar="N", help="events to write (default 20000)")
    p.add_argument("--entities", type=int, default=2_000, metavar="N", help="distinct entities (default 2000)")
    p.add_argument("--rate", type=float, default=None, metavar="EVENTS_PER_S",
                   help="at most this many events a second (default: as fast as the broker takes them)")
    p.add_argument("--span", type=float, default=30.0, metavar="MINUTES",
                   help="event times spread over the last MINUTES (default 30)")
    p.add_argument("--seed", type=int, default=7, help="random seed: the same seed writes the same events")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_connection_options(p, redis=False, offline=False, state=False)
    p.set_defaults(handler=cmd_produce)


def cmd_produce(args: argparse.Namespace) -> int:
    from freshet.infra.settings import kafka_client_config
    from freshet.infra.topics import provision_topics, source_topic_specs
    from freshet.pipelines.config import settings_from_args
    from freshet.synthetic import StreamSpec, generate_for_schema, produce

    if args.events < 1 or args.events > 100_000_000:
        raise ConfigError(f"--events {args.events} is out of range: allowed 1 to 100000000")
    if args.entities < 1 or args.entities > 10_000_000:
        raise ConfigError(f"--entities {args.entities} is out of range: allowed 1 to 10000000")
    if args.rate is not None and not 0 < args.rate <= 10_000_000:
        raise ConfigError(f"--rate {args.rate:g} is out of range: allowed above 0 to 10000000 events/s")
    if not 0 < args.span <= 525_600:
        raise ConfigError(f"--span {args.span:g} is out of range: allowed above 0 to 525600 minutes (a year)")
    registry = Registry.load(args.repo)
    sources = {view.source.name: view.source for view in registry.views.values()}
    if args.source is None:
        if len(sources) != 1:
            raise ConfigError(f"the repository has {len(sources)} sources ({', '.join(sorted(sources))}): "
                              "choose one with --source NAME")
        source = next(iter(sources.values()))
    elif args.source in sources:
        source = sources[args.source]
    else:
        raise ConfigError(f"unknown source {args.source!r}: known {', '.join(sorted(sources)) or 'none'}")
    settings = settings_from_args(args)
    if settings.kafka_bootstrap is None:
        raise ConfigError("no broker: set FRESHET_KAFKA_BOOTSTRAP, pass --bootstrap, or start the local "
                          "stack with `freshet dev up`")
    kafka = kafka_client_config(settings)
    provision_topics(kafka, source_topic_specs(source.topic, source.partitions))
    spec = StreamSpec(events=args.events, cards=args.entities, seed=args.seed, span_ms=int(args.span * 60_000))
    events = generate_for_schema(source.event_schema, source.key, source.timestamp, spec)
    started = time.monotonic()
    print(f"producing {args.events:,} events to {source.topic}"
          + (f" at {args.rate:,.0f}/s" if args.rate else ""), file=sys.stderr)
    summary = produce(kafka, source.topic, spec, events=events, rate=args.rate,
                      progress=lambda n: print(f"  produced {n:,} of {args.events:,}", file=sys.stderr))
    seconds = time.monotonic() - started
    result = {"topic": source.topic, "produced": summary.produced, "valid": summary.valid,
              "malformed": summary.malformed, "seconds": round(seconds, 3),
              "events_per_s": round(summary.produced / seconds) if seconds > 0 else None}
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(format_table([["topic", "produced", "valid", "malformed", "seconds", "events/s"],
                                      [source.topic, f"{summary.produced:,}", f"{summary.valid:,}",
                                       f"{summary.malformed:,}", f"{seconds:.1f}",
                                       f"{result['events_per_s']:,}" if result["events_per_s"] else "-"]])))
    return 0
