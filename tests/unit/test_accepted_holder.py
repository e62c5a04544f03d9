"""The live run's holder of accepted events: taken while the operator's thread is appending, and handed to
Redis's pending batch as columns (the same members as the records path)."""

from __future__ import annotations

import pytest

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.pipelines.accepted_events import NOT_COUNTED, AcceptedEvents
from freshet.pipelines.accepted_online import PendingEvents, accepting_views

SOURCE = Source(name="tx", topic="tx", partitions=2, key="card_id", timestamp="ts",
                schema={"card_id": "str", "amount": "float", "ts": "int"})


def _view(name: str) -> FeatureView:
    return FeatureView(name=name, source=SOURCE, window=TumblingWindow(size="1m"), as_of="request",
                       aggregations=[Aggregation(function="sum", column="amount", name="total")])


def _append(events: AcceptedEvents, i: int, firsts: list[int], *, row: bool = True, input_partition: int | None = None,
            ) -> None:
    """One event as the operator's thread appends it: first starts, then the row, then the input partition."""
    for (_v, column), first in zip(events.columns, firsts, strict=True):
        column.append(first)
    if row:
        events.rows.append((f"c{i % 3}", 1_000 + i, {"card_id": f"c{i % 3}", "amount": float(i), "ts": 1_000 + i},
                            i % 2, 10 + i))
    if input_partition is not None and events.inputs is not None:
        events.inputs.append(input_partition)


def test_take_ready_takes_whole_events_and_leaves_the_one_being_appended() -> None:
    events = AcceptedEvents([True, False, True])
    events.track_inputs()
    assert events.take_ready() is None
    for i in range(4):
        _append(events, i, [0, NOT_COUNTED if i == 2 else 60_000], input_partition=7 - i)
    _append(events, 4, [0, 0], row=True)  # its input partition not appended yet
    _append(events, 5, [5, 5], row=False)  # only its first starts so far
    events.first_at = 12.5
    taken = events.take_ready()
    assert taken is not None
    assert [r[4] for r in taken.rows] == [10, 11, 12, 13]
    assert list(taken.inputs or []) == [7, 6, 5, 4]
    assert [list(c) for _v, c in taken.columns] == [[0, 0, 0, 0], [60_000, 60_000, NOT_COUNTED, 60_000]]
    assert taken.firsts[1] is None and taken.first_at == 12.5
    # what was being appended stays, and lines up once its event is whole
    assert [r[4] for r in events.rows] == [14]
    assert [list(c) for _v, c in events.columns] == [[0, 5], [0, 5]]
    assert events.inputs is not None
    events.inputs.append(3)
    events.rows.append(("c2", 1_005, {"card_id": "c2", "amount": 5.0, "ts": 1_005}, 1, 15))
    events.inputs.append(2)
    again = events.take_ready()
    assert again is not None and [r[4] for r in again.rows] == [14, 15] and list(again.inputs or []) == [3, 2]
    assert [list(c) for _v, c in again.columns] == [[0, 5], [0, 5]]
    assert events.take_ready() is None and not events.rows


def test_pending_events_from_columns_hold_what_one_event_at_a_time_holds() -> None:
    views = [_view("a"), _view("b")]
    accepting = accepting_views(views)
    events = AcceptedEvents([True, True])
    events.track_inputs()
    for i in range(9):
        _append(events, i, [NOT_COUNTED if i % 4 == 0 else 60_000 * i, 60_000], input_partition=0)
    _append(events, 3, [60_000, 60_000], input_partition=0)  # a redelivered position: one member
    by_columns, by_records = PendingEvents(), PendingEvents()
    by_columns.add_events(accepting, events)
    for view_i, entity, ts, first, event, partition, offset in events.records():
        by_records.add(views[view_i], entity, ts, first, partition, offset, accepting[view_i].values(event))
    assert len(by_columns) == len(by_records) == 9 - 3 + 9
    assert {k: w.members for k, w in by_columns.writes.items()} == {k: w.members for k, w in by_records.writes.items()}


class FlakyRedis:
    """Stands in for the Redis writer's batch: refuses the first ``fail`` hand-overs."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.offsets: list[int] = []

    def set_puller(self, pull: object) -> None:
        self.pull = pull

    def add_accepted_events(self, accepting: object, events: AcceptedEvents) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the batch refused them")
        self.offsets += [row[4] for row in events.rows]

    def discard(self) -> None:
        pass


def test_events_redis_refused_are_handed_over_again_and_a_discard_drops_them() -> None:
    from freshet.pipelines.outputs import OperatorOutputs
    from freshet.pipelines.stats import PipelineStats

    redis = FlakyRedis(fail=1)
    outputs = OperatorOutputs([_view("a")], None, PipelineStats(), redis, None)  # type: ignore[arg-type]
    events = AcceptedEvents([True])
    events.track_inputs()
    outputs.attach_live(events)
    assert redis.pull == outputs.take_live
    for i in range(3):
        _append(events, i, [0], input_partition=0)
    with pytest.raises(RuntimeError, match="refused"):
        outputs.take_live()  # the writer's thread logs this; the checkpoint's call stops the run
    assert not events.rows and redis.offsets == []
    _append(events, 3, [0], input_partition=0)
    outputs.take_live()
    assert redis.offsets == [10, 11, 12, 13]
    outputs.take_live()
    assert redis.offsets == [10, 11, 12, 13]
    redis.fail = 1
    _append(events, 4, [0], input_partition=0)
    with pytest.raises(RuntimeError):
        outputs.take_live()
    outputs.discard()  # the input is rewound: they come again
    outputs.take_live()
    assert redis.offsets == [10, 11, 12, 13]
