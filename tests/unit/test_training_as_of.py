"""Training sets of request-time views (features/training_as_of.py) against the as-of rule itself.

Hypothesis writes random accepted-events logs (several entities and source partitions, several part
files per partition and two dates, times out of order and tied, null values, long silences, hopping
events counted only from a later window) for every window kind and all nine functions, and asks
``get_historical_features`` for labels on window edges, between events, after silences and before the
first window. Every value must equal ``features.as_of.read_as_of`` over the same events (floats within
1e-9), with the output types of the view. Both sliding plans run, and both ways of reading the log
(DuckDB's Parquet reader, and the pyarrow dataset used for object storage).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshet.features import (
    Aggregation,
    FeatureView,
    HoppingWindow,
    SlidingWindow,
    Source,
    TumblingWindow,
    training_as_of,
)
from freshet.features.as_of import AcceptedEvent, read_as_of
from freshet.features.as_of_layout import accepted_dir, accepted_schema, read_columns
from freshet.features.errors import OfflineStoreError
from freshet.features.log_store import LogRoot
from freshet.features.offline_layout import ARROW_TYPES, date_of, part_path, view_schema
from freshet.features.training import get_historical_features
from tests.operator_harness import same_value
from tests.unit.test_operator_rules import AGGS, SOURCE

DAY = 86_400_000
# the operator tests' source and nine functions, with a bool column and the functions over other types
SOURCE_B = Source(name=SOURCE.name, topic=SOURCE.topic, partitions=3, key="k", timestamp="ts",
                  schema={**SOURCE.event_schema, "f": "bool"})
EXTRA = [Aggregation(function=f, column=c, name=n) for f, c, n in [
    ("count", "x", "nx"), ("count_distinct", "x", "dx"), ("last", "x", "lx"), ("last", "f", "lf"),
    ("count_distinct", "f", "df"), ("min", "q", "lq"), ("max", "x", "hx"), ("mean", "q", "mq"),
    ("last", "q", "lastq"), ("count_distinct", "q", "dq")]]
WINDOWS = {"tum": TumblingWindow(size=10), "hop": HoppingWindow(size=20, step=5),
           "hop3": HoppingWindow(size=9, step=6), "sli": SlidingWindow(size=10)}
VIEWS = {w: FeatureView(name=w, source=SOURCE_B, window=window, aggregations=[*AGGS, *EXTRA], ttl="1s",
                        as_of="request") for w, window in WINDOWS.items()}

# (entity, time, x, q, m, f, source partition, which of the windows holding the time counts it first);
# time -1: the previous event's time (ties, across partitions too); times just before and after midnight
times = st.integers(0, 40) | st.integers(150, 190) | st.integers(DAY - 12, DAY + 12) | st.just(-1)
floats = st.none() | st.sampled_from([0.0, -0.0, 1.5]) | st.floats(-100, 100, allow_nan=False)
event = st.tuples(st.integers(0, 2), times, floats, st.none() | st.integers(-5, 5),
                  st.none() | st.sampled_from("abc"), st.none() | st.booleans(), st.integers(0, 2),
                  st.integers(0, 3))
Drawn = tuple[int, int, float | None, int | None, str | None, bool | None, int, int]


def first_start(view: FeatureView, ts: int, pick: int) -> int:
    """For fixed windows, one of the windows holding ``ts`` (the earliest one, or a later one: the event
    was late for the earlier ones); for sliding views the event's time."""
    if isinstance(view.window, SlidingWindow):
        return ts
    size, step = view.window.size, view.window.step
    starts = [s for s in range(ts - ts % step, ts - size, -step) if s >= 0][::-1]
    return starts[0] if pick < 2 else starts[pick % len(starts)]


