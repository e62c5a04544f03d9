"""The accepted-event log of a request-time view: layout, schema, and no duplicates after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from freshet.features import Aggregation, FeatureView, HoppingWindow, Source
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
