"""Request-time views' accepted events on their way to Redis: the online writer's pending batch of them.

:class:`~freshet.pipelines.online_sink.RedisOnlineWriter` queues each accepted event
(:meth:`~freshet.pipelines.online_sink.RedisOnlineWriter.add_accepted`) here, beside its pending
values, and sends both in the same batches: the batch's event sets in a few calls of
:data:`~freshet.features.as_of_online_layout.ACCEPT_EVENTS_LUA`, many sets per call (grouped by
:mod:`freshet.pipelines.online_calls`). Members name
their source record (:func:`~freshet.features.as_of_online_layout.encode_member`), so a batch is a set: merging
a failed batch back into the pending one (or adding an event twice) is a union, and sending it again
changes nothing that was already written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from hiredis import pack_command

from freshet.features.as_of_online_layout import (
    MAX_ONLINE_EVENTS,
    encode_member,
    events_key,
    events_meta_key,
    expire_ms,
    read_columns,
    retention_ms,
)
from freshet.features.definitions import FeatureView
from freshet.pipelines.accepted_events import NOT_COUNTED, AcceptedEvents


class EventsWrite:
    """One (entity, view)'s events of a batch: the view's retention and expiry, and the events by
    source position ((partition, offset) -> (time, first_start, values)), encoded to members only when
    the batch is packed (an encoded member kept for a whole batch costs ten times more to make than one
    packed at once, measured: 3 us against 0.3). Its two keys' text is made when first asked for (by
    then in the writer's thread)."""

    __slots__ = ("view", "entity", "retention", "expire", "members", "_keys")

    def __init__(self, view: FeatureView, entity: Any, retention: int, expire: int) -> None:
        self.view = view
        self.entity = entity
        self.retention = retention
        self.expire = expire
        self.members: dict[tuple[int, int], tuple[int, int, list[Any]]] = {}
        self._keys: tuple[str, str] | None = None

    @property
    def key(self) -> str:
        return (self._keys or self._make_keys())[0]

    @property
    def meta_key(self) -> str:
        return (self._keys or self._make_keys())[1]

    def _make_keys(self) -> tuple[str, str]:
        view = self.view
        self._keys = (events_key(view.name, view.version, self.entity),
                      events_meta_key(view.name, view.version, self.entity))
        return self._keys

    def arguments(self) -> list[Any]:
        """This key's part of the accept script's ARGV: retention, expiry, pair count, the pairs."""
        flat: list[Any] = [self.retention, self.expire, len(self.members)]
        for (partition, offset), (ts, first_start, values) in self.members.items():
            flat.append(ts)
            flat.append(encode_member(partition, offset, first_start, values))
        return flat


def packed_accept(sha: str, cap: int, writes: list[EventsWrite]) -> bytes:
    """One ``EVALSHA`` of the accept script for ``writes`` (on a cluster: keys of one hash slot)."""
    keys: list[str] = []
    argv: list[Any] = [cap]
    for write in writes:
        keys.append(write.key)
        keys.append(write.meta_key)
        argv += write.arguments()
    packed: bytes = pack_command(("EVALSHA", sha, len(keys), *keys, *argv))
    return packed


class AcceptingView(NamedTuple):
    """What a request-time view's online members keep of an accepted event."""

    view: FeatureView
    view_id: int  # id(view): the batch's writes are keyed by it
    values: Callable[[dict[str, Any]], list[Any]]  # the event's values of the view's read columns, in order
    retention: int  # retention_ms(view)
    expire: int  # expire_ms(view)


def accepting_views(views: list[FeatureView]) -> list[AcceptingView]:
    """Per view (by index), what :meth:`PendingEvents.add_events` needs. The values of an event are
    taken by one compiled expression: 87 ns an event for one column, against 226 ns for a list
    comprehension over the columns (timeit, by hand)."""
    out = []
    for view in views:
        text = "lambda event: [" + "".join(f"event.get({c!r}), " for c in read_columns(view)) + "]"
        values = eval(text)  # noqa: S307 - repr-quoted column names
        out.append(AcceptingView(view, id(view), values, retention_ms(view), expire_ms(view)))
    return out


class PendingEvents:
    """Accepted events waiting for the next batch, per (view, entity); ``len`` counts the events."""

    def __init__(self, cap: int = MAX_ONLINE_EVENTS) -> None:
        self.cap = cap
        # by (id of the view: each write holds its view, entity's class (1 and 1.0 are two entities), entity)
        self.writes: dict[tuple[int, type, Any], EventsWrite] = {}
        self.count = 0
        self._views: dict[tuple[str, int], tuple[int, int]] = {}  # (view, version) -> retention, expire

    def __len__(self) -> int:
        return self.count

    def add(self, view: FeatureView, entity: Any, ts: int, first_start: int, partition: int, offset: int,
            values: list[Any]) -> None:
        write = self.writes.get((id(view), entity.__class__, entity)) or self._write(view, entity)
        position = (partition, offset)
        if position not in write.members:
            write.members[position] = (ts, first_start, values)
            self.count += 1

    def add_events(self, accepting: list[AcceptingView], events: AcceptedEvents) -> None:
        """:meth:`add` for each event of ``events`` (the columns as the operator keeps them: no record is
        made per event) and each request-time view that counted it (first start not NOT_COUNTED)."""
        writes = self.writes
        rows = events.rows
        for view_i, firsts in events.columns:
            view, view_id, values, retention, expire = accepting[view_i]
            for i, first_start in enumerate(firsts):
                if first_start == NOT_COUNTED:
                    continue
                entity, ts, event, partition, offset = rows[i]
                at = (view_id, entity.__class__, entity)
                write = writes.get(at)
                if write is None:  # the first of this (view, entity) in the batch
                    write = writes[at] = EventsWrite(view, entity, retention, expire)
                members = write.members
                position = (partition, offset)
                if position not in members:
                    members[position] = (ts, first_start, values(event))
                    self.count += 1

    def _write(self, view: FeatureView, entity: Any) -> EventsWrite:
        limits = self._views.get((view.name, view.version))
        if limits is None:
            limits = self._views[(view.name, view.version)] = (retention_ms(view), expire_ms(view))
        write = self.writes[(id(view), entity.__class__, entity)] = EventsWrite(view, entity, *limits)
        return write

    def merge(self, other: PendingEvents) -> None:
        """Add ``other``'s events (a failed batch put back): a union, each event once."""
        for at, theirs in other.writes.items():
            mine = self.writes.get(at)
            if mine is None:
                self.writes[at] = theirs
                self.count += len(theirs.members)
                continue
            for position, event in theirs.members.items():
                if position not in mine.members:
                    mine.members[position] = event
                    self.count += 1

    def empty(self) -> PendingEvents:
        """A new, empty batch with the same cap and view limits."""
        fresh = PendingEvents(self.cap)
        fresh._views = self._views
        return fresh
