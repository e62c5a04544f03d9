"""The accepted-event log of a request-time view: layout, schema, and no duplicates after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from freshet.features import Aggregation, FeatureView, HoppingWindow, SlidingWindow, Source, TumblingWindow
from freshet.features.as_of_layout import accepted_schema, list_accepted_parts
from freshet.pipelines.accepted_sink import AcceptedLogWriter
from freshet.pipelines.tiles import AcceptedRecord, SourceOperator

SOURCE = Source(name="tx", topic="tx", key="card_id", timestamp="ts",
                schema={"card_id": "str", "amount": "float", "merchant": "str", "ts": "int"})
VIEW = FeatureView(name="spend", source=SOURCE, window=HoppingWindow(size="10m", step="5m"), grace="1m",
                   as_of="request",
                   aggregations=[Aggregation(function="count", name="n"),
                                 Aggregation(function="sum", column="amount", name="total"),
                                 Aggregation(function="count_distinct", column="merchant", name="shops")])
DAY = 1_699_920_000_000  # 2023-11-14 00:00 UTC
MIN = 60_000


def accepted(events: list[tuple[str, int, float]]) -> list[AcceptedRecord]:
    operator = SourceOperator([VIEW])
    states: dict[str, Any] = {}
    out = []
    for offset, (card, ts, amount) in enumerate(events):
        event = {"card_id": card, "amount": amount, "merchant": f"m{offset % 2}", "ts": ts, "__event_ts": ts}
        operator.process(states.setdefault(card, operator.initial()), event, 0, offset, [], [])
        out += operator.take_accepted()
    return out


def read_all(root: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(list_accepted_parts(root, VIEW)):
        assert "/_accepted/spend/v1/date=2023-11-14/part-0-" in path
        table = pq.read_table(path)
        assert table.schema.equals(accepted_schema(VIEW), check_metadata=False)
        rows += table.to_pylist()
    return rows


def test_accepted_events_are_logged_once_with_their_first_window(tmp_path: Path) -> None:
    # c1 at +7m, +8m, +30m; then +22m is late for [15m, 25m) (closed at 30m - 1m grace) and counts from 20m
    records = accepted([("c1", DAY + 7 * MIN, 1.0), ("c1", DAY + 8 * MIN, 2.0), ("c1", DAY + 30 * MIN, 4.0),
                        ("c1", DAY + 22 * MIN, 8.0), ("c1", DAY + 2 * MIN, 16.0)])
    # +2m falls only in windows [-5m, 5m) and [0, 10m), both closed: not accepted
    assert [(r.ts - DAY, r.first_start - DAY) for r in records] == [
        (7 * MIN, 0), (8 * MIN, 0), (30 * MIN, 25 * MIN), (22 * MIN, 20 * MIN)]
    writer = AcceptedLogWriter(tmp_path, VIEW)
    for r in records[:3]:
        writer.add_accepted(r, 0)
    assert writer.checkpoint() == 3
    # a restart re-reads from the last commit: the rows the crashed run flushed are not written twice
    again = AcceptedLogWriter(tmp_path, VIEW)
    for r in records:
        again.add_accepted(r, 0)
    assert again.checkpoint() == 1 and again.skipped == 3
    rows = read_all(tmp_path)
    got = sorted((row["source_offset"], int(row["event_ts"].timestamp() * 1000) - DAY,
                  int(row["first_window_start"].timestamp() * 1000) - DAY, row["amount"], row["merchant"])
                 for row in rows)
    assert got == [(0, 7 * MIN, 0, 1.0, "m0"), (1, 8 * MIN, 0, 2.0, "m1"), (2, 30 * MIN, 25 * MIN, 4.0, "m0"),
                   (3, 22 * MIN, 20 * MIN, 8.0, "m1")]


def _record(card: str, ts: int, partition: int, offset: int, first: int | None = None) -> AcceptedRecord:
    event = {"card_id": card, "amount": float(offset), "merchant": f"m{offset}", "ts": ts, "__event_ts": ts}
    return AcceptedRecord(0, card, ts, ts if first is None else first, event, partition, offset)


def test_runs_of_records_go_to_the_part_of_their_partition_and_date(tmp_path: Path) -> None:
    """Records handed over together are split into runs by source partition and date, in arrival order:
    each (partition, date) has one part, named by the offset of its first record."""
    late_evening, next_morning = DAY + 23 * 60 * MIN, DAY + 25 * 60 * MIN
    records = [_record("a", late_evening, 0, 10), _record("b", late_evening + MIN, 0, 11),
               _record("a", next_morning, 0, 12), _record("c", late_evening, 1, 40),
               _record("a", late_evening + 2 * MIN, 0, 13), _record("c", next_morning, 1, 41)]
    produced = [1000 + i for i in range(len(records))]
    writer = AcceptedLogWriter(tmp_path, VIEW)
    writer.add_records(records, produced, 7)
    assert writer.checkpoint() == 6
    parts = {Path(p).relative_to(tmp_path).as_posix(): pq.read_table(p).to_pylist()
             for p in list_accepted_parts(tmp_path, VIEW)}
    d1, d2 = "_accepted/spend/v1/date=2023-11-14", "_accepted/spend/v1/date=2023-11-15"
    assert sorted(parts) == sorted([f"{d1}/part-0-10.parquet", f"{d2}/part-0-12.parquet",
                                    f"{d1}/part-1-40.parquet", f"{d2}/part-1-41.parquet"])
    assert [r["source_offset"] for r in parts[f"{d1}/part-0-10.parquet"]] == [10, 11, 13]
    by_offset = {r["source_offset"]: r for rows in parts.values() for r in rows}
    assert {o: round(r["produced_at"].timestamp() * 1000) for o, r in by_offset.items()} == {
        10: 1000, 11: 1001, 12: 1002, 40: 1003, 13: 1004, 41: 1005}
    assert {o: (r["card_id"], r["amount"], r["merchant"]) for o, r in by_offset.items()} == {
        o: (rec.entity, float(o), f"m{o}") for rec in records for o in [rec.source_offset]}


def test_outputs_hand_accepted_records_to_their_views_at_the_flush(tmp_path: Path) -> None:
    """OperatorOutputs keeps accepted records as they come and routes them by view and input
    partition when it flushes; a discard forgets them."""
    from freshet.pipelines.outputs import OperatorOutputs
    from freshet.pipelines.stats import PipelineStats

    class NoSide:
        def flush(self) -> None:
            pass

    other = VIEW.model_copy(update={"name": "spend_other"})
    writers = [AcceptedLogWriter(tmp_path, VIEW), None, AcceptedLogWriter(tmp_path, other)]
    views = [VIEW, VIEW.model_copy(update={"name": "spend_event", "as_of": "event"}), other]
    outputs = OperatorOutputs(views, NoSide(), PipelineStats(), None, [], writers)  # type: ignore[arg-type]
    a0 = _record("a", DAY + MIN, 0, 5)
    outputs.accept([a0, a0._replace(view=2, first_start=DAY)], 3)
    outputs.accept([_record("b", DAY + 2 * MIN, 1, 6)._replace(view=2)], 4)
    assert not any(part.pending_rows for w in writers if w is not None for part in w._open.values())
    outputs.flush()
    mine = pq.read_table(list_accepted_parts(tmp_path, VIEW)[0]).to_pylist()
    theirs = sorted((r["source_offset"], int(r["first_window_start"].timestamp() * 1000) - DAY)
                    for p in list_accepted_parts(tmp_path, other) for r in pq.read_table(p).to_pylist())
    assert [r["source_offset"] for r in mine] == [5]
    assert theirs == [(5, 0), (6, 2 * MIN)]
    outputs.accept([_record("c", DAY + 3 * MIN, 0, 7)], 3)
    outputs.discard()
    outputs.flush()
    assert [r["source_offset"] for p in list_accepted_parts(tmp_path, VIEW) for r in pq.read_table(p).to_pylist()] == [5]


# --- the column path (the replay driver's) against the record path (the live run's) -------------------

MIDNIGHT = DAY + 86_400_000  # a date boundary inside the drawn streams
COLUMN_VIEWS = [
    VIEW,
    VIEW.model_copy(update={"name": "spend_event", "as_of": "last_event"}),  # no accepted log
    FeatureView(name="tum", source=SOURCE, window=TumblingWindow(size="5m"), grace="30s", as_of="request",
                aggregations=[Aggregation(function="max", column="amount", name="top")]),
    FeatureView(name="sli", source=SOURCE, window=SlidingWindow(size="3m"), grace="0s", as_of="request",
                aggregations=[Aggregation(function="count", name="n")]),
]
# (card, minutes from 20 before midnight, partition): out of order and late, over two dates
drawn_event = st.tuples(st.sampled_from("abc"), st.integers(0, 40), st.integers(0, 2))


def _run_both(tmp_path: Path, drawn: list[tuple[str, int, int]], chunk: int,
              live: bool = False) -> tuple[Path, Path, Any]:
    """The same stream through the operator twice: its records to OperatorOutputs.accept per event (root
    ``records``), its columns to accept_events every ``chunk`` events (root ``columns``, a replay's way).
    ``live``: the columns stay in the operator's holder with each event's input partition (one per card,
    not its source partition: a re-keyed run's) and OperatorOutputs.take_live takes them every ``chunk``
    events (the live run's way); the records path gets the same input partitions."""
    from freshet.pipelines.outputs import OperatorOutputs
    from freshet.pipelines.stats import PipelineStats

    class NoSide:
        def flush(self) -> None:
            pass

    roots = tmp_path / "records", tmp_path / "columns"
    outs = [OperatorOutputs(COLUMN_VIEWS, NoSide(), PipelineStats(), None, [],  # type: ignore[arg-type]
                            [AcceptedLogWriter(root, v) if v.as_of == "request" else None for v in COLUMN_VIEWS])
            for root in roots]
    ops = [SourceOperator(COLUMN_VIEWS), SourceOperator(COLUMN_VIEWS)]
    inputs = ops[1].accepted.track_inputs() if live else None
    if live:
        outs[1].attach_live(ops[1].accepted)
    states: list[dict[str, Any]] = [{}, {}]
    offsets = [0, 0, 0]
    for n, (card, minute, partition) in enumerate(drawn, 1):
        ts = MIDNIGHT - 20 * MIN + minute * MIN + n  # distinct times
        event = {"card_id": card, "amount": float(n), "merchant": f"m{n % 3}", "ts": ts, "__event_ts": ts}
        offset = offsets[partition] = offsets[partition] + 1
        input_partition = 5 + "abc".index(card) % 2 if live else partition
        for op, st_ in zip(ops, states, strict=True):
            applied = op.process(st_.setdefault(card, op.initial()), event, partition, offset, [], [])
        outs[0].accept(ops[0].take_accepted(), input_partition)
        if inputs is not None and applied:
            inputs.append(input_partition)  # after the operator's row, as the live step does
        if n % chunk == 0:
            outs[1].take_live() if live else outs[1].accept_events(ops[1].accepted.take())
    if not live:
        outs[1].accept_events(ops[1].accepted.take())
    for out in outs:
        out.flush()
    return roots[0], roots[1], outs


def _log(root: Path, view: FeatureView) -> dict[str, list[dict[str, Any]]]:
    return {Path(p).relative_to(root).as_posix(): [{k: v for k, v in r.items() if k != "produced_at"}
                                                   for r in pq.read_table(p).to_pylist()]
            for p in list_accepted_parts(root, view)}


@settings(max_examples=60, deadline=None)
@given(drawn=st.lists(drawn_event, min_size=1, max_size=60), chunk=st.integers(1, 25), live=st.booleans())
def test_columns_write_the_same_accepted_logs_as_records(tmp_path_factory: Any, drawn: list[Any],
                                                         chunk: int, live: bool) -> None:
    """Handed over as columns in chunks (a replay's way, or the live run's holder with input partitions
    other than the source's), the accepted events make the same parts (names, rows, row order) as handed
    over as records one event at a time."""
    by_records, by_columns, _ = _run_both(tmp_path_factory.mktemp("logs"), drawn, chunk, live)
    for view in COLUMN_VIEWS:
        if view.as_of == "request":
            assert _log(by_columns, view) == _log(by_records, view), view.name


def test_columns_after_a_crash_skip_what_the_last_flush_wrote(tmp_path: Path) -> None:
    """A restart that hands over the same columns again writes none of the rows the last flush wrote."""
    drawn = [("a", 1, 0), ("b", 2, 1), ("a", 25, 0), ("c", 30, 1), ("a", 3, 0), ("b", 26, 1)]
    _, by_columns, _ = _run_both(tmp_path, drawn, 2)
    before = _log(by_columns, VIEW)
    _, again, outs = _run_both(tmp_path, drawn, 4)  # the same roots: a second run over the same input
    assert _log(again, VIEW) == before
    writer = outs[1].accepted[0]
    assert writer is not None and writer.skipped == sum(len(rows) for rows in before.values()) > 0


def test_taken_events_give_the_records_they_held() -> None:
    """``take()`` hands over the rows and first starts as a holder of their own: its records are those the
    operator's holder gave before (the live run and ``replay --online`` hand them to Redis)."""
    operator = SourceOperator(COLUMN_VIEWS)
    states: dict[str, Any] = {}
    for n, (card, minute) in enumerate([("a", 1), ("b", 3), ("a", 30), ("a", 2), ("b", 31)], 1):
        ts = MIDNIGHT + minute * MIN
        event = {"card_id": card, "amount": float(n), "merchant": f"m{n}", "ts": ts, "__event_ts": ts}
        operator.process(states.setdefault(card, operator.initial()), event, 0, n, [], [])
    expected = operator.accepted.records()
    taken = operator.accepted.take()
    assert operator.accepted.records() == [] and not operator.accepted.rows
    assert len(expected) > 5 and taken.records() == expected
