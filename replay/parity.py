"""Compare two offline logs of a view row for row (ignoring produced_at).

Rows are matched by identity: entity, window_start, window_end, source
partition and source offset. A row only in A is missing from B, only in B is
extra, and a matched row whose other values differ is a difference (floats
compared within a relative and absolute tolerance).

A request-time view also has an accepted-event log (:mod:`freshet.features.as_of_layout`):
:func:`compare_accepted` compares it the same way, rows matched by entity, event time and
source position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from freshet.features.as_of_layout import ACCEPTED_DIR, EVENT_TS
from freshet.features.errors import ConfigError
from freshet.features.log_store import LogRoot, RootLike, open_log_root
from freshet.features.offline_layout import parts_under

IGNORED = {"produced_at"}
IDENTITY = ("window_start", "window_end", "source_partition", "source_offset")
ACCEPTED_IDENTITY = (EVENT_TS, "source_partition", "source_offset")


@dataclass
class ParityReport:
    view: str
    rows_a: int = 0
    rows_b: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    different: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    duplicates_a: int = 0
    duplicates_b: int = 0

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different or self.duplicates_a or self.duplicates_b)


def log_files(root: LogRoot, view: str, version: int | None) -> list[str] | None:
    """The view's part files under ``root`` (an offline root, the view's directory, or one version's);
    None when ``root`` holds no log of the view at all."""
    names = root.children(root.base)
    base = root.join(view) if view in names else root.base
    if base != root.base:
        names = root.children(base)
    found = _version_parts(root, base, names, version)
    if found is not None:
        return found
    if any(name.startswith("date=") for name in names):
        return parts_under(root, base)
    return None


def read_rows(root: LogRoot, files: list[str]) -> tuple[list[dict[str, Any]], str]:
    if not files:
        return [], ""
    tables = [root.read_parquet(f) for f in files]
    table = pa.concat_tables(tables, promote_options="default")
    entity = table.schema.names[0]
    return table.to_pylist(), entity


def _same(a: Any, b: Any, rel: float, abs_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)
    return bool(a == b)


def compare(view: str, a: RootLike, b: RootLike, *, version: int | None = None, rel_tol: float = 1e-9,
            abs_tol: float = 1e-9) -> ParityReport:
    root_a, root_b = open_log_root(a), open_log_root(b)
    files_a, files_b = log_files(root_a, view, version), log_files(root_b, view, version)
    where = f" v{version}" if version else ""
    missing = [root.uri for root, files in ((root_a, files_a), (root_b, files_b)) if files is None]
    if missing:
        raise ConfigError(f"no log of view {view!r}{where} under {' nor '.join(missing)}: point --a/--b at an offline "
                          "root (or the view's directory) that holds it")
    return _compare_rows(view, root_a, files_a or [], root_b, files_b or [], IDENTITY, rel_tol, abs_tol)


def accepted_files(root: LogRoot, view: str, version: int | None) -> list[str] | None:
    """The part files of a view's accepted-event log under an offline root; None when it has none."""
    base = root.join(ACCEPTED_DIR, view)
    if not root.is_dir(base):
        return None
    return _version_parts(root, base, root.children(base), version) or []


def _version_parts(root: LogRoot, base: str, names: list[str], version: int | None) -> list[str] | None:
    """The part files of ``version`` (else of every ``v<N>``) among ``names``, the children of ``base``;
    None when none of them is there. Not the ``v<N>.before-reset-*`` kept by `freshet reset`."""
    versions = [f"v{version}"] if version else [n for n in names if n.startswith("v") and n[1:].isdigit()]
    found = [name for name in versions if name in names]
    return [path for name in found for path in parts_under(root, f"{base}/{name}")] if found else None


def compare_accepted(view: str, a: RootLike, b: RootLike, *, version: int | None = None, rel_tol: float = 1e-9,
                     abs_tol: float = 1e-9) -> ParityReport | None:
    """The accepted-event logs of a request-time view under two offline roots; None when neither has one."""
    root_a, root_b = open_log_root(a), open_log_root(b)
    files_a, files_b = accepted_files(root_a, view, version), accepted_files(root_b, view, version)
    if files_a is None and files_b is None:
        return None
    return _compare_rows(f"{view} (accepted events)", root_a, files_a or [], root_b, files_b or [],
                         ACCEPTED_IDENTITY, rel_tol, abs_tol)


def _compare_rows(view: str, root_a: LogRoot, files_a: list[str], root_b: LogRoot, files_b: list[str],
                  identity: tuple[str, ...], rel_tol: float, abs_tol: float) -> ParityReport:
    rows_a, entity_a = read_rows(root_a, files_a)
    rows_b, entity_b = read_rows(root_b, files_b)
    entity = entity_a or entity_b
    report = ParityReport(view, len(rows_a), len(rows_b))

    def index(rows: list[dict[str, Any]]) -> tuple[dict[tuple[Any, ...], dict[str, Any]], int]:
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        dups = 0
        for row in rows:
            key = (row[entity], *(row[c] for c in identity))
            dups += key in out
            out[key] = row
        return out, dups

    ia, report.duplicates_a = index(rows_a)
    ib, report.duplicates_b = index(rows_b)
    for key, row in ia.items():
        other = ib.get(key)
        if other is None:
            report.missing.append(row)
            continue
        columns = (set(row) | set(other)) - IGNORED
        if any(not _same(row.get(c), other.get(c), rel_tol, abs_tol) for c in columns):
            report.different.append((row, other))
    report.extra = [row for key, row in ib.items() if key not in ia]
    return report
