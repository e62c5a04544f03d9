"""`freshet serve` and `freshet training-set`: the two read paths."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from freshet.features.errors import ConfigError
from freshet.features.redact import redact_url
from freshet.features.registry import Registry


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option

    p = sub.add_parser(
        "serve", help="HTTP service: POST /features returns feature vectors with freshness",
        description="Serve online features over HTTP (FastAPI on uvicorn). POST /features with "
        '{"entities": [...], "features": ["view:feature", "view", "view@2:feature"]}; GET /healthz, '
        "/readyz (Redis reachable), /metrics (Prometheus), /openapi.json, /docs (Swagger UI). Bad input gets a "
        "4xx with the reason as {\"error\": ...}. With a token (FRESHET_SERVE_TOKEN, --token-file, or --token, "
        "which other users can see in the process list) requests need 'Authorization: Bearer <token>'. "
        "Reads FRESHET_REDIS_URL, else the local stack.",
        epilog="example: FRESHET_SERVE_TOKEN=s3cret freshet serve --repo examples/fraud --port 8000\n"
        "  curl -s -H 'Authorization: Bearer s3cret' localhost:8000/features "
        "-d '{\"entities\": [\"card-00001\"], \"features\": [\"card_spend_5m\"]}'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_repo_option(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token", default=None, help="bearer token required (prefer FRESHET_SERVE_TOKEN or --token-file)")
    p.add_argument("--token-file", default=None, metavar="FILE", help="read the bearer token from FILE")
    p.add_argument("--max-entities", type=int, default=1000, help="entities per request (default 1000)")
    p.add_argument("--max-key-length", type=int, default=256, help="characters per entity key (default 256)")
    p.add_argument("--max-keys", type=int, default=10_000,
                   help="keys read per request, entities x views (default 10000; over it: 413)")
    p.add_argument("--redis-connections", type=int, default=50,
                   help="Redis connection pool size (default 50); a request that finds none free within 1 s "
                   "gets 503 with Retry-After")
    p.add_argument("--max-connections", type=int, default=1000,
                   help="concurrent HTTP connections before new ones get 503 (default 1000)")
    p.add_argument("--body-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="a request body must arrive within this (default 10; slower clients get 408)")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="a request's headers must arrive within this, or the connection is closed (default 10)")
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.add_argument("--consistency-every", type=float, default=None, metavar="SECONDS",
                   help="every SECONDS, compare a sample of each view's Redis values with the log "
                   "(FRESHET_OFFLINE_ROOT) and export freshet_consistency_mismatch_ratio (default: off)")
    p.add_argument("--consistency-sample", type=int, default=200, metavar="N",
                   help="entities sampled per view and check (default 200)")
    add_connection_options(p, kafka=False, state=False)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser(
        "training-set", help="point-in-time-correct features for a labels file",
        description="For each label row (entity, timestamp) and requested view, take the log row with the "
        "largest feature_ts <= timestamp (< with --exclusive), ties to the larger source offset, null "
        "when older than the view's TTL or when the entity has no history. Output columns are the "
        "feature names, or view__feature with --full-feature-names or when two views share a name, plus "
        "<view>__feature_ts. Labels: a Parquet or CSV file with the entity key column and a timestamp "
        "column (timestamp, epoch ms, or ISO-8601).",
    )
    add_repo_option(p)
    p.add_argument("--labels", required=True, metavar="FILE", help="labels (.parquet or .csv)")
    p.add_argument("--features", required=True, nargs="+", metavar="VIEW[:FEATURE]")
    p.add_argument("--out", required=True, metavar="FILE", help="output Parquet file")
    p.add_argument("--timestamp-column", default="ts", help="label time column (default ts)")
    p.add_argument("--entity-column", default=None, help="label entity column (default: the view's key)")
    p.add_argument("--exclusive", action="store_true", help="use feature_ts < t instead of <= t")
    p.add_argument("--full-feature-names", action="store_true", help="name every column view__feature")
    add_connection_options(p, kafka=False, redis=False, state=False)
    p.set_defaults(handler=cmd_training_set)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from freshet.features.online import AsyncOnlineClient
    from freshet.http_protocol import protocol_with_header_timeout
    from freshet.pipelines.config import settings_from_args
    from freshet.serve import ConsistencyChecks, Limits, create_app

    registry = Registry.load(args.repo)
    settings = settings_from_args(args)
    if settings.redis_url is None:
        raise ConfigError("no Redis configured: set FRESHET_REDIS_URL, pass --redis-url or run `freshet dev up`")
    token = serve_token(args)
    for flag, value, high in (("--port", args.port, 65535), ("--redis-connections", args.redis_connections, 10_000),
                              ("--max-connections", args.max_connections, 1_000_000)):
        if not (0 if flag == "--port" else 1) <= value <= high:
            raise ConfigError(f"{flag} {value} is out of range: allowed {0 if flag == '--port' else 1} to {high}")
    if not 0.1 <= args.header_timeout <= 3600 or not 0.1 <= args.body_timeout <= 3600:
        raise ConfigError(f"--header-timeout {args.header_timeout:g} / --body-timeout {args.body_timeout:g} out of "
                          "range: allowed 0.1 to 3600 seconds")
    try:
        limits = Limits(max_entities=args.max_entities, max_key_length=args.max_key_length, max_keys=args.max_keys,
                        body_timeout_s=args.body_timeout)
    except ValueError as exc:
        raise ConfigError(str(exc).replace("max_", "--max-").replace("_", "-")) from None
    client = AsyncOnlineClient(settings.redis_url, registry.views, max_connections=args.redis_connections)
    checks = None
    if args.consistency_every is not None:
        if not 1 <= args.consistency_every <= 86_400 or not 1 <= args.consistency_sample <= 100_000:
            raise ConfigError(f"--consistency-every {args.consistency_every:g} / --consistency-sample "
                              f"{args.consistency_sample} out of range: allowed 1 to 86400 s and 1 to 100000")
        checks = ConsistencyChecks(settings.redis_url, settings.log_root(), args.consistency_every,
                                   args.consistency_sample)
    app = create_app(client, registry.views, token=token, limits=limits, consistency=checks)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info",
                            access_log=not args.quiet, limit_concurrency=args.max_connections,
                            timeout_keep_alive=5, log_config=None,
                            http=protocol_with_header_timeout(args.header_timeout))
    server = uvicorn.Server(config)
    print(f"freshet serve: {len(registry.views)} view(s) from {args.repo}, Redis {redact_url(settings.redis_url)}, "
          f"token {'required' if token else 'not required'}", file=sys.stderr)
    print(f"freshet serve: listening on http://{args.host}:{args.port} (docs /docs, metrics /metrics)",
          file=sys.stderr, flush=True)
    server.run()
    return 0


def serve_token(args: argparse.Namespace) -> str | None:
    """--token-file, else --token, else FRESHET_SERVE_TOKEN; an empty token is refused."""
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: cannot read it ({exc.strerror})") from None
        if not token:
            raise ConfigError(f"--token-file {args.token_file} is empty")
        return token
    given: str | None = args.token if args.token is not None else os.environ.get("FRESHET_SERVE_TOKEN")
    if given is not None and not given.strip():
        raise ConfigError("the bearer token is empty: unset FRESHET_SERVE_TOKEN or give a token")
    return given


def cmd_training_set(args: argparse.Namespace) -> int:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from freshet.features.training import get_historical_features
    from freshet.pipelines.config import settings_from_args

    registry = Registry.load(args.repo)
    settings = settings_from_args(args, use_local_stack=False)
    labels_path = Path(args.labels)
    if not labels_path.exists():
        raise ConfigError(f"labels file {labels_path} does not exist")
    started = time.monotonic()
    labels = pacsv.read_csv(labels_path) if labels_path.suffix == ".csv" else pq.read_table(labels_path)

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    progress(f"{labels.num_rows:,} labels from {labels_path}")
    table = get_historical_features(labels, args.features, registry.views, settings.log_root(),
                                    entity_column=args.entity_column, timestamp_column=args.timestamp_column,
                                    exclusive=args.exclusive, full_feature_names=args.full_feature_names,
                                    progress=progress)
    pq.write_table(table, args.out)
    progress(f"wrote {table.num_rows:,} rows x {table.num_columns} columns to {args.out}")
    return 0
