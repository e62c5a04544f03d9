"""Request-time views' accepted events on their way to Redis: the online writer's pending batch of them.

:class:`~freshet.pipelines.online_sink.RedisOnlineWriter` queues each accepted event
(:meth:`~freshet.pipelines.online_sink.RedisOnlineWriter.add_accepted`) here, beside its pending
values, and sends both in the same batches: per entity one ``EVALSHA`` of
:data:`~freshet.features.as_of_online_layout.ACCEPT_EVENTS_LUA` with every event of the batch of each of
its request-time views (an entity's keys share a slot; one call instead of one per view costs the
server about half as much). Members name
their source record (:func:`~freshet.features.as_of_online_layout.encode_member`), so a batch is a set: merging
a failed batch back into the pending one (or adding an event twice) is a union, and sending it again
changes nothing that was already written.
"""

from __future__ import annotations

from typing import Any

from hiredis import pack_command

from freshet.features.as_of_online_layout import (
    MAX_ONLINE_EVENTS,
    encode_member,
    events_key,
    events_meta_key,
    expire_ms,
    retention_ms,
)
from freshet.features.definitions import FeatureView


class EventsWrite:
    """One (entity, view)'s events of a batch: its two keys, the view's retention and expiry, and the
    events by source position ((partition, offset) -> (time, first_start, values)), encoded to members
    only when the batch is packed (an encoded member kept for a whole batch costs ten times more to
    make than one packed at once, measured: 3 us against 0.3)."""

    __slots__ = ("key", "meta_key", "retention", "expire", "members")

    def __init__(self, key: str, meta_key: str, retention: int, expire: int) -> None:
        self.key = key
        self.meta_key = meta_key
        self.retention = retention
        self.expire = expire
        self.members: dict[tuple[int, int], tuple[int, int, list[Any]]] = {}

    def arguments(self) -> list[Any]:
        """This key's part of the accept script's ARGV: retention, expiry, pair count, the pairs."""
        flat: list[Any] = [self.retention, self.expire, len(self.members)]
        for (partition, offset), (ts, first_start, values) in self.members.items():
            flat.append(ts)
            flat.append(encode_member(partition, offset, first_start, values))
        return flat

    def packed(self, sha: str, cap: int) -> bytes:
        """The ``EVALSHA`` of the accept script for this key alone, packed by hiredis."""
        return packed_accept(sha, cap, [self])


def packed_accept(sha: str, cap: int, writes: list[EventsWrite]) -> bytes:
    """One ``EVALSHA`` of the accept script for ``writes`` (keys of one entity: one hash slot)."""
    keys: list[str] = []
    argv: list[Any] = [cap]
    for write in writes:
        keys.append(write.key)
        keys.append(write.meta_key)
        argv += write.arguments()
    packed: bytes = pack_command(("EVALSHA", sha, len(keys), *keys, *argv))
    return packed


def by_entity(writes: list[EventsWrite]) -> list[list[EventsWrite]]:
    """The writes grouped per entity (its hash tag, ``{...}``, in every key): one accept call each."""
    groups: dict[str, list[EventsWrite]] = {}
    for write in writes:
        tag = write.key[write.key.index("{"):write.key.index("}")]
        groups.setdefault(tag, []).append(write)
    return list(groups.values())


class PendingEvents:
    """Accepted events waiting for the next batch, per events key; ``len`` counts the events."""

    def __init__(self, cap: int = MAX_ONLINE_EVENTS) -> None:
        self.cap = cap
        self.writes: dict[str, EventsWrite] = {}
        self.count = 0
        self._views: dict[tuple[str, int], tuple[int, int]] = {}  # (view, version) -> retention, expire

    def __len__(self) -> int:
        return self.count

    def add(self, view: FeatureView, entity: Any, ts: int, first_start: int, partition: int, offset: int,
            values: list[Any]) -> None:
        key = events_key(view.name, view.version, entity)
        write = self.writes.get(key)
        if write is None:
            limits = self._views.get((view.name, view.version))
            if limits is None:
                limits = self._views[(view.name, view.version)] = (retention_ms(view), expire_ms(view))
            write = self.writes[key] = EventsWrite(key, events_meta_key(view.name, view.version, entity), *limits)
        position = (partition, offset)
        if position not in write.members:
            write.members[position] = (ts, first_start, values)
            self.count += 1

    def merge(self, other: PendingEvents) -> None:
        """Add ``other``'s events (a failed batch put back): a union, each event once."""
        for key, theirs in other.writes.items():
            mine = self.writes.get(key)
            if mine is None:
                self.writes[key] = theirs
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
