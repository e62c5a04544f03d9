"""Point-in-time joins against a brute-force reference written here, over random logs and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.features.errors import DefinitionError
from freshet.features.offline_layout import date_of, part_path, view_schema
from freshet.features.training import get_historical_features, output_names, resolve_features

SOURCE = Source(name="tx", topic="tx", key="card_id", timestamp="ts",
                schema={"card_id": "str", "amount": "float", "ts": "int"})
BASE = 1_700_000_000_000
TTL = 50_000


def make_view(name: str, ttl: int = TTL) -> FeatureView:
    return FeatureView(name=name, source=SOURCE, window=TumblingWindow(size="10s"), ttl=ttl,
                       aggregations=[Aggregation(function="count", name="n"),
                                     Aggregation(function="sum", column="amount", name="total")])


VIEW = make_view("spend")

log_rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 120), st.integers(0, 1),
                              st.integers(0, 50)), max_size=40)
label_rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "zz"]), st.integers(0, 130)), min_size=1, max_size=30)


def write_log(root: Path, view: FeatureView, rows: list[tuple[str, int, int, int]]) -> list[dict[str, Any]]:
    """rows: (entity, feature_ts seconds, partition, offset); values identify the row."""
    records = []
    seen: set[tuple[str, int, int]] = set()
    for i, (entity, t, partition, offset) in enumerate(rows):
        if (entity, partition, offset) in seen:
            continue  # a source offset emits one row per entity and window here
        seen.add((entity, partition, offset))
        ts = BASE + t * 1000
        records.append({"card_id": entity, "feature_ts": ts, "window_start": ts - 10_000, "window_end": ts,
                        "n": i, "total": float(i), "source_partition": partition, "source_offset": offset,
                        "produced_at": BASE})
    schema = view_schema(view)
    by_file: dict[Path, list[dict[str, Any]]] = {}
    for r in records:  # deliberately unsorted files: the join must sort
        path = Path(part_path(root, view, date_of(r["feature_ts"]), r["source_partition"], len(by_file) % 3))
        by_file.setdefault(path, []).append(r)
    for path, rs in by_file.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rs[::-1], schema=schema), path)
    return records


def reference(records: list[dict[str, Any]], entity: str, t: int, exclusive: bool, ttl: int) -> dict[str, Any] | None:
    best = None
    for r in records:
        if r["card_id"] != entity:
            continue
        if r["feature_ts"] > t or (exclusive and r["feature_ts"] == t):
            continue
        key = (r["feature_ts"], r["source_offset"], r["source_partition"])
        if best is None or key > (best["feature_ts"], best["source_offset"], best["source_partition"]):
            best = r
    if best is None or t - best["feature_ts"] > ttl:
        return None
    return best


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=log_rows, labels=label_rows, exclusive=st.booleans(), on_ts=st.booleans(),
       engine=st.sampled_from(["duckdb", "pyarrow"]))
def test_matches_brute_force(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, int, int, int]],
                             labels: list[tuple[str, int]], exclusive: bool, on_ts: bool, engine: str) -> None:
    root = tmp_path_factory.mktemp("log")
    records = write_log(root, VIEW, rows)
    if on_ts and records:  # labels exactly on a feature_ts
        labels = labels + [(r["card_id"], (r["feature_ts"] - BASE) // 1000) for r in records[:5]]
    table = pa.table({"card_id": [e for e, _ in labels],
                      "ts": pa.array([BASE + t * 1000 for _, t in labels], pa.timestamp("ms", tz="UTC")),
                      "label": list(range(len(labels)))})
    out = get_historical_features(table, ["spend"], {"spend": VIEW}, root, exclusive=exclusive,
                                  engine=engine).to_pylist()
    assert [r["label"] for r in out] == list(range(len(labels)))  # label order and rows kept
    for row, (entity, t) in zip(out, labels, strict=True):
        ts = BASE + t * 1000
        expected = reference(records, entity, ts, exclusive, TTL)
        if expected is None:
            assert row["n"] is None and row["total"] is None and row["spend__feature_ts"] is None
        else:
            assert row["n"] == expected["n"]
            assert row["total"] == expected["total"]
            got_ts = int(row["spend__feature_ts"].timestamp() * 1000)
            assert got_ts == expected["feature_ts"]
            assert got_ts < ts if exclusive else got_ts <= ts  # never from the future


def test_names_and_errors() -> None:
    views = {"spend": VIEW, "other": make_view("other")}
    refs = resolve_features(views, ["spend:n", "other:n", "spend:total"])
    names = output_names(refs, full_feature_names=False)
    assert sorted(names.values()) == ["other__n", "spend__n", "total"]  # shared name -> full names
    assert sorted(output_names(resolve_features(views, ["spend"]), True).values()) == ["spend__n", "spend__total"]
    with pytest.raises(DefinitionError, match="unknown view 'nope'"):
        resolve_features(views, ["nope:n"])
    with pytest.raises(DefinitionError, match="no feature 'zzz'"):
        resolve_features(views, ["spend:zzz"])


def test_reads_only_needed_dates(tmp_path: Path) -> None:
    day = 86_400_000
    records = [("a", 0, 0, 1), ("a", 10 * 86_400, 0, 2)]  # two dates, 10 days apart
    write_log(tmp_path, VIEW, records)
    old = next(tmp_path.glob("spend/v1/date=*/part-*.parquet"))
    dates = sorted(p.parent.name for p in tmp_path.glob("spend/v1/date=*/part-*.parquet"))
    assert len(dates) == 2
    # break the older file: a join that only needs the newer date must not open it
    older = tmp_path / "spend" / "v1" / dates[0]
    for f in older.glob("*.parquet"):
        f.write_bytes(b"not parquet")
    labels = pa.table({"card_id": ["a"], "ts": [BASE + 10 * day + 1000]})
    out = get_historical_features(labels, ["spend:n"], {"spend": VIEW}, tmp_path).to_pylist()
    assert out[0]["n"] == 1
    assert old.exists()
