"""Online reads of request-time views (``as_of: request``): the as-of rule over the events Redis keeps.

A request-time view is read as of an instant ``t`` (epoch ms): the request's ``at``, else now (the
client's clock). The rule is :func:`freshet.features.as_of.read_as_of`'s: sliding, the accepted events
with time in ``[max(0, t - S), t]``; tumbling and hopping, the latest window ``[s, s + S)`` with
``s + S <= t`` over the events with ``first_start <= s``. The read fetches only that window's score
range of the entity's sorted set (:mod:`freshet.features.as_of_online_layout`) and the set's ``floor``, in the
same round trip as the other views' hashes; the events are folded here, in (time, source partition,
source offset) order, by the folds of :mod:`freshet.features.aggregations`.

- **No window** (tumbling and hopping, ``t < S``): no value: ``found`` false, the features null.
- **No events** (an entity never seen, quiet for a while, or whose keys expired): the folds of nothing:
  count and count_distinct 0, sum 0, the others null; ``found`` true.
- ``feature_ts``: the window's end (tumbling, hopping) or ``t`` (sliding); ``age_ms`` is now minus it;
  ``stale`` is always false: the answer holds as of the instant asked for (an answer for a recent ``t``
  may still change while events within the view's grace arrive).
- **Too far back**: a window starting before the entity's ``floor`` (events there were trimmed: older
  than the view's retention behind the entity's newest event, or past the cap on events kept) raises
  :class:`~freshet.features.as_of.AsOfHorizonError`, naming how far back the entity's reads reach.
- ``at`` with a last-event view (``as_of: last_event``) is refused (:class:`RequestError`): such a
  view holds only the value emitted with the entity's newest event, not the history an instant needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from freshet.features.as_of import AsOfHorizonError, window_at
from freshet.features.as_of_online_layout import MAX_ONLINE_EVENTS, retention_ms
from freshet.features.definitions import FeatureView, SlidingWindow
from freshet.features.durations import format_duration
from freshet.features.errors import RequestError
from freshet.features.window_folds import WindowFolds

MAX_AT_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: a larger `at` is a unit mistake


@dataclass(frozen=True)
class WindowRead:
    """The window one request-time view reads as of ``t``, as a score range of its sorted sets."""

    t: int
    start: int
    end: int  # sliding: included (= t); tumbling and hopping: excluded
    fixed: bool  # tumbling or hopping: only events with first_start <= start count

    @property
    def feature_ts(self) -> int:
        return self.end if self.fixed else self.t

    @property
    def score_range(self) -> tuple[str, str]:
        """``ZRANGEBYSCORE`` bounds: ``[start, t]`` (sliding) or ``[start, end)``."""
        return str(self.start), f"({self.end}" if self.fixed else str(self.end)


def window_read(view: FeatureView, t: int) -> WindowRead | None:
    """What ``view`` reads as of ``t``; None when no window has ended by then (tumbling, hopping)."""
    window = window_at(view, t)
    if window is None:
        return None
    return WindowRead(t, window[0], window[1], not isinstance(view.window, SlidingWindow))


def check_at(views: list[FeatureView], at: Any) -> int | None:
    """``at`` (epoch ms, or None for now) checked against the views read; raises :class:`RequestError`."""
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, int):
        raise RequestError(f"at {at!r} is not an instant: give UTC epoch milliseconds (an integer)")
    if not 0 <= at <= MAX_AT_MS:
        raise RequestError(f"at {at} is out of range: allowed 0 to {MAX_AT_MS} (UTC epoch milliseconds, up to "
                           "year 9999; seconds or microseconds by mistake?)")
    last_event = sorted({v.name for v in views if v.as_of != "request"})
    if last_event:
        raise RequestError(
            f"at {at}: view{'s' if len(last_event) > 1 else ''} {', '.join(map(repr, last_event))} "
            f"answer{'' if len(last_event) > 1 else 's'} with the value of the entity's newest event "
            "(as_of: last_event), not as of an instant: ask for it without `at`, or read only request-time "
            "views (as_of: request) with `at`; a training set answers last-event views at past times")
    return at


def format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EventsReply:
    """One (entity, view)'s read: the set's floor (None: no meta hash) and the window's members and
    scores (event times), as Redis returned them."""

    __slots__ = ("floor", "members", "scores")

    def __init__(self, floor: int | bytes | None, members: list[Any], scores: list[Any]) -> None:
        """``members``: encoded (bytes, from a pipeline) or decoded already (lists, from the read script)."""
        self.floor = floor
        self.members = members
        self.scores = scores

    @classmethod
    def from_script(cls, reply: list[Any]) -> EventsReply:
        """One entity of the read script's JSON: ``[floor or null, score, member, score, member, ...]``
        with the members decoded already."""
        return cls(reply[0], reply[2::2], reply[1::2])

    @classmethod
    def from_pipeline(cls, floor: bytes | None, pairs: list[tuple[bytes, float]]) -> EventsReply:
        """redis-py's ``HGET`` and ``ZRANGEBYSCORE ... WITHSCORES`` replies (``(member, score)`` pairs)."""
        return cls(floor, [m for m, _ in pairs], [s for _, s in pairs])


