"""How the online writer's batch becomes script calls: many keys per call, packed by hiredis.

Each ``EVALSHA`` costs Redis a fixed amount (script lookup, argument conversion, a reply) and the
writer a command to pack and a reply to read, whatever the keys it carries; at one value and a few
accepted events per input event, that fixed cost was most of the online store's work. So the newer-wins
script (:data:`~freshet.features.online_layout.NEWER_WINS_LUA`) and the accept script
(:data:`~freshet.features.as_of_online_layout.ACCEPT_EVENTS_LUA`) both take many keys per call:

- on a single node, up to :data:`VALUE_KEYS_PER_CALL` hashes (or :data:`EVENT_KEYS_PER_CALL` event
  sets) of any entities per call, so that one call keeps Redis busy for about a millisecond at most
  (readers wait behind a script);
- on a Redis Cluster, the keys of one call must share a slot: one call per hash tag (an entity: its
  views' keys), cut to the same sizes.

The scripts apply each key's part on its own, so the grouping changes how many calls there are, never
what they write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from hiredis import pack_command

from freshet.features.online_layout import WINDOW_END_FIELD, WINDOW_START_FIELD, encode_value
from freshet.pipelines.accepted_online import EventsWrite

T = TypeVar("T")

# one value for the writer: (hash key, feature_ts, source offset, ttl ms, (feature names, their values,
# window start, window end)); encoded to hash fields only when sent (packed_newer_wins), so a value
# superseded within a batch costs nothing more
PendingWrite = tuple[str, int, int, int, tuple[list[str], list[Any], int, int]]

VALUE_KEYS_PER_CALL = 128
EVENT_KEYS_PER_CALL = 64
EVENT_MEMBERS_PER_CALL = 4_000  # a call also ends once its event sets hold this many members


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: between the first ``{`` and the next ``}``."""
    start = key.find("{")
    if start < 0:
        return key
    end = key.find("}", start + 1)
    return key if end <= start + 1 else key[start + 1:end]


def call_groups(items: Iterable[T], key_of: Callable[[T], str], *, cluster: bool, max_keys: int,
                weight: Callable[[T], int] | None = None, max_weight: int = 0) -> list[list[T]]:
    """``items`` cut into the groups one call each carries: at most ``max_keys`` items (and, with
    ``weight``, at most ``max_weight`` of it unless one item alone is heavier), on a cluster only
    items of one hash tag together."""
    if cluster:
        by_tag: dict[str, list[T]] = {}
        for item in items:
            by_tag.setdefault(hash_tag(key_of(item)), []).append(item)
        return [group for tagged in by_tag.values() for group in _cut(tagged, max_keys, weight, max_weight)]
    return _cut(list(items), max_keys, weight, max_weight)


def _cut(items: list[T], max_keys: int, weight: Callable[[T], int] | None, max_weight: int) -> list[list[T]]:
    if weight is None:
        return [items[i:i + max_keys] for i in range(0, len(items), max_keys)]
    groups: list[list[T]] = []
    group: list[T] = []
    carried = 0
    for item in items:
        w = weight(item)
        if group and (len(group) >= max_keys or carried + w > max_weight):
            groups.append(group)
            group, carried = [], 0
        group.append(item)
        carried += w
    if group:
        groups.append(group)
    return groups


def packed_newer_wins(sha: str, writes: list[PendingWrite]) -> bytes:
    """One ``EVALSHA`` of the newer-wins script for ``writes``: (key, feature_ts, offset, ttl ms, (feature
    names, their values, window start, window end)). Each hash's items: the window's start and end, then
    each feature's name and JSON text, flattened here in one pass (no per-write dict or list: this runs
    in the Redis writer's thread, holding the interpreter lock, for every value written). A view's
    feature names are distinct (its definition refuses duplicates), so each name is sent once."""
    keys: list[Any] = []
    argv: list[Any] = []
    append = argv.append
    for key, ts, offset, ttl, (names, values, window_start, window_end) in writes:
        keys.append(key)
        argv += (ts, offset, ttl, 4 + 2 * len(names), WINDOW_START_FIELD, str(window_start), WINDOW_END_FIELD,
                 str(window_end))
        for name, value in zip(names, values, strict=True):
            append(name)
            append(encode_value(value))
    packed: bytes = pack_command(("EVALSHA", sha, len(keys), *keys, *argv))
    return packed


def event_groups(writes: list[EventsWrite], *, cluster: bool) -> list[list[EventsWrite]]:
    """The accept script's calls for a batch's event sets."""
    return call_groups(writes, _events_key, cluster=cluster, max_keys=EVENT_KEYS_PER_CALL,
                       weight=_members, max_weight=EVENT_MEMBERS_PER_CALL)


def _events_key(write: EventsWrite) -> str:
    return write.key


def _members(write: EventsWrite) -> int:
    return len(write.members)
