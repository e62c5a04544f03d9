"""Online/offline consistency: does Redis hold, per entity, what the log says it should at this instant?

The offline side is the point-in-time rule at "now" (the log row with the largest feature_ts,
ties to the larger source offset: what a training set joins and what ``freshet materialize``
writes). Per sampled entity the verdict is one of:

- ``match``: same feature_ts and the same values (floats within a relative 1e-9);
- ``mismatch``: the online value is older than the log's, or the same feature_ts with other values;
- ``pending``: the online value is newer than the log's (the log is made durable at checkpoints, so a
  running pipeline's Redis can lead it by a checkpoint interval): not counted against consistency;
- ``missing_online``: the log has a value whose TTL has not run out, Redis has none;
- ``missing_offline``: Redis has a value the log has no row for;
- ``expired``: neither side should serve it (the log's value is past its TTL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

VERDICTS = ("match", "mismatch", "pending", "missing_online", "missing_offline", "expired")


@dataclass
class EntityCheck:
    entity: str
    verdict: str
    online_ts: int | None = None
    offline_ts: int | None = None
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)  # feature, online, offline

    def as_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "verdict": self.verdict, "online_feature_ts": self.online_ts,
                "offline_feature_ts": self.offline_ts,
                "differences": [{"feature": f, "online": a, "offline": b} for f, a, b in self.differences]}


@dataclass
class ConsistencyReport:
    view: str
    version: int
    checks: list[EntityCheck]

    def count(self, verdict: str) -> int:
        return sum(1 for c in self.checks if c.verdict == verdict)

    @property
    def compared(self) -> int:
        """Entities where both sides should agree (match, mismatch, missing on one side)."""
        return sum(1 for c in self.checks if c.verdict not in ("pending", "expired"))

    @property
    def inconsistent(self) -> list[EntityCheck]:
        return [c for c in self.checks if c.verdict in ("mismatch", "missing_online", "missing_offline")]

    @property
    def mismatch_rate(self) -> float:
        return len(self.inconsistent) / self.compared if self.compared else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"view": self.view, "version": self.version, "sampled": len(self.checks),
                "compared": self.compared, "mismatch_rate": round(self.mismatch_rate, 6),
                **{v: self.count(v) for v in VERDICTS},
                "inconsistent": [c.as_dict() for c in self.inconsistent]}


def same_value(a: Any, b: Any, rel: float = 1e-9) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        if math.isnan(float(a)) and math.isnan(float(b)):
            return True
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=rel)
    return bool(a == b)


def check_entity(entity: str, features: list[str], online: dict[str, Any] | None, offline: dict[str, Any] | None,
                 *, now_ms: int, ttl_ms: int) -> EntityCheck:
    """``online``: the hash's decoded fields (``feature_ts`` plus the features), None when Redis has none;
    ``offline``: the log's latest row (``feature_ts``, ``produced_at`` and the features), None when none."""
    if online is None:
        off = None if offline is None else offline["feature_ts"]
        if offline is None or offline["produced_at"] + ttl_ms <= now_ms:
            return EntityCheck(entity, "expired", None, off)
        return EntityCheck(entity, "missing_online", None, off)
    on_ts: int = online["feature_ts"]
    if offline is None:
        return EntityCheck(entity, "missing_offline", on_ts, None)
    off_ts: int = offline["feature_ts"]
    if on_ts > off_ts:
        return EntityCheck(entity, "pending", on_ts, off_ts)
    if on_ts < off_ts:
        return EntityCheck(entity, "mismatch", on_ts, off_ts, [("feature_ts", on_ts, off_ts)])
    differences = [(f, online.get(f), offline.get(f)) for f in features
                   if not same_value(online.get(f), offline.get(f))]
    return EntityCheck(entity, "mismatch" if differences else "match", on_ts, off_ts, differences)
