"""The registry: a loaded feature repository, its fingerprints and its lock file.

A view's fingerprint hashes its semantics (source fields it reads, entity key,
window, grace, emit mode, aggregations), not its prose (owner, description,
tags) nor its online TTL, which changes how values are read, not what they
are. ``freshet.lock`` records name, version and fingerprint; a view whose
fingerprint changed while its version did not is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freshet.features.definitions import Entity, FeatureView, Source
from freshet.features.errors import FingerprintError, RepositoryError
from freshet.features.repository import load_objects

LOCK_FILE = "freshet.lock"
LOCK_FORMAT = 1


def view_semantics(view: FeatureView) -> dict[str, Any]:
    """What a view computes; two views with equal semantics emit equal values."""
    schema = view.source.event_schema
    used = {view.source.timestamp, view.entity_key}
    used.update(a.column for a in view.aggregations if a.column)
    return {
        "topic": view.source.topic,
        "timestamp": view.source.timestamp,
        "entity_key": view.entity_key,
        "fields": {f: schema[f] for f in sorted(used)},
        "window": view.window.model_dump(),
        "grace": view.grace,
        "emit": view.emit,
        "aggregations": [a.model_dump() for a in view.aggregations],
        # request-time reads answer from other data (the accepted events): a switch needs a new version.
        # Absent for last_event, so the fingerprints of views from before the option stay what they were.
        **({"as_of": view.as_of} if view.as_of != "last_event" else {}),
    }


def fingerprint(view: FeatureView) -> str:
    canonical = json.dumps(view_semantics(view), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LockCheck:
    """How one view stands against the lock file."""

    view: str
    version: int
    fingerprint: str
    status: str  # "locked" | "new" | "changed"
    locked_fingerprint: str | None = None

    def message(self) -> str:
        if self.status == "changed":
            return (
                f"view {self.view!r} version {self.version} changed (fingerprint {self.fingerprint}, "
                f"locked {self.locked_fingerprint}) but its version did not: bump the version "
                f"to {self.version + 1} (a new version gets its own state and offline log), "
                "or undo the change"
            )
        if self.status == "new":
            return f"view {self.view!r} version {self.version} is not in {LOCK_FILE} yet: run `freshet lock`"
        return f"view {self.view!r} version {self.version} matches {LOCK_FILE}"


class Registry:
    """The views, sources and entities of one feature repository."""

    def __init__(self, root: Path, views: dict[str, FeatureView], sources: dict[str, Source],
                 entities: dict[str, Entity]) -> None:
        self.root = root
        self.views = dict(sorted(views.items()))
        self.sources = dict(sorted(sources.items()))
        self.entities = dict(sorted(entities.items()))

    @classmethod
    def load(cls, root: str | Path) -> Registry:
        path = Path(root)
        found = load_objects(path)
        if not found.views:
            raise RepositoryError(f"feature repository {str(path)!r} defines no views")
        topics: dict[str, Source] = {}
        for source, origin in found.sources.values():
            other = topics.get(source.topic)
            if other is not None and other.partitions != source.partitions:
                raise RepositoryError(
                    f"sources {other.name!r} and {source.name!r} ({origin}) read topic {source.topic!r} "
                    f"with different partition counts ({other.partitions} and {source.partitions})"
                )
            topics[source.topic] = source
        return cls(
            path,
            {n: v for n, (v, _) in found.views.items()},
            {n: s for n, (s, _) in found.sources.items()},
            {n: e for n, (e, _) in found.entities.items()},
        )

    def view(self, name: str) -> FeatureView:
        if name not in self.views:
            raise RepositoryError(f"unknown view {name!r}; views: {', '.join(self.views)}")
        return self.views[name]

    def select(self, names: list[str] | None) -> list[FeatureView]:
        """The named views (all when none are named), in a stable order."""
        if not names:
            return list(self.views.values())
        return [self.view(n) for n in dict.fromkeys(names)]

    def views_by_topic(self, names: list[str] | None = None) -> dict[str, list[FeatureView]]:
        grouped: dict[str, list[FeatureView]] = {}
        for view in self.select(names):
            grouped.setdefault(view.source.topic, []).append(view)
        return grouped

    def topics(self) -> dict[str, int]:
        """Source topic -> partition count, for every source used or defined."""
        return {s.topic: s.partitions for s in self.sources.values()}

    # --- the lock file ---------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    def read_lock(self) -> dict[str, dict[str, str]]:
        if not self.lock_path.exists():
            return {}
        try:
            doc = json.loads(self.lock_path.read_text(encoding="utf-8"))
            views = doc["views"]
            if not isinstance(views, dict):
                raise TypeError("views is not a mapping")
            return {str(k): {str(ver): str(fp) for ver, fp in v.items()} for k, v in views.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RepositoryError(f"{self.lock_path}: not a valid lock file ({exc}); fix or delete it") from None

    def check_lock(self) -> list[LockCheck]:
        locked = self.read_lock()
        checks = []
        for view in self.views.values():
            fp = fingerprint(view)
            prior = locked.get(view.name, {}).get(str(view.version))
            status = "new" if prior is None else ("locked" if prior == fp else "changed")
            checks.append(LockCheck(view.name, view.version, fp, status, prior))
        return checks

    def require_lock_consistent(self) -> list[LockCheck]:
        checks = self.check_lock()
        changed = [c for c in checks if c.status == "changed"]
        if changed:
            raise FingerprintError("\n".join(c.message() for c in changed))
        return checks

    def write_lock(self) -> list[LockCheck]:
        """Record every view's current fingerprint; refuse a changed one."""
        checks = self.require_lock_consistent()
        locked = self.read_lock()
        for check in checks:
            locked.setdefault(check.view, {})[str(check.version)] = check.fingerprint
        doc = {
            "format": LOCK_FORMAT,
            "note": "written by `freshet lock`: view -> version -> fingerprint; bump a view's version when its semantics change",
            "views": {name: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for name, v in sorted(locked.items())},
        }
        tmp = self.lock_path.with_suffix(".lock.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.lock_path)
        return checks
