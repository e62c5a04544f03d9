"""The rows materialization writes: per entity, the as-of rule at "now" over the log."""

from __future__ import annotations

from pathlib import Path

from freshet.pipelines.materialize import latest_rows
from freshet.pipelines.offline_sink import ParquetLogWriter
from tests.unit.test_offline_writer import DAY, VIEW, FakeClock, row


def write_log(root: Path, rows: list[tuple[object, ...]]) -> None:
    writer = ParquetLogWriter(root, VIEW, clock=FakeClock())
    for r in rows:
        writer.add(r, r[6], r[6], r[7], r[1])  # type: ignore[arg-type]
    writer.checkpoint()


def test_latest_row_per_entity_ties_to_the_larger_offset(tmp_path: Path) -> None:
    write_log(tmp_path, [
        row("a", DAY + 60_000, 1, 0, 10),
        row("a", DAY + 120_000, 2, 0, 11),
        row("a", DAY + 120_000, 3, 1, 12),  # same feature_ts, larger offset: this one
        row("b", DAY + 180_000, 4, 0, 13),
        row("b", DAY + 60_000, 5, 1, 14),  # later offset, older feature_ts: not this one
        row("c", DAY + 60_000, 6, 2, 15),
    ])
    table, read = latest_rows(tmp_path, VIEW)
    assert read == 6
    assert {r["card_id"]: r["n"] for r in table.to_pylist()} == {"a": 3, "b": 4, "c": 6}


def test_since_and_entities_narrow_it(tmp_path: Path) -> None:
    write_log(tmp_path, [row("a", DAY + 60_000, 1, 0, 1), row("a", DAY + 240_000, 2, 0, 2),
                         row("b", DAY + 60_000, 3, 0, 3), row("c", DAY + 300_000, 4, 0, 4)])
    table, read = latest_rows(tmp_path, VIEW, since_ms=DAY + 200_000)
    assert read == 2 and {r["card_id"]: r["n"] for r in table.to_pylist()} == {"a": 2, "c": 4}
    table, _ = latest_rows(tmp_path, VIEW, entities=["b", "zzz"])
    assert {r["card_id"]: r["n"] for r in table.to_pylist()} == {"b": 3}
    table, read = latest_rows(tmp_path / "nothing", VIEW)
    assert read == 0 and table.num_rows == 0
