"""The verdicts of one entity's online/offline comparison."""

from __future__ import annotations

from freshet.features.consistency import ConsistencyReport, check_entity

F = ["n", "total"]
NOW = 10_000_000


def row(ts: int, n: int = 1, total: float = 2.5, produced: int = NOW - 1000) -> dict[str, object]:
    return {"feature_ts": ts, "produced_at": produced, "n": n, "total": total}


def verdict(online: dict[str, object] | None, offline: dict[str, object] | None, ttl: int = 60_000) -> str:
    return check_entity("e", F, online, offline, now_ms=NOW, ttl_ms=ttl).verdict


def test_verdicts() -> None:
    assert verdict(row(5), row(5)) == "match"
    assert verdict(row(5, total=2.5 * (1 + 1e-12)), row(5)) == "match"  # float noise
    assert verdict(row(5, n=2), row(5)) == "mismatch"
    assert verdict(row(4), row(5)) == "mismatch"  # online older than the log
    assert verdict(row(6), row(5)) == "pending"  # the log has not caught up
    assert verdict(None, row(5)) == "missing_online"
    assert verdict(None, row(5, produced=NOW - 120_000)) == "expired"  # past the ttl: gone is right
    assert verdict(row(5), None) == "missing_offline"
    assert verdict(None, None) == "expired"


def test_report_counts_and_rate() -> None:
    checks = [check_entity(str(i), F, row(5), row(5), now_ms=NOW, ttl_ms=60_000) for i in range(3)]
    checks.append(check_entity("x", F, row(5, n=9), row(5), now_ms=NOW, ttl_ms=60_000))
    checks.append(check_entity("p", F, row(7), row(5), now_ms=NOW, ttl_ms=60_000))
    report = ConsistencyReport("v", 1, checks)
    assert report.compared == 4 and report.mismatch_rate == 0.25
    out = report.as_dict()
    assert out["match"] == 3 and out["pending"] == 1 and out["inconsistent"][0]["differences"] == [
        {"feature": "n", "online": 9, "offline": 1}]
