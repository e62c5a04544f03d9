"""`freshet consistency`: sample entities, compare what Redis serves with what the log says it should."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

from freshet.features.errors import EXIT_CHECK_FAILED, ConfigError, OnlineStoreError
from freshet.features.registry import Registry
from freshet.tables import format_table, format_time, format_value


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option

    p = sub.add_parser(
        "consistency", help="sample entities and compare Redis with the log's point-in-time value now",
        description="Sample up to N entities that Redis holds for the view and N that the log holds, and compare "
        "each online value with the log's latest row (the training-set rule at this instant): same feature_ts "
        "and values is a match; an older online value or other values is a mismatch; an online value newer "
        "than the log is pending (the log is made durable at checkpoints); a value on one side only is "
        "missing (values past the view's TTL are expected to be gone). Prints the counts, the mismatch rate "
        "and the inconsistent entities with their differences (or --json); exits 1 when any entity is "
        "inconsistent. Reads FRESHET_REDIS_URL and FRESHET_OFFLINE_ROOT.",
        epilog="example: freshet consistency --repo examples/fraud --view card_spend_5m --sample 500",
    )
    add_repo_option(p)
    p.add_argument("--view", required=True, metavar="NAME", help="the view to check (its current version)")
    p.add_argument("--sample", type=int, default=1000, metavar="N",
                   help="entities to sample from Redis and as many from the log (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the log sample (default: random)")
    p.add_argument("--show", type=int, default=10, metavar="N", help="inconsistent entities to print (default 10)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_connection_options(p, kafka=False, state=False)
    p.set_defaults(handler=cmd_consistency)


def _online_values(client: Any, view: Any, entities: list[str]) -> dict[str, dict[str, Any]]:
    """Raw hashes (not the SDK's staleness policy): feature_ts and decoded features per entity."""
    import redis
    from redis.cluster import RedisCluster

    from freshet.features.online_layout import TS_FIELD, decode_value, online_key

    names = view.feature_names()
    pipe = client.pipeline() if isinstance(client, RedisCluster) else client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
    for entity in entities:
        pipe.hmget(online_key(view.name, view.version, entity), [TS_FIELD, *names])
    try:
        replies = pipe.execute()
    except redis.RedisError as exc:
        raise OnlineStoreError(f"Redis did not answer: {exc}") from None
    out = {}
    for entity, reply in zip(entities, replies, strict=True):
        if reply[0] is None:
            continue
        out[entity] = {"feature_ts": int(reply[0]),
                       **{n: decode_value(raw) for n, raw in zip(names, reply[1:], strict=True)}}
    return out


def _redis_sample(client: Any, view: Any, n: int) -> list[str]:
    from freshet.features.online_layout import online_key

    pattern = online_key(view.name, view.version, "*")
    prefix, suffix = pattern.split("*")
    found: list[str] = []
    for key in client.scan_iter(match=pattern, count=1000):
        text = key.decode() if isinstance(key, bytes) else key
        found.append(text[len(prefix):len(text) - len(suffix)])
        if len(found) >= n:
            break
    return found


def check_view(redis_url: str, view: Any, root: Any, sample: int, seed: int | None = None) -> Any:
    """One consistency check of ``view`` (the command's and ``freshet serve --consistency-every``'s)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import redis
    from redis.exceptions import RedisClusterException

    from freshet.features.consistency import ConsistencyReport, check_entity
    from freshet.features.log_store import open_log_root
    from freshet.features.offline_layout import list_parts
    from freshet.features.redact import redact_url
    from freshet.features.redis_connect import sync_client
    from freshet.pipelines.materialize import latest_rows

    try:
        client = sync_client(redis_url, socket_timeout=10, socket_connect_timeout=3)
    except RedisClusterException as exc:
        raise OnlineStoreError(f"Redis Cluster at {redact_url(redis_url)} did not answer: {exc}") from None
    root = open_log_root(root)
    if not list_parts(root, view):
        client.close()
        raise ConfigError(f"no log of view {view.name!r} v{view.version} under {root}: nothing to compare Redis "
                          "with (check FRESHET_OFFLINE_ROOT / --offline-root)")
    try:
        try:
            from_redis = _redis_sample(client, view, sample)
        except (redis.RedisError, RedisClusterException) as exc:
            raise OnlineStoreError(f"Redis at {redact_url(redis_url)} did not answer: {exc}") from None
        files = list_parts(root, view)
        key = view.entity_key
        # the sample from the log reads only its entity column; only the sampled entities become rows
        keys = root.dataset(files).to_table(columns=[key])[key]
        in_log = sorted({str(k) for k in pc.unique(keys).to_pylist()})
        rng = random.Random(seed)
        from_log = rng.sample(in_log, min(sample, len(in_log)))
        entities = list(dict.fromkeys([*from_redis, *from_log]))
        is_int = pa.types.is_integer(keys.type)
        typed = [int(e) for e in entities if e.lstrip("-").isdigit()] if is_int else entities
        latest, _read = latest_rows(root, view, entities=typed)
        offline = {str(row[key]): row for row in latest.to_pylist()}
        online = _online_values(client, view, entities)
    finally:
        client.close()
    now_ms = int(time.time() * 1000)
    wanted = set(entities)
    offline_rows = {e: {**row, "feature_ts": _ms(row["feature_ts"]), "produced_at": _ms(row["produced_at"])}
                    for e, row in offline.items() if e in wanted}
    return ConsistencyReport(view.name, view.version, [
        check_entity(e, view.feature_names(), online.get(e), offline_rows.get(e), now_ms=now_ms, ttl_ms=view.ttl)
        for e in entities])


def cmd_consistency(args: argparse.Namespace) -> int:
    from freshet.pipelines.config import settings_from_args

    if not 1 <= args.sample <= 1_000_000:
        raise ConfigError(f"--sample {args.sample} is out of range: allowed 1 to 1000000")
    view = Registry.load(args.repo).view(args.view)
    settings = settings_from_args(args)
    if settings.redis_url is None:
        raise ConfigError("no Redis configured: set FRESHET_REDIS_URL, pass --redis-url or run `freshet dev up`")
    root = settings.log_root()
    report = check_view(settings.redis_url, view, root, args.sample, args.seed)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        _print(report, args.show, root)
    return EXIT_CHECK_FAILED if report.inconsistent else 0


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def _print(report: Any, show: int, root: Any) -> None:
    print(f"{report.view} v{report.version}: {len(report.checks):,} entities sampled from Redis and the log "
          f"under {root}; {report.compared:,} compared, mismatch rate {report.mismatch_rate:.2%}")
    counts = [["match", "mismatch", "pending", "missing online", "missing offline", "expired"],
              [f"{report.count(v):,}" for v in ("match", "mismatch", "pending", "missing_online",
                                                 "missing_offline", "expired")]]
    print("\n".join(format_table(counts)))
    bad = report.inconsistent[:show]
    if bad:
        rows = [["ENTITY", "VERDICT", "ONLINE FEATURE_TS", "LOG FEATURE_TS", "DIFFERENCES"]]
        for c in bad:
            rows.append([c.entity, c.verdict, format_time(c.online_ts), format_time(c.offline_ts),
                         "; ".join(f"{f}: {format_value(a)} != {format_value(b)}" for f, a, b in c.differences)
                         or "-"])
        print("\n".join(format_table(rows)))
        if len(report.inconsistent) > show:
            print(f"... and {len(report.inconsistent) - show:,} more (--show N, or --json)", file=sys.stderr)
