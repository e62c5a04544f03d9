"""Durations and event times: the two kinds of time a definition names.

Durations are written as ``500ms``, ``30s``, ``5m``, ``1h``, ``1d``, ``1w`` or
compounds such as ``1h30m``; ISO-8601 durations (``PT5M``) and a bare integer
(milliseconds) are accepted too. Everything is normalised to integer
milliseconds, the unit of event time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from freshet.features.errors import DefinitionError

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_COMPOUND = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
DURATION_FORMS = "a number of milliseconds, '500ms', '30s', '5m', '1h', '1d', '1w', '1h30m' or ISO-8601 'PT5M'"


def parse_duration_ms(value: object, *, field: str = "duration") -> int:
    """Return ``value`` as whole milliseconds, or raise naming the bad value."""
    if isinstance(value, bool):
        raise DefinitionError(f"{field}: {value!r} is not a duration; use {DURATION_FORMS}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.startswith("-") and len(text) > 1:
            return -parse_duration_ms(text[1:], field=field)
        if text.isdigit():
            return int(text)
        ms = _parse_text(text)
        if ms is not None:
            return ms
    raise DefinitionError(f"{field}: {value!r} is not a duration; use {DURATION_FORMS}")


def _parse_text(text: str) -> int | None:
    lowered = text.lower()
    pieces = _COMPOUND.findall(lowered)
    if pieces and "".join(n + u for n, u in pieces) == lowered:
        return round(sum(float(n) * _UNIT_MS[u] for n, u in pieces))
    iso = _ISO.match(text.upper())
    if iso and any(iso.groupdict().values()):
        return round(sum(float(v) * _UNIT_MS[k] for k, v in iso.groupdict().items() if v))
    return None


def format_duration(ms: int) -> str:
    """The shortest exact text form of ``ms`` (``300000`` -> ``5m``)."""
    if ms == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def parse_event_time_ms(value: object) -> int:
    """Event time as UTC epoch milliseconds.

    Accepts an integer (epoch milliseconds), a string of digits, or an ISO-8601
    string (``2026-11-22T12:00:00Z``; a naive time is taken as UTC). Raises
    ``ValueError`` naming the value otherwise.
    """
    if isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is a boolean, not epoch milliseconds or ISO-8601")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"timestamp {value!r} is not a finite number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"timestamp {value!r} is neither epoch milliseconds nor ISO-8601"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    raise ValueError(f"timestamp {value!r} has type {type(value).__name__}; expected int ms or ISO-8601 text")