_CASTS: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "str": str, "bool": bool}


# (id(view), features) -> (view, folds, wanted, outputs): a reader's parts that depend on the view only
_READERS: dict[tuple[int, tuple[str, ...]], tuple[FeatureView, WindowFolds, list[Any], list[Any]]] = {}


class RequestViewReader:
    """Folds one request-time view's replies into feature values (the requested ones, typed)."""

    def __init__(self, view: FeatureView, features: tuple[str, ...], window: WindowRead) -> None:
        self.view = view
        self.window = window
        cached = _READERS.get((id(view), features))
        if cached is None or cached[0] is not view:  # built once per (view, features): reads are frequent
            folds = WindowFolds(view)
            types = view.feature_types()
            wanted = [(name, _CASTS[types[name]]) for name in features]
            # per requested feature: its fold's place, result function and cast
            outputs = [(folds.names.index(name), folds.fns[folds.names.index(name)].result, cast)
                       for name, cast in wanted]
            if len(_READERS) > 1024:
                _READERS.clear()
            cached = _READERS[(id(view), features)] = (view, folds, wanted, outputs)
        self.folds = cached[1]
        self.wanted: list[Any] = cached[2]
        self._outputs: list[Any] = cached[3]
        self._empty = self._typed(self.folds.initial())  # the folds of nothing

    def values(self, entity: Any, reply: EventsReply) -> list[Any]:
        """The requested features' values for ``entity`` (in the order asked for)."""
        window = self.window
        if reply.floor is not None and window.start < int(reply.floor):
            raise self._horizon(entity, int(reply.floor))
        members = reply.members
        if not members:
            return list(self._empty)
        folds = self.folds
        if folds.only_counts and not window.fixed:  # every event in the range counts: no need to decode
            return [len(members)] * len(self.wanted)
        # members are [partition, offset, first_start, *values]
        decoded = orjson.loads(b"[" + b",".join(members) + b"]") if isinstance(members[0], bytes) else members
        start = window.start
        rows = [(int(ts), m[0], m[1], m) for ts, m in zip(reply.scores, decoded, strict=True)
                if not window.fixed or m[2] <= start]  # a fixed window: late for it, counted only in later ones
        if folds.only_counts:
            return [len(rows)] * len(self.wanted)
        if len(rows) > 1:
            rows.sort()  # by (time, partition, offset): unique per event, so members are never compared
        states = folds.initial()
        add = folds.add_member
        for ts, _p, _o, member in rows:
            add(states, member, ts)
        return self._typed(states)

    def _typed(self, states: list[Any]) -> list[Any]:
        return [None if (value := result(states[i])) is None else cast(value) for i, result, cast in self._outputs]

    def _horizon(self, entity: Any, floor: int) -> AsOfHorizonError:
        view, window = self.view, self.window
        return AsOfHorizonError(
            f"view {view.name!r}, entity {entity!r}: cannot answer as of {window.t} ({format_ms(window.t)}): its "
            f"window starts at {window.start} ({format_ms(window.start)}), but Redis keeps this entity's events "
            f"only from {floor} ({format_ms(floor)}) on. Online reads reach back "
            f"{format_duration(retention_ms(view))} behind an entity's newest event (less for an entity past "
            f"{MAX_ONLINE_EVENTS:,} events in that span); for older instants build a training set "
            "(`freshet training-set`), which answers by the same rule from the log")
