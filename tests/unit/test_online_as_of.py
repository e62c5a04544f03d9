"""The online as-of read's pieces without a server: the window read as a score range, the `at` checks,
the fold of a reply (order, first_start, horizon) and the writer's pending set of accepted events."""

from __future__ import annotations

import orjson
import pytest

from freshet.features import Aggregation, FeatureView, HoppingWindow, SlidingWindow, Source, TumblingWindow
from freshet.features.as_of import AsOfHorizonError
from freshet.features.as_of_layout import encode_member, events_key
from freshet.features.errors import RequestError, UsageError
from freshet.features.online_as_of import EventsReply, RequestViewReader, check_at, window_read
from freshet.pipelines.accepted_online import PendingEvents, packed_accept

SOURCE = Source(name="s", topic="s", key="k", timestamp="ts", schema={"k": "str", "x": "float", "m": "str", "ts": "int"})
AGGS = [Aggregation(function="count", name="n"), Aggregation(function="last", column="m", name="lm"),
        Aggregation(function="sum", column="x", name="sx")]


def view(window: object, name: str = "v", as_of: str = "request") -> FeatureView:
    return FeatureView(name=name, source=SOURCE, window=window, aggregations=AGGS, as_of=as_of)


def test_windows_as_score_ranges() -> None:
    assert window_read(view(TumblingWindow(size=10)), 9) is None
    tum = window_read(view(TumblingWindow(size=10)), 25)
    assert tum is not None and (tum.start, tum.end, tum.feature_ts, tum.score_range) == (10, 20, 20, ("10", "(20"))
    hop = window_read(view(HoppingWindow(size=9, step=6)), 25)
    assert hop is not None and (hop.start, hop.end, hop.score_range) == (12, 21, ("12", "(21"))
    sli = window_read(view(SlidingWindow(size=10)), 25)
    assert sli is not None and (sli.start, sli.feature_ts, sli.score_range) == (15, 25, ("15", "25"))
    early = window_read(view(SlidingWindow(size=10)), 4)
    assert early is not None and early.score_range == ("0", "4")


def test_at_is_checked() -> None:
    views = [view(SlidingWindow(size=10))]
    assert check_at(views, None) is None and check_at(views, 0) == 0
    for bad, words in ((True, "not an instant"), (1.5, "not an instant"), (-1, "out of range"),
                       (10**15, "out of range")):
        with pytest.raises(RequestError, match=words):
            check_at(views, bad)
    with pytest.raises(RequestError, match=r"views 'a', 'b' answer with the value of the entity's newest event"):
        check_at([*views, view(TumblingWindow(size=5), "b", "last_event"), view(TumblingWindow(size=5), "a",
                                                                                   "last_event")], 7)
    assert issubclass(RequestError, UsageError)  # the CLI's exit code 2


def reply(floor: int | None, events: list[tuple[int, int, int, int, float, str]]) -> EventsReply:
    """Members in score order, ties in member-byte order (as Redis returns them)."""
    encoded = sorted((ts, encode_member(p, o, first, [m, x])) for ts, p, o, first, x, m in events)
    # the read script's text for one entity: [floor or null, score, member, score, member, ...]
    text = b"[" + b",".join([b"null" if floor is None else str(floor).encode(),
                              *(part for ts, member in encoded for part in (str(ts).encode(), member))]) + b"]"
    return EventsReply.from_script(orjson.loads(text))


def test_a_reply_folds_in_time_partition_offset_order() -> None:
    sli = view(SlidingWindow(size=10))
    window = window_read(sli, 20)
    assert window is not None
    # two events at time 15: partition 0 offset 10 and partition 0 offset 9 ("10" < "9" as bytes)
    values = RequestViewReader(sli, ("n", "lm", "sx"), window).values(
        "e", reply(None, [(15, 0, 10, 15, 1.0, "late"), (15, 0, 9, 15, 2.0, "early"), (12, 1, 3, 12, 0.5, "a")]))
    assert values == [3, "late", 3.5]
    same = EventsReply.from_pipeline(None, [(b"[0,9,15,\"x\",1.0]", 15.0)])
    assert RequestViewReader(sli, ("n",), window).values("e", same) == [1]


def test_a_fixed_window_counts_events_from_their_first_start_only() -> None:
    hop = view(HoppingWindow(size=20, step=5))
    window = window_read(hop, 40)  # [20, 40)
    assert window is not None
    got = RequestViewReader(hop, ("n", "sx"), window).values(
        "e", reply(0, [(22, 0, 1, 20, 1.0, "a"), (23, 0, 2, 25, 2.0, "b"), (39, 0, 3, 20, 4.0, "c")]))
    assert got == [2, 5.0]  # the event counted from window 25 on is not in window 20
    empty = RequestViewReader(hop, ("n", "lm", "sx"), window).values("e", reply(None, []))
    assert empty == [0, None, 0.0]


def test_a_window_before_the_floor_is_refused_with_the_reach() -> None:
    tum = view(TumblingWindow(size=60_000))
    window = window_read(tum, 180_000)
    assert window is not None
    reader = RequestViewReader(tum, ("n",), window)
    assert reader.values("e", reply(120_000, [])) == [0]
    with pytest.raises(AsOfHorizonError, match=r"entity 'e'.*only from 120001 .*reach back 1d behind"):
        reader.values("e", reply(120_001, []))


def test_pending_events_are_a_set() -> None:
    sli = view(SlidingWindow(size=10))
    pending = PendingEvents()
    pending.add(sli, "e", 5, 5, 0, 1, ["a", 1.0])
    pending.add(sli, "e", 5, 5, 0, 1, ["a", 1.0])  # the same record again
    pending.add(sli, "f", 6, 6, 0, 2, ["b", None])
    assert len(pending) == 2 and {w.key for w in pending.writes.values()} == {events_key("v", 1, "e"), events_key("v", 1, "f")}
    failed = pending
    pending = failed.empty()
    pending.add(sli, "e", 7, 7, 0, 3, ["c", 2.0])
    pending.merge(failed)
    assert len(pending) == 3 and len(pending.writes[(id(sli), str, "e")].members) == 2
    packed = packed_accept("abc", 10_000, [pending.writes[(id(sli), str, "e")]])
    assert packed.startswith(b"*13\r\n$7\r\nEVALSHA\r\n")  # sha, 2, 2 keys, cap, retention, expiry, 2, 2 pairs
