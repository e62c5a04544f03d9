"""How the online writer groups a batch into script calls (pipelines.online_calls): every item once, in
order, within the size limits, and on a cluster only keys of one hash tag per call."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from freshet.features.online_layout import online_key
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


def test_newer_wins_call_carries_each_key_with_its_field_count() -> None:
    packed = packed_newer_wins("sha", [("k1", 10, 3, 60_000, ["a", "1", "b", "2"]), ("k2", 11, 4, 60_000, [])])
    # EVALSHA sha 2 k1 k2 | 10 3 60000 4 a 1 b 2 | 11 4 60000 0
    assert packed.startswith(b"*17\r\n$7\r\nEVALSHA\r\n$3\r\nsha\r\n$1\r\n2\r\n$2\r\nk1\r\n$2\r\nk2\r\n")
    assert packed.endswith(b"$2\r\n11\r\n$1\r\n4\r\n$5\r\n60000\r\n$1\r\n0\r\n")
