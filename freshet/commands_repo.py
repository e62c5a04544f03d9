"""Commands over a feature repository: validate, list, lock, topics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from freshet.features.durations import format_duration
from freshet.features.errors import EXIT_CHECK_FAILED, DefinitionError, RepositoryError
from freshet.features.registry import LockCheck, Registry, fingerprint
from freshet.tables import format_table


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option

    p = sub.add_parser(
        "validate", help="load a repository, validate every view, check freshet.lock",
        description="Load every definition, validate it, and refuse a view whose semantics "
        "changed while its version did not (checked against freshet.lock). Exit 0 when valid, "
        "1 when a definition is invalid or changed without a version bump, 2 when --repo is not a directory.",
    )
    add_repo_option(p)
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser(
        "list", help="list views with window, emit mode, features and fingerprint",
        description="List the views of a repository with their window, grace, emit mode, "
        "features and fingerprint.",
    )
    add_repo_option(p)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser(
        "lock", help="write or update freshet.lock with each view's fingerprint",
        description="Record name, version and fingerprint of every view in <repo>/freshet.lock. "
        "Refuses (exit 2) when a locked version's semantics changed: bump the view's version.",
    )
    add_repo_option(p)
    p.set_defaults(handler=cmd_lock)

    p = sub.add_parser(
        "topics", help="create/check source, .dlq and .late topics",
        description="Create each source topic with its dead-letter (<topic>.dlq) and late "
        "(<topic>.late) topics, with explicit configs. Existing topics are checked: a "
        "partition-count mismatch is an error.",
    )
    add_repo_option(p)
    add_connection_options(p, redis=False, offline=False, state=False)
    p.set_defaults(handler=cmd_topics)


def _print_views(registry: Registry, checks: dict[str, LockCheck]) -> None:
    rows = [("VIEW", "VERSION", "WINDOW", "GRACE", "EMIT", "FEATURES", "FINGERPRINT", "LOCK", "EXPECTED EVERY")]
    for view in registry.views.values():
        check = checks.get(view.name)
        rows.append((
            view.name, str(view.version), view.window.describe(), format_duration(view.grace),
            view.emit, ",".join(view.feature_names()), fingerprint(view),
            check.status if check else "-",
            format_duration(view.expected_interval) if view.expected_interval else "-",
        ))
    print("\n".join(format_table(rows)))


def cmd_validate(args: argparse.Namespace) -> int:
    """Exit 1 when the check fails (invalid definitions, a changed view without a version bump);
    a repository that is not there is a usage error (2)."""
    if not Path(args.repo).is_dir():
        raise RepositoryError(f"feature repository {args.repo!r} is not a directory: pass --repo DIR")
    try:
        registry = Registry.load(args.repo)
        checks = registry.require_lock_consistent()
    except (DefinitionError, RepositoryError) as exc:
        print(f"freshet validate: {exc}", file=sys.stderr)
        print(f"invalid: {args.repo}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    _print_views(registry, {c.view: c for c in checks})
    new = [c for c in checks if c.status == "new"]
    for check in new:
        print(f"note: {check.message()}")
    print(f"ok: {len(registry.views)} view(s) valid in {args.repo}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    registry = Registry.load(args.repo)
    checks = {c.view: c for c in registry.check_lock()}
    _print_views(registry, checks)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    registry = Registry.load(args.repo)
    checks = registry.write_lock()
    for check in checks:
        verb = "added" if check.status == "new" else "unchanged"
        print(f"{check.view} v{check.version} {check.fingerprint} {verb}")
    print(f"wrote {registry.lock_path}")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from freshet.infra.settings import kafka_client_config
    from freshet.infra.topics import provision_topics, source_topic_specs
    from freshet.pipelines.config import settings_from_args

    registry = Registry.load(args.repo)
    settings = settings_from_args(args)
    specs = [spec for topic, parts in registry.topics().items() for spec in source_topic_specs(topic, parts)]
    reports = provision_topics(kafka_client_config(settings), specs)
    for report in reports:
        print(f"{report.name:40} partitions={report.partitions:<4} {report.status}")
    return 0
