"""`freshet drift`: PSI per feature of a view, current period against a reference (a period or a training set)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from freshet.features.errors import EXIT_CHECK_FAILED, ConfigError
from freshet.features.registry import Registry
from freshet.tables import format_table


def register(sub: Any) -> None:
    from freshet.cli import add_connection_options, add_repo_option

    p = sub.add_parser(
        "drift", help="PSI drift per feature: a period of the log against a reference period or training set",
        description="Compare the distribution of each feature of a view in the log over --current FROM..TO "
        "with a reference: another period of the log (--reference FROM..TO) or a training set "
        "(--reference-file, columns named as the features or view__feature). Numeric features are binned at "
        "the reference's deciles, text and booleans by value (the 20 most frequent, then 'other'); the "
        "population stability index (PSI) below 0.1 is stable, 0.1-0.25 investigate, above 0.25 drift. "
        "Prints a table (or --json), writes an HTML report with a chart per feature (--html), and exits 1 "
        "when any feature drifts. Times: epoch ms or ISO-8601 (naive = UTC); an empty side means open. "
        "Reads the log under FRESHET_OFFLINE_ROOT.",
        epilog="example: freshet drift --repo examples/fraud --view card_spend_5m "
        "--reference 2026-11-01..2026-11-15 --current 2026-11-15.. --html drift.html",
    )
    add_repo_option(p)
    p.add_argument("--view", required=True, metavar="NAME", help="the view whose features to compare")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--reference", metavar="FROM..TO", help="reference period of the log (feature_ts)")
    source.add_argument("--reference-file", metavar="FILE", help="reference values: a training set (.parquet/.csv)")
    p.add_argument("--current", required=True, metavar="FROM..TO", help="current period of the log (feature_ts)")
    p.add_argument("--feature", action="append", metavar="NAME", help="only this feature (repeatable)")
    p.add_argument("--bins", type=int, default=10, help="quantile bins for numeric features (default 10)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with a chart per feature")
    p.add_argument("--json", action="store_true", help="print JSON: per feature PSI, verdict, bins and shares")
    add_connection_options(p, kafka=False, redis=False, state=False)
    p.set_defaults(handler=cmd_drift)


def parse_period(text: str, flag: str) -> tuple[int | None, int | None]:
    from freshet.features.durations import parse_event_time_ms

    start, sep, end = text.partition("..")
    if not sep:
        raise ConfigError(f"{flag} {text!r} is not FROM..TO (e.g. 2026-11-01..2026-11-15, or 2026-11-15.. for "
                          "open-ended)")
    try:
        bounds = tuple(parse_event_time_ms(part) if part.strip() else None for part in (start, end))
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    low, high = bounds
    if low is not None and high is not None and high <= low:
        raise ConfigError(f"{flag} {text!r}: TO is not after FROM")
    return low, high


def log_values(root: Any, view: Any, features: list[str], period: tuple[int | None, int | None]) -> dict[str, list[Any]]:
    import pyarrow.compute as pc

    from freshet.features.training import read_view_log

    low, high = period
    table = read_view_log(root, view, features, low, high)
    ts = pc.cast(table["feature_ts"], "int64")
    keep = None
    if low is not None:
        keep = pc.greater_equal(ts, low)
    if high is not None:
        below = pc.less(ts, high)
        keep = below if keep is None else pc.and_(keep, below)
    if keep is not None:
        table = table.filter(keep)
    return {f: table[f].to_pylist() for f in features}


def file_values(path: Path, view: Any, features: list[str]) -> dict[str, list[Any]]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not path.exists():
        raise ConfigError(f"--reference-file {path} does not exist")
    table = pacsv.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)
    out = {}
    for f in features:
        for name in (f, f"{view.name}__{f}"):
            if name in table.column_names:
                out[f] = table[name].to_pylist()
                break
        else:
            raise ConfigError(f"--reference-file {path} has no column {f!r} or {view.name + '__' + f!r}; "
                              f"columns: {', '.join(table.column_names)}")
    return out


def cmd_drift(args: argparse.Namespace) -> int:
    from freshet.features.drift import feature_drift, html_report
    from freshet.pipelines.config import settings_from_args

    registry = Registry.load(args.repo)
    view = registry.view(args.view)
    names = view.feature_names()
    features = args.feature or names
    unknown = [f for f in features if f not in names]
    if unknown:
        raise ConfigError(f"view {view.name!r} has no feature {unknown[0]!r}; features: {', '.join(names)}")
    if not 2 <= args.bins <= 100:
        raise ConfigError(f"--bins {args.bins} is out of range: allowed 2 to 100")
    root = settings_from_args(args, use_local_stack=False).log_root()
    current_period = parse_period(args.current, "--current")
    if args.reference:
        reference = log_values(root, view, features, parse_period(args.reference, "--reference"))
        described = f"reference {args.reference}"
    else:
        reference = file_values(Path(args.reference_file), view, features)
        described = f"reference {args.reference_file}"
    current = log_values(root, view, features, current_period)
    if not any(current.values()) or not any(reference.values()):
        side = "current" if not any(current.values()) else "reference"
        raise ConfigError(f"no {side} values of view {view.name!r} v{view.version} under {root} in that period: "
                          "check the period and FRESHET_OFFLINE_ROOT / --offline-root")
    drifts = [feature_drift(f, reference[f], current[f], bins=args.bins) for f in features]
    title = f"Drift of {view.name} v{view.version}"
    subtitle = f"{described} against current {args.current} (log under {root})"
    if args.html:
        Path(args.html).write_text(html_report(title, subtitle, drifts), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps({"view": view.name, "version": view.version, "reference": args.reference or
                          args.reference_file, "current": args.current,
                          "features": [d.as_dict() for d in drifts]}, indent=2))
    else:
        print(f"{title}: {subtitle}")
        rows = [["FEATURE", "KIND", "PSI", "VERDICT", "REFERENCE N", "CURRENT N"]]
        rows += [[d.feature, d.kind, f"{d.psi:.4f}", d.verdict, f"{d.reference_n:,}", f"{d.current_n:,}"]
                 for d in drifts]
        print("\n".join(format_table(rows)))
    drifted = [d.feature for d in drifts if d.verdict == "drift"]
    if drifted:
        print(f"drift (PSI > 0.25): {', '.join(drifted)}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return 0
