"""How the online writer groups a batch into script calls (pipelines.online_calls): every item once, in
order, within the size limits, and on a cluster only keys of one hash tag per call."""

from __future__ import annotations

from typing import Any

from hiredis import pack_command
from hypothesis import given
from hypothesis import strategies as st

from freshet.features.online_layout import WINDOW_END_FIELD, WINDOW_START_FIELD, online_key
from freshet.pipelines.online_calls import call_groups, hash_tag, packed_newer_wins


def test_hash_tag_follows_redis_cluster_rules() -> None:
    assert hash_tag(online_key("spend", 2, "card-1")) == "card-1"
    assert hash_tag("plain") == "plain"
    assert hash_tag("a{}b") == "a{}b"  # an empty tag: the whole key is hashed
    assert hash_tag("x{a}b}{c}") == "a"  # the first { and the first } after it


keys = st.lists(st.tuples(st.sampled_from(["e1", "e2", "e{3", "e}4", "five"]), st.sampled_from(["v", "w"]),
                          st.integers(1, 9)), max_size=60)


@given(keys, st.booleans(), st.integers(1, 7), st.integers(0, 12))
def test_groups_keep_every_item_within_the_limits(items: list[tuple[str, str, int]], cluster: bool,
                                                  max_keys: int, max_weight: int) -> None:
    def key_of(item: tuple[str, str, int]) -> str:
        return online_key(item[1], 1, item[0])

    weigh = (lambda item: item[2]) if max_weight else None
    groups = call_groups(items, key_of, cluster=cluster, max_keys=max_keys, weight=weigh, max_weight=max_weight)
    flat = [item for group in groups for item in group]
    assert sorted(flat) == sorted(items)
    assert all(group for group in groups)
    for group in groups:
        assert len(group) <= max_keys
        if weigh is not None and len(group) > 1:
            assert sum(weigh(item) for item in group) <= max_weight
        if cluster:
            assert len({hash_tag(key_of(item)) for item in group}) == 1
    if not cluster:
        assert flat == items  # a single node: the batch's order, cut into calls
    else:  # per tag, the batch's order
        for tag in {hash_tag(key_of(i)) for i in items}:
            assert [i for i in flat if hash_tag(key_of(i)) == tag] == [i for i in items if hash_tag(key_of(i)) == tag]


def test_newer_wins_call_holds_each_hashs_window_then_its_features_as_json_text() -> None:
    """One call carries every key, then per key its time, offset, ttl and item count, and the items the
    hash gets, as the online layout reads them back: the window's start and end, then each feature's
    name and its JSON text (ints as digits, floats as repr, None as null, the rest JSON)."""
    names = ["n", "total", "avg", "merchants", "last", "flag", "ratio", "top"]
    values: list[Any] = [3, 12.5, None, 17, "m-0042", True, float("nan"), {"a": 1}]
    writes = [("f:v:1:{c1}", 1_700_000_000_123, 41, 86_400_000, (names, values, 1_700_000_000_000, 1_700_000_300_000)),
              ("f:v:1:{c2}", 1_700_000_000_456, 42, 0, (["x"], [[1, 2]], 5, 6)),
              ("f:v:1:{c3}", 1_700_000_000_789, 43, 60_000, ([], [], 7, 9))]  # no features: the window alone
    expected: list[Any] = ["EVALSHA", "s" * 40, 3, "f:v:1:{c1}", "f:v:1:{c2}", "f:v:1:{c3}",
                           1_700_000_000_123, 41, 86_400_000, 20, WINDOW_START_FIELD, "1700000000000",
                           WINDOW_END_FIELD, "1700000300000", "n", "3", "total", "12.5", "avg", "null",
                           "merchants", "17", "last", '"m-0042"', "flag", "true", "ratio", "NaN", "top", '{"a":1}',
                           1_700_000_000_456, 42, 0, 6, WINDOW_START_FIELD, "5", WINDOW_END_FIELD, "6", "x", "[1,2]",
                           1_700_000_000_789, 43, 60_000, 4, WINDOW_START_FIELD, "7", WINDOW_END_FIELD, "9"]
    assert packed_newer_wins("s" * 40, writes) == pack_command(tuple(expected))