def write_accepted(root: Path, view: FeatureView, drawn: list[Drawn], files_per_partition: int) -> dict[str, list[AcceptedEvent]]:
    """The accepted log of ``view`` (rows in drawn order, so out of time order; offsets in drawn order
    per partition), and per entity its events in arrival order (source partition, offset)."""
    next_offset: dict[int, int] = defaultdict(int)
    rows: list[dict[str, Any]] = []
    ts = 0
    for entity, drawn_ts, x, q, m, f, partition, pick in drawn:
        ts = ts if drawn_ts < 0 else drawn_ts
        offset = next_offset[partition] = next_offset[partition] + 1
        rows.append({"k": f"k{entity}", "event_ts": ts, "first_window_start": first_start(view, ts, pick),
                     "x": x, "q": q, "m": m, "f": f, "source_partition": partition, "source_offset": offset,
                     "produced_at": 0})
    schema = accepted_schema(view)
    by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:  # part files of each partition: rows in turn, named by their first offset
        chunk = (r["source_offset"] - 1) % files_per_partition
        name = f"date={date_of(r['event_ts'])}/part-{r['source_partition']}-{chunk + 1}.parquet"
        by_file[f"{accepted_dir(root, view)}/{name}"].append({c: r[c] for c in schema.names})
    for path, file_rows in by_file.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(file_rows, schema=schema), path)
    columns = read_columns(view)
    per_entity: dict[str, list[AcceptedEvent]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["source_partition"], r["source_offset"])):
        per_entity[r["k"]].append(AcceptedEvent(r["event_ts"], {c: r[c] for c in columns}, r["first_window_start"]))
    return per_entity


def instants(times: list[int], extra: list[int]) -> list[int]:
    """On and next to every window edge near the events, on and next to the events and a window after
    them, after the silences, before the first window, and far later."""
    near: set[int] = {0, 1, 5, 6, 8, 9, 10, 11, 19, 20, 21, 10**10}
    for ts in times:
        for view in VIEWS.values():
            size = view.window.size
            step = size if isinstance(view.window, SlidingWindow) else view.window.step
            for k in range(-2, 3):
                s = ts - ts % step + k * step
                near |= {e + d for e in (s, s + size) for d in (-1, 0, 1)}
        near |= {ts + d for d in (-1, 0, 1, 10, 11, 25)}
    return sorted(t for t in near | set(extra) if t >= 0)


def as_local(root: Path, via_dataset: bool) -> LogRoot | Path:
    """The root, or the same directory read as object storage is (a pyarrow dataset copied into DuckDB)."""
    return LogRoot(pafs.LocalFileSystem(), root.as_posix(), "s3") if via_dataset else root


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(event, min_size=1, max_size=30), extra=st.lists(st.integers(0, 300), max_size=5),
       exclusive=st.booleans(), plan=st.sampled_from(["join", "window"]), via_dataset=st.booleans(),
       files_per_partition=st.integers(1, 3), second_day_only=st.booleans())
def test_training_set_equals_the_as_of_rule(tmp_path_factory: pytest.TempPathFactory, drawn: list[Drawn],
                                           extra: list[int], exclusive: bool, plan: str, via_dataset: bool,
                                           files_per_partition: int, second_day_only: bool) -> None:
    """``second_day_only``: labels from midnight on, so the first date's file is read only for the
    windows reaching back before midnight."""
    root = tmp_path_factory.mktemp("log")
    accepted = {name: write_accepted(root, view, drawn, files_per_partition) for name, view in VIEWS.items()}
    ts_list = instants([e.ts for events in accepted["sli"].values() for e in events], extra)
    if second_day_only:
        ts_list = [t for t in ts_list if t >= DAY] or [DAY]
    entities = ["k0", "k1", "k2", "nobody"]
    labels = pa.table({"k": [e for e in entities for _t in ts_list],
                       "ts": pa.array([t for _e in entities for t in ts_list], pa.int64()),
                       "label": list(range(len(entities) * len(ts_list)))})
    threshold = float("inf") if plan == "join" else -1.0
    with mock.patch.object(training_as_of, "JOIN_PAIRS_PER_ROW", threshold):
        out = get_historical_features(labels, list(VIEWS), VIEWS, as_local(root, via_dataset),
                                      exclusive=exclusive, full_feature_names=True)
    assert out.column("label").to_pylist() == labels.column("label").to_pylist()
    check(out, accepted, exclusive)


def check(out: pa.Table, accepted: dict[str, dict[str, list[AcceptedEvent]]], exclusive: bool) -> None:
    """Every view's features and feature_ts in ``out`` are read_as_of over the same events."""
    rows = out.to_pylist()
    for name, view in VIEWS.items():
        for feature, kind in view.feature_types().items():
            assert out.schema.field(f"{name}__{feature}").type == ARROW_TYPES[kind], (name, feature)
        checked = 0
        for row in rows:
            t = row["ts"] - 1 if exclusive else row["ts"]
            expected = None if t < 0 else read_as_of(view, accepted[name].get(row["k"], []), t)
            got_ts = row[f"{name}__feature_ts"]
            if expected is None:
                assert got_ts is None and all(row[f"{name}__{f}"] is None for f in view.feature_names()), (name, t)
                continue
            assert got_ts is not None and int(got_ts.timestamp() * 1000) == expected.feature_ts, (name, t)
            for feature, value in expected.values.items():
                assert same_value(value, row[f"{name}__{feature}"]), (name, row["k"], t, feature, value,
                                                                      row[f"{name}__{feature}"])
            checked += 1
        assert checked > 0  # every view answered some labels with a value


