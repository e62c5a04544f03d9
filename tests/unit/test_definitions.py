"""Definitions validate at construction and name the bad value and what is allowed."""

from __future__ import annotations

import pytest

from freshet.features import Aggregation, FeatureView, HoppingWindow, SlidingWindow, Source, TumblingWindow
from freshet.features.durations import format_duration, parse_duration_ms, parse_event_time_ms
from freshet.features.errors import DefinitionError

SCHEMA = {"card_id": "str", "amount": "float", "merchant": "str", "country": "str", "ts": "int"}


def source(**kw: object) -> Source:
    base: dict[str, object] = dict(name="transactions", topic="transactions", partitions=4, key="card_id",
                                   timestamp="ts", schema=SCHEMA)
    return Source(**{**base, **kw})


def view(**kw: object) -> FeatureView:
    base: dict[str, object] = dict(
        name="v", source=source(), window={"type": "tumbling", "size": "5m"},
        aggregations=[{"function": "count", "name": "n"}],
    )
    return FeatureView(**{**base, **kw})


@pytest.mark.parametrize(("text", "ms"), [
    ("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000),
    ("1h30m", 5_400_000), ("PT5M", 300_000), ("1.5s", 1_500), (250, 250), ("-30s", -30_000),
])
def test_durations_parse(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["5x", "", "1h5", "abc", True, [1]])
def test_bad_duration_names_value_and_forms(bad: object) -> None:
    with pytest.raises(DefinitionError) as exc:
        parse_duration_ms(bad, field="size")
    assert repr(bad) in str(exc.value)
    assert "'5m'" in str(exc.value)


def test_format_duration_round_trips() -> None:
    for ms in (1, 999, 1000, 300_000, 3_600_000, 90_000):
        assert parse_duration_ms(format_duration(ms)) == ms


def test_event_time_accepts_epoch_ms_and_iso() -> None:
    assert parse_event_time_ms(1_700_000_000_123) == 1_700_000_000_123
    assert parse_event_time_ms("1700000000123") == 1_700_000_000_123
    assert parse_event_time_ms("2023-11-14T22:13:20.123Z") == 1_700_000_000_123
    assert parse_event_time_ms("2023-11-14T23:13:20.123+01:00") == 1_700_000_000_123
    assert parse_event_time_ms("2023-11-14T22:13:20.123") == 1_700_000_000_123
    for bad in ("yesterday", True, None, float("nan"), {"a": 1}):
        with pytest.raises(ValueError):
            parse_event_time_ms(bad)


def test_valid_view_normalises_durations() -> None:
    v = view(grace="30s", ttl="1h", window={"type": "hopping", "size": "1h", "step": "5m"})
    assert isinstance(v.window, HoppingWindow)
    assert (v.window.size, v.window.step, v.grace, v.ttl) == (3_600_000, 300_000, 30_000, 3_600_000)
    assert v.state_name == "v__v1"
    assert v.entity_key == "card_id"


def test_window_objects_and_dicts_are_equivalent() -> None:
    a = view(window=TumblingWindow(size="5m"))
    b = view(window={"type": "tumbling", "size": 300_000})
    assert a == b
    assert view(window=SlidingWindow(size="10m")).window.describe() == "sliding 10m"


def test_step_larger_than_size_names_both() -> None:
    with pytest.raises(DefinitionError) as exc:
        view(window={"type": "hopping", "size": "5m", "step": "10m"})
    assert "10m" in str(exc.value) and "5m" in str(exc.value)


@pytest.mark.parametrize(("change", "expected"), [
    (dict(grace="-30s"), "grace -30000 ms is out of range"),
    (dict(grace="soon"), "'soon' is not a duration"),
    (dict(aggregations=[{"function": "count", "name": "a"}, {"function": "sum", "column": "amount", "name": "a"}]),
     "duplicate output name 'a'"),
    (dict(aggregations=[{"function": "sum", "column": "merchant", "name": "s"}]), "needs a numeric column"),
    (dict(aggregations=[{"function": "sum", "column": "nope", "name": "s"}]), "'nope'"),
    (dict(aggregations=[{"function": "median", "column": "amount", "name": "m"}]), "unknown aggregation function 'median'"),
    (dict(aggregations=[{"function": "sum", "name": "s"}]), "needs a column"),
    (dict(aggregations=[]), "at least one aggregation"),
    (dict(emit="sometimes"), "emit 'sometimes'"),
    (dict(window={"type": "session", "size": "5m"}), "window type 'session'"),
    (dict(window={"type": "tumbling", "size": "0s"}), "out of range"),
    (dict(version=0), "version 0"),
    (dict(name="bad name"), "'bad name'"),
    (dict(colour="blue"), "unknown field 'colour'"),
    (dict(aggregations=[{"function": "count", "name": "feature_ts"}]), "reserved"),
])
def test_invalid_views_name_the_bad_value(change: dict[str, object], expected: str) -> None:
    with pytest.raises(DefinitionError) as exc:
        view(**change)
    assert expected in str(exc.value)


def test_source_validation() -> None:
    with pytest.raises(DefinitionError, match="timestamp field 'when' is not in the schema"):
        source(timestamp="when")
    with pytest.raises(DefinitionError, match="'decimal'"):
        source(schema={**SCHEMA, "amount": "decimal"})
    with pytest.raises(DefinitionError, match="partitions 0 is out of range"):
        source(partitions=0)
    with pytest.raises(DefinitionError, match="it must be int"):
        source(schema={**SCHEMA, "ts": "float"})
    assert source(schema={**SCHEMA, "amount": float}).event_schema["amount"] == "float"


def test_definitions_are_frozen() -> None:
    v = view()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its ValidationError
        v.name = "other"  # type: ignore[misc]


def test_feature_types() -> None:
    v = view(aggregations=[
        Aggregation(function="count", name="n"), Aggregation(function="sum", column="amount", name="s"),
        Aggregation(function="mean", column="amount", name="m"),
        Aggregation(function="count_distinct", column="merchant", name="d"),
        Aggregation(function="last", column="country", name="c"),
    ])
    assert v.feature_types() == {"n": "int", "s": "float", "m": "float", "d": "int", "c": "str"}
