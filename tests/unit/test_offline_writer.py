"""The Parquet log writer: explicit schema, rolling, rewind, and no duplicates after a restart."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.features.offline_layout import list_parts, view_schema
from freshet.pipelines.offline_sink import ParquetLogWriter

SOURCE = Source(name="tx", topic="tx", key="card_id", timestamp="ts",
                schema={"card_id": "str", "amount": "float", "ts": "int"})
VIEW = FeatureView(name="spend", source=SOURCE, window=TumblingWindow(size="1m"),
                   aggregations=[Aggregation(function="count", name="n"),
                                 Aggregation(function="sum", column="amount", name="total")])
DAY = 1_700_000_000_000  # 2023-11-14


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def row(entity: str, ts: int, n: int, partition: int, offset: int) -> tuple[object, ...]:
    return (entity, ts, ts - 60_000, ts, n, float(n), partition, offset, DAY)


def all_rows(root: Path) -> list[dict[str, object]]:
    out = []
    for path in list_parts(root, VIEW):
        table = pq.read_table(path)
        assert table.schema.equals(view_schema(VIEW), check_metadata=False)
        out += table.to_pylist()
    return out


def add(writer: ParquetLogWriter, r: tuple[object, ...], input_partition: int = 0) -> None:
    writer.add(r, input_partition, int(r[6]), int(r[7]), int(r[1]))  # type: ignore[call-overload]


def test_files_follow_the_layout_and_roll(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = ParquetLogWriter(tmp_path, VIEW, roll_rows=3, roll_seconds=60, clock=clock)
    for i in range(4):
        add(writer, row("a", DAY + i, 1, 0, 10 + i))
    assert writer.checkpoint() == 4
    paths = list_parts(tmp_path, VIEW)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in paths] == ["spend/v1/date=2023-11-14/part-0-10.parquet"]
    add(writer, row("a", DAY + 9, 1, 0, 20))  # the first part was full: a new one
    clock.now = 61.0
    writer.checkpoint()
    add(writer, row("a", DAY + 10, 1, 0, 21))  # the second part was too old: another one
    writer.checkpoint()
    names = sorted(Path(p).name for p in list_parts(tmp_path, VIEW))
    assert names == ["part-0-10.parquet", "part-0-20.parquet", "part-0-21.parquet"]
    assert len(all_rows(tmp_path)) == 6


def test_rows_split_by_date_and_partition(tmp_path: Path) -> None:
    writer = ParquetLogWriter(tmp_path, VIEW, clock=FakeClock())
    add(writer, row("a", DAY, 1, 0, 5))
    add(writer, row("b", DAY + 86_400_000, 1, 1, 7))
    writer.checkpoint()
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in list_parts(tmp_path, VIEW)) == [
        "spend/v1/date=2023-11-14/part-0-5.parquet", "spend/v1/date=2023-11-15/part-1-7.parquet"]


def test_discard_uncommitted_forgets_only_new_rows(tmp_path: Path) -> None:
    writer = ParquetLogWriter(tmp_path, VIEW, clock=FakeClock())
    add(writer, row("a", DAY, 1, 0, 1))
    writer.checkpoint()
    add(writer, row("a", DAY + 1, 2, 0, 2))
    writer.discard_uncommitted()
    add(writer, row("a", DAY + 1, 2, 0, 2))  # re-emitted after the rewind
    writer.checkpoint()
    assert [r["source_offset"] for r in all_rows(tmp_path)] == [1, 2]


def test_restart_skips_rows_the_last_flush_wrote(tmp_path: Path) -> None:
    first = ParquetLogWriter(tmp_path, VIEW, clock=FakeClock())
    for offset in range(5):
        add(first, row("a", DAY + offset, offset, 0, offset))
    first.checkpoint()  # say offsets 3 and 4 were flushed but their commit was lost in a crash
    second = ParquetLogWriter(tmp_path, VIEW, clock=FakeClock())
    for offset in (3, 4, 5, 6):  # the run resumes from the last committed offset, 3
        add(second, row("a", DAY + offset, offset, 0, offset))
    second.checkpoint()
    offsets = sorted(int(r["source_offset"]) for r in all_rows(tmp_path))  # type: ignore[call-overload]
    assert offsets == [0, 1, 2, 3, 4, 5, 6]
    assert second.skipped == 2


def test_emitted_values_make_the_same_rows_as_rows(tmp_path: Path) -> None:
    """add_value (the drivers' path: columns appended from an EmittedValue, the last part remembered)
    writes what add writes, across dates, partitions, rolled parts and a restart's skipped rows."""
    from freshet.pipelines.tiles import EmittedValue

    def values(n: int) -> list[EmittedValue]:
        return [EmittedValue(0, f"e{i % 3}", DAY + (i // 4) * 43_200_000 + i, DAY + i - 60_000, DAY + i, [i, i / 2],
                             i % 2, 100 + i) for i in range(n)]

    def as_row(v: EmittedValue) -> tuple[object, ...]:
        return (v.entity, v.feature_ts, v.window_start, v.window_end, *v.values, v.source_partition,
                v.source_offset, DAY)

    def rows(root: Path) -> list[tuple[str, list[object]]]:
        return sorted((Path(p).name, [{**r, "produced_at": None} for r in pq.read_table(p).to_pylist()])
                      for p in list_parts(root, VIEW))

    skipped: list[int] = []
    for root, by_value in ((tmp_path / "rows", False), (tmp_path / "values", True)):
        clock = FakeClock()
        for batch in (values(20)[:12], values(20)[8:]):  # the second run re-emits 8..11
            writer = ParquetLogWriter(root, VIEW, roll_rows=3, clock=clock)
            for i, v in enumerate(batch):
                if by_value:
                    writer.add_value(v, input_partition=0)
                else:
                    add(writer, as_row(v))
                if i % 5 == 4:
                    writer.checkpoint()
            writer.checkpoint()
        skipped.append(writer.skipped)
    assert rows(tmp_path / "values") == rows(tmp_path / "rows")
    assert len(rows(tmp_path / "values")) > 4 and skipped[0] == skipped[1] > 0


def test_open_parts_stay_under_the_bound(tmp_path: Path) -> None:
    """Past ``max_open_rows`` the largest open parts close (down to half the bound): a checkpoint never
    rewrites more than the bound plus its new rows, and every row is written once."""
    writer = ParquetLogWriter(tmp_path, VIEW, roll_rows=1_000, roll_seconds=1e9, max_open_rows=6,
                              clock=FakeClock())
    offset = 0
    for _checkpoint in range(5):
        for partition in range(3):
            for _ in range(partition + 1):  # partition 2 grows fastest
                add(writer, row("a", DAY + offset, 1, partition, offset))
                offset += 1
        writer.checkpoint()
        assert sum(part.rows for part in writer._open.values()) <= 6
    rows = all_rows(tmp_path)
    assert sorted(r["source_offset"] for r in rows) == list(range(offset))  # each row once
    names = sorted(Path(p).name for p in list_parts(tmp_path, VIEW))
    assert len(names) > 3 and all(n.startswith(("part-0-", "part-1-", "part-2-")) for n in names)


def test_max_open_rows_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_open_rows 0 is out of range"):
        ParquetLogWriter(tmp_path, VIEW, max_open_rows=0)


def test_live_values_sealed_between_checkpoints_keep_their_order(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SEAL_ROWS values a live writer makes its open parts' pending values Arrow batches: still
    pending (a rewind forgets them), and written in the order they came, the rest converted at the
    checkpoint."""
    import freshet.pipelines.offline_sink as offline_sink
    from freshet.pipelines.tiles import EmittedValue

    monkeypatch.setattr(offline_sink, "SEAL_ROWS", 3)

    def value(i: int) -> EmittedValue:  # two source partitions: two open parts
        return EmittedValue(0, f"e{i}", DAY + i, DAY + i - 60_000, DAY + i, [i, i / 2], i % 2, 100 + i)

    writer = ParquetLogWriter(tmp_path, VIEW, clock=FakeClock())
    for i in range(8):
        writer.add_value(value(i), input_partition=0)
    assert sum(part.pending_batch_rows for part in writer._open.values()) == 6  # sealed twice, both parts
    writer.discard_uncommitted()  # sealed rows are not durable: a rewind forgets them
    assert writer.checkpoint() == 0 and all_rows(tmp_path) == []
    for i in range(10, 18):
        writer.add_value(value(i), input_partition=0)
    assert writer.checkpoint() == 8
    for i in range(18, 23):
        writer.add_value(value(i), input_partition=0)
    assert writer.checkpoint() == 5
    by_part: dict[int, list[object]] = {0: [], 1: []}
    for r in all_rows(tmp_path):
        by_part[int(r["source_partition"])].append(r["source_offset"])  # type: ignore[call-overload]
    assert by_part == {p: [100 + i for i in range(10, 23) if i % 2 == p] for p in (0, 1)}