def test_windows_reaching_back_over_midnight_read_the_previous_date(tmp_path: Path) -> None:
    """Labels only after midnight: the previous date's part files are read for the windows reaching back."""
    drawn = [(0, DAY - d, float(d), d, "abc"[d % 3], d % 2 == 0, d % 2, 0) for d in range(1, 25)]
    accepted = {name: write_accepted(tmp_path, view, drawn, 2) for name, view in VIEWS.items()}
    labels = pa.table({"k": ["k0"] * 12, "ts": pa.array([DAY + d for d in range(12)], pa.int64())})
    for exclusive in (False, True):
        check(get_historical_features(labels, list(VIEWS), VIEWS, tmp_path, exclusive=exclusive,
                                      full_feature_names=True), accepted, exclusive)


def test_a_missing_accepted_log_names_the_view_and_what_to_run(tmp_path: Path) -> None:
    view = VIEWS["sli"]
    labels = pa.table({"k": ["k0"], "ts": pa.array([1_000], pa.int64())})
    with pytest.raises(OfflineStoreError, match=r"view 'sli' v1 reads as of the request time .* no accepted-events "
                                                r"log at .*_accepted/sli/v1: run or replay the pipeline with this view"):
        get_historical_features(labels, ["sli"], {"sli": view}, tmp_path)


def test_an_accepted_log_without_events_near_the_labels_reads_empty_windows(tmp_path: Path) -> None:
    """Only dates near the labels are read; a window without events is an answer (0), not null; a
    last_event view in the same call still reads its values log, with its TTL."""
    sliding = VIEWS["sli"]
    write_accepted(tmp_path, sliding, [(0, 5, 1.0, 1, "a", True, 0, 0)], 1)  # one event on 1970-01-01
    spend = FeatureView(name="spend", source=SOURCE_B, window=TumblingWindow(size=10), ttl="1s",
                        aggregations=[Aggregation(function="count", name="n")])
    log_row = {"k": "k0", "feature_ts": 30 * DAY, "window_start": 30 * DAY - 10, "window_end": 30 * DAY, "n": 7,
               "source_partition": 0, "source_offset": 1, "produced_at": 0}
    path = Path(part_path(tmp_path, spend, date_of(30 * DAY), 0, 1))
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([log_row], schema=view_schema(spend)), path)
    views = {"sli": sliding, "spend": spend}
    features = ["sli:n", "sli:lm", "sli:sx", "spend:n"]
    later = pa.table({"k": ["k0", "k0"], "ts": pa.array([30 * DAY + 500, 30 * DAY + 5_000], pa.int64())})
    out = get_historical_features(later, features, views, tmp_path, full_feature_names=True).to_pylist()
    assert [(r["sli__n"], r["sli__lm"], r["sli__sx"]) for r in out] == [(0, None, 0.0), (0, None, 0.0)]
    assert [r["spend__n"] for r in out] == [7, None]  # TTL 1 s
    got = [int(r["sli__feature_ts"].timestamp() * 1000) for r in out]
    assert got == [30 * DAY + 500, 30 * DAY + 5_000]  # a request-time value holds at the label time: no TTL
    early = pa.table({"k": ["k0"], "ts": pa.array([5], pa.int64())})
    out = get_historical_features(early, features, views, tmp_path, full_feature_names=True).to_pylist()
    assert [(r["sli__n"], r["sli__lm"], r["sli__sx"], r["spend__n"]) for r in out] == [(1, "a", 1.0, None)]


def test_null_entities_and_exclusive_at_zero_read_nothing(tmp_path: Path) -> None:
    view = VIEWS["sli"]
    write_accepted(tmp_path, view, [(0, 0, 1.0, 1, "a", True, 0, 0)], 1)
    labels = pa.table({"k": ["k0", None, "k0"], "ts": pa.array([0, 3, 3], pa.int64())})
    out = get_historical_features(labels, ["sli:n"], {"sli": view}, tmp_path, exclusive=True).to_pylist()
    assert [(r["n"], r["sli__feature_ts"] is None) for r in out] == [(None, True), (None, True), (1, False)]
