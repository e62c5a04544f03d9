"""Decode and validate raw source records against the source schema.

A record that fails (bad JSON, not an object, missing key, missing or
unparsable timestamp, wrong type) raises :class:`InvalidEvent` with a short
machine-readable reason and a human-readable detail; the topology sends it to
the dead-letter topic with its original bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orjson import loads as json_loads  # which Quix Streams ships and uses

from freshet.features.definitions import Source
from freshet.features.durations import parse_event_time_ms

EVENT_TIME_FIELD = "__event_ts"
SOURCE_PARTITION_FIELD = "__src_partition"
SOURCE_OFFSET_FIELD = "__src_offset"
MAX_ABS_EVENT_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# a larger record could not cross the re-key hop (librdkafka's default message.max.bytes is 1,000,000)
# and would stop the pipeline at the same offset on every restart; both drivers dead-letter it
MAX_EVENT_BYTES = 900_000
# an event time this far ahead of its record's Kafka timestamp is dead-lettered as `future_timestamp`:
# one such event would move its entity's watermark far ahead and every later event would be late.
# The Kafka timestamp is stored with the record, so a replay decides the same. Generous by default
# (test and backfill data is often dated ahead of the clock it is produced with); FRESHET_MAX_EVENT_AHEAD.
DEFAULT_MAX_EVENT_AHEAD_MS = 366 * 86_400_000


class InvalidEvent(Exception):
    """A record that cannot be processed: ``reason`` is one of a few fixed codes."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _check_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_float(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))


# the same checks as one expression over ``{v}`` for the accepting fast path: exact classes (what orjson
# makes), so each accepts a subset of what its check accepts (a finite float: ``v - v == 0.0``)
_FAST_CHECKS = {
    "str": "{v}.__class__ is str",
    "int": "{v}.__class__ is int",
    "float": "({v}.__class__ is float and {v} - {v} == 0.0 or {v}.__class__ is int)",
    "bool": "{v}.__class__ is bool",
}

_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": _check_int,
    "float": _check_float,
    "bool": lambda v: isinstance(v, bool),
}


class EventDecoder:
    """Turns raw bytes into a validated event dict with its event time attached."""

    def __init__(self, source: Source, max_ahead_ms: int = DEFAULT_MAX_EVENT_AHEAD_MS) -> None:
        """``max_ahead_ms``: how far an event time may be ahead of its record's Kafka timestamp (0: no bound)."""
        if max_ahead_ms < 0:
            raise ValueError(f"max_ahead_ms {max_ahead_ms} is out of range: allowed 0 (no bound) or more")
        self.max_ahead_ms = max_ahead_ms
        self.source = source
        self._fields = [(f, _CHECKS[t], t) for f, t in source.event_schema.items()]
        self._key = source.key
        self._ts = source.timestamp
        self._accept = _compile_accept(source)

    def decode(self, raw: bytes | str | None, record_ts: int | None = None) -> dict[str, Any]:
        """``record_ts``: the record's Kafka timestamp in ms (None or <= 0: not known, not checked)."""
        if raw is None:
            raise InvalidEvent("empty", "record has no value")
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEvent("too_large", f"record of {len(raw):,} bytes; at most {MAX_EVENT_BYTES:,} are processed")
        try:
            event = json_loads(raw if isinstance(raw, bytes) else raw.encode())
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise InvalidEvent("bad_json", f"not valid JSON: {exc}") from None
        if event.__class__ is dict:  # the fast path: a plain valid event, checked in one expression
            ts = self._accept(event)
            if ts is not None and (record_ts is None or record_ts <= 0 or not self.max_ahead_ms
                                   or ts - record_ts <= self.max_ahead_ms):
                event[EVENT_TIME_FIELD] = ts
                return event
        return self._validate(event, record_ts)

    def _validate(self, event: Any, record_ts: int | None) -> dict[str, Any]:
        """Every check in order: the first that fails names the reason."""
        if not isinstance(event, dict):
            raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(event).__name__}")
        key = event.get(self._key)
        if key is None or key == "":
            raise InvalidEvent("missing_key", f"key field {self._key!r} is missing or empty")
        if self._ts not in event or event[self._ts] is None:
            raise InvalidEvent("missing_timestamp", f"timestamp field {self._ts!r} is missing")
        try:
            ts = parse_event_time_ms(event[self._ts])
        except ValueError as exc:
            raise InvalidEvent("bad_timestamp", str(exc)) from None
        if not 0 <= ts <= MAX_ABS_EVENT_TIME_MS:
            raise InvalidEvent("bad_timestamp", f"timestamp {event[self._ts]!r} is outside 1970..9999")
        if record_ts is not None and record_ts > 0 and self.max_ahead_ms and ts - record_ts > self.max_ahead_ms:
            raise InvalidEvent("future_timestamp", f"event time {ts} is {ts - record_ts:,} ms ahead of the record's "
                               f"Kafka timestamp {record_ts}; at most {self.max_ahead_ms:,} ms allowed "
                               "(FRESHET_MAX_EVENT_AHEAD)")
        for field, check, type_name in self._fields:
            value = event.get(field)
            if value is None:
                if field == self._key:
                    continue
                raise InvalidEvent("missing_field", f"field {field!r} is missing or null")
            if not check(value):
                raise InvalidEvent(
                    "wrong_type", f"field {field!r} should be {type_name}, got {type(value).__name__} {value!r}"
                )
        event[EVENT_TIME_FIELD] = ts
        return event


def _compile_accept(source: Source) -> Callable[[dict[str, Any]], int | None]:
    """``accept(event)``: the event time when ``event`` passes every check of :meth:`EventDecoder.decode`
    in its plainest form (the timestamp an int of epoch ms, every field of its exact type), else None
    (then the checks run one by one and say which failed). It accepts nothing they would refuse."""
    lines = ["def accept(event):", "    get = event.get", f"    ts = get({source.timestamp!r})",
             f"    if ts.__class__ is not int or not 0 <= ts <= {MAX_ABS_EVENT_TIME_MS}:", "        return None",
             f"    key = get({source.key!r})", '    if key is None or key == "":', "        return None"]
    for i, (field, type_name) in enumerate(source.event_schema.items()):
        value = "key" if field == source.key else "ts" if field == source.timestamp else f"v{i}"
        if value == f"v{i}":
            lines.append(f"    {value} = get({field!r})")
        lines.append(f"    if not ({_FAST_CHECKS[type_name].format(v=value)}):")
        lines.append("        return None")
    lines.append("    return ts")
    env: dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", "<freshet accept>", "exec"), env)  # noqa: S102 - fixed templates, repr-quoted names
    accept: Callable[[dict[str, Any]], int | None] = env["accept"]
    return accept
