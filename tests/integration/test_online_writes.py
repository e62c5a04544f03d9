"""The online writer's newer-wins values on a real Redis (one node) and a real Redis Cluster, with batches
large enough to take several script calls of many keys each (pipelines.online_calls): each hash ends
as its newest write left it, whatever the batches, their order and the calls they were cut into."""

from __future__ import annotations

import random

from freshet.features.online_layout import OFFSET_FIELD, TS_FIELD, online_key
from freshet.features.redis_connect import sync_client
from freshet.pipelines.online_calls import VALUE_KEYS_PER_CALL
from freshet.pipelines.online_sink import RedisOnlineWriter


def test_each_hash_keeps_its_newest_write(url: str, unique: str) -> None:
    rng = random.Random(3)
    entities = [f"card-{i}" for i in range(3 * VALUE_KEYS_PER_CALL)]
    views = [f"a_{unique}", f"b_{unique}"]
    # (view, entity) -> (feature_ts, offset, value) of every write, in a shuffled order over batches
    writes = [(view, entity, rng.randrange(1_000), offset, rng.random())
              for offset in range(2_000) for view, entity in [(rng.choice(views), rng.choice(entities))]]
    newest: dict[tuple[str, str], tuple[int, int, float]] = {}
    for view, entity, ts, offset, value in writes:
        if (ts, offset) > newest.get((view, entity), (-1, -1, 0.0))[:2]:
            newest[(view, entity)] = (ts, offset, value)
    writer = RedisOnlineWriter(url, background=False, batch_size=1 << 20)
    try:
        for start in range(0, len(writes), 700):  # batches of several calls; older writes come after newer
            for view, entity, ts, offset, value in writes[start:start + 700]:
                writer.add(online_key(view, 1, entity), ts, offset, 86_400_000, ["x"], [value], ts - 10, ts)
            writer.flush()
        applied = writer.applied
        for view, entity, ts, offset, value in writes[:300]:  # sent again (a replay): nothing changes
            writer.add(online_key(view, 1, entity), ts, offset, 86_400_000, ["x"], [value], ts - 10, ts)
        writer.flush()
        assert writer.applied == applied
    finally:
        writer.close()
    client = sync_client(url)
    try:
        for (view, entity), (ts, offset, value) in newest.items():
            stored = client.hgetall(online_key(view, 1, entity))
            assert (int(stored[TS_FIELD.encode()]), int(stored[OFFSET_FIELD.encode()])) == (ts, offset)
            assert float(stored[b"x"]) == value
            assert int(stored[b"__we"]) == ts
            assert 0 < client.pttl(online_key(view, 1, entity)) <= 86_400_000
    finally:
        client.close()
