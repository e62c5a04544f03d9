"""Record validation: each failure has a fixed reason; valid events get their event time."""

from __future__ import annotations

import json

import pytest

from freshet.features import Source
from freshet.pipelines.decode import EVENT_TIME_FIELD, EventDecoder, InvalidEvent

SOURCE = Source(name="tx", topic="tx", key="card_id", timestamp="ts",
                schema={"card_id": "str", "amount": "float", "n": "int", "ok": "bool", "ts": "int"})
GOOD = {"card_id": "c1", "amount": 12.5, "n": 3, "ok": True, "ts": 1_700_000_000_000}


def decode(value: object) -> dict[str, object]:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return EventDecoder(SOURCE).decode(raw)


def test_valid_event_gets_event_time() -> None:
    event = decode(GOOD)
    assert event[EVENT_TIME_FIELD] == 1_700_000_000_000
    assert decode({**GOOD, "amount": 12})["amount"] == 12  # an int is a valid float


def test_iso_timestamps_are_accepted_for_int_or_str_fields() -> None:
    source = Source(name="tx", topic="tx", key="k", timestamp="ts", schema={"k": "str", "ts": "str"})
    event = EventDecoder(source).decode(b'{"k": "a", "ts": "2023-11-14T22:13:20Z"}')
    assert event[EVENT_TIME_FIELD] == 1_700_000_000_000


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (b"[1, 2]", "not_an_object"),
    ({**GOOD, "card_id": None}, "missing_key"),
    ({k: v for k, v in GOOD.items() if k != "card_id"}, "missing_key"),
    ({k: v for k, v in GOOD.items() if k != "ts"}, "missing_timestamp"),
    ({**GOOD, "ts": "last tuesday"}, "bad_timestamp"),
    ({**GOOD, "ts": -5}, "bad_timestamp"),
    ({**GOOD, "amount": "ten"}, "wrong_type"),
    ({**GOOD, "n": 1.5}, "wrong_type"),
    ({**GOOD, "n": True}, "wrong_type"),
    ({**GOOD, "ok": "yes"}, "wrong_type"),
    ({**GOOD, "amount": None}, "missing_field"),
])
def test_invalid_records_have_a_reason(value: object, reason: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        decode(value)
    assert exc.value.reason == reason
    assert exc.value.detail


def test_empty_value() -> None:
    with pytest.raises(InvalidEvent, match="empty"):
        EventDecoder(SOURCE).decode(None)


def test_a_record_over_the_size_limit_is_too_large() -> None:
    from freshet.pipelines.decode import MAX_EVENT_BYTES, EventDecoder, InvalidEvent

    source = Source(name="s", topic="t", partitions=1, key="k", timestamp="ts",
                    schema={"k": "str", "note": "str", "ts": "int"})
    raw = json.dumps({"k": "a", "note": "x" * MAX_EVENT_BYTES, "ts": 1}).encode()
    try:
        EventDecoder(source).decode(raw)
    except InvalidEvent as exc:
        assert exc.reason == "too_large" and f"{len(raw):,}" in exc.detail
    else:
        raise AssertionError("a record over the limit was accepted")


def test_event_time_far_ahead_of_the_kafka_timestamp_is_dead_lettered() -> None:
    decoder = EventDecoder(SOURCE, max_ahead_ms=3_600_000)
    record_ts = GOOD["ts"]
    assert decoder.decode(json.dumps({**GOOD, "ts": record_ts + 3_600_000}).encode(), record_ts)
    with pytest.raises(InvalidEvent) as caught:
        decoder.decode(json.dumps({**GOOD, "ts": record_ts + 3_600_001}).encode(), record_ts)
    assert caught.value.reason == "future_timestamp"
    assert "3,600,001 ms ahead" in caught.value.detail and "3,600,000 ms allowed" in caught.value.detail
    # no Kafka timestamp (or none known), or no bound: not checked
    far = json.dumps({**GOOD, "ts": 253_402_300_799_999}).encode()
    assert decoder.decode(far, None) and decoder.decode(far, -1)
    assert EventDecoder(SOURCE, max_ahead_ms=0).decode(far, record_ts)
    # the default bound: a year-9999 event is refused, one dated weeks ahead is not
    with pytest.raises(InvalidEvent, match="future_timestamp"):
        EventDecoder(SOURCE).decode(far, record_ts)
    assert EventDecoder(SOURCE).decode(json.dumps({**GOOD, "ts": record_ts + 60 * 86_400_000}).encode(), record_ts)
    with pytest.raises(ValueError, match="max_ahead_ms -1 is out of range"):
        EventDecoder(SOURCE, max_ahead_ms=-1)


@pytest.mark.parametrize("changes", [
    {}, {"amount": 12}, {"amount": -0.0}, {"amount": 1e308}, {"n": 0}, {"ok": False}, {"ts": 0},
    {"ts": 253_402_300_799_999}, {"ts": 253_402_300_800_000}, {"ts": "1700000000000"}, {"ts": 1.7e12},
    {"ts": True}, {"ts": "2023-11-14T22:13:20Z"}, {"card_id": ""}, {"card_id": 7}, {"card_id": None},
    {"amount": True}, {"amount": "1"}, {"n": 2.0}, {"n": None}, {"ok": 1}, {"extra": [1, 2]},
])
def test_the_fast_path_decides_as_the_checks_do(changes: dict[str, object]) -> None:
    """The one-expression fast path accepts only what the checks accept, with the same event time."""
    decoder = EventDecoder(SOURCE)
    raw = json.dumps({**GOOD, **changes}).encode()
    try:
        expected: object = decoder._validate(json.loads(raw), None)
    except InvalidEvent as exc:
        expected = (exc.reason, exc.detail)
    try:
        got: object = decoder.decode(raw)
    except InvalidEvent as exc:
        got = (exc.reason, exc.detail)
    assert got == expected
