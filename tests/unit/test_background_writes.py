"""Background checkpoint writes (the replay's and the live run's): in order, nothing after a failed write, the failure raised."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.features.errors import OfflineStoreError
from freshet.features.log_store import open_log_root
from freshet.pipelines.background_writes import BackgroundLogRoot, BackgroundWrites
from freshet.pipelines.outputs import OperatorOutputs, make_outputs
from freshet.pipelines.stats import PipelineStats
from freshet.pipelines.tiles import EmittedValue


def _spend_view() -> FeatureView:
    source = Source(name="tx", topic="tx", key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "ts": "int"})
    return FeatureView(name="spend", source=source, window=TumblingWindow(size="1m"), emit="current",
                       aggregations=[Aggregation(function="sum", column="amount", name="total")])


def _live_outputs(root: Path) -> OperatorOutputs:
    """The live run's outputs: log files written by a BackgroundWrites thread that finish_flush waits for."""
    return make_outputs([_spend_view()], {"bootstrap.servers": "127.0.0.1:9", "log_level": 0}, PipelineStats(),
                        redis_url=None, offline_root=root, background=BackgroundWrites())


def _log_parts(root: Path) -> list[Path]:
    return sorted(root.rglob("part-*.parquet"))


def test_jobs_run_in_order_in_another_thread() -> None:
    writes = BackgroundWrites()
    done: list[tuple[int, str]] = []
    for i in range(50):
        writes.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    writes.wait()
    assert [i for i, _name in done] == list(range(50))
    assert all(name.startswith("freshet-checkpoint") for _i, name in done)
    writes.close()


def test_a_failed_job_stops_the_ones_after_it_and_is_raised_at_wait() -> None:
    writes = BackgroundWrites()
    ran: list[str] = []
    gate = threading.Event()
    writes.submit(gate.wait)  # the later jobs are queued before the failure happens
    writes.submit(lambda: ran.append("parts"))
    writes.submit(lambda: (_ for _ in ()).throw(OfflineStoreError("the bucket is gone")))
    writes.submit(lambda: ran.append("commit"))  # a checkpoint's state commit: must not land
    gate.set()
    with pytest.raises(OfflineStoreError, match="the bucket is gone"):
        writes.wait()
    assert ran == ["parts"]
    writes.submit(lambda: ran.append("next checkpoint"))
    with pytest.raises(OfflineStoreError):
        writes.wait()
    assert ran == ["parts"]
    writes.close()  # logs, does not raise


def test_the_root_writes_files_only_when_the_jobs_run(tmp_path: Path) -> None:
    writes = BackgroundWrites()
    gate = threading.Event()
    writes.submit(gate.wait)
    root = BackgroundLogRoot.wrap(open_log_root(tmp_path), writes)
    assert root.uri == tmp_path.as_posix() and open_log_root(root) is root
    root.write_parquet(root.join("a", "part.parquet"), pa.table({"x": [1, 2]}))
    root.write_text(root.join("a", "_last_flush-0.json"), "{}")
    assert not root.is_file(root.join("a", "part.parquet"))
    gate.set()
    writes.wait()
    assert root.read_parquet(root.join("a", "part.parquet")).column("x").to_pylist() == [1, 2]
    assert root.read_text(root.join("a", "_last_flush-0.json")) == "{}"
    writes.close()


class _Message:
    """What the replay driver reads of a confluent-kafka message."""

    def __init__(self, offset: int, ts: int) -> None:
        self._offset, self._ts = offset, ts

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"c1"

    def value(self) -> bytes:
        return json.dumps({"card_id": "c1", "amount": 1.0, "ts": self._ts}).encode()

    def timestamp(self) -> tuple[int, int]:
        return 1, self._ts  # TIMESTAMP_CREATE_TIME


def test_a_replay_checkpoint_whose_log_write_fails_saves_no_position(tmp_path: Path) -> None:
    """The driver moves on while its checkpoint is written; when the log write fails, the states and
    positions queued after it are not committed and the failure stops the replay at its next wait."""
    from freshet.replay.driver import BatchDriver, StateStore

    view = _spend_view()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log's directory would be")
    driver = BatchDriver([view], {"bootstrap.servers": "127.0.0.1:9", "log_level": 0}, topic="tx",
                         start={0: 0}, end={0: 100}, state_dir=tmp_path / "state",
                         offline_root=blocker / "offline", redis_url=None, check_keys=False)
    positions, todo = {0: 0}, {0}
    driver._apply_batch([_Message(i, 1_700_000_000_000 + i) for i in range(5)], positions, todo, None)
    assert positions == {0: 5}
    driver._checkpoint(positions)  # queued: the driver could read on here
    with pytest.raises(OfflineStoreError):
        driver._durable()
    driver.close()
    store = StateStore(tmp_path / "state", read_only=True)
    assert store.positions() == {} and store.get("c1") is None
    store.close()


def test_a_live_flush_writes_the_log_in_the_background_and_finishes_only_once_it_is_written(
        tmp_path: Path) -> None:
    """start_flush hands the files to the thread; finish_flush (after the states are written back) waits."""
    outputs = _live_outputs(tmp_path)
    gate = threading.Event()
    outputs.writes.submit(gate.wait)  # holds the thread: the log's files wait behind it
    outputs.emit(EmittedValue(0, "c1", 1_700_000_000_000, 1_699_999_980_000, 1_700_000_040_000, [3.5], 0, 7), 0)
    outputs.start_flush()
    assert _log_parts(tmp_path) == []  # handed over, not written yet
    gate.set()
    outputs.finish_flush()
    [part] = _log_parts(tmp_path)
    assert part.name == "part-0-7.parquet"
    assert open_log_root(tmp_path).read_parquet(part.as_posix()).column("total").to_pylist() == [3.5]
    outputs.close()


def test_a_live_flush_whose_log_write_fails_raises_at_its_end(tmp_path: Path) -> None:
    """The checkpoint fails (Quix commits no offsets) rather than end with the log missing its rows."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log's directory would be")
    outputs = _live_outputs(blocker / "offline")
    outputs.emit(EmittedValue(0, "c1", 1_700_000_000_000, 1_699_999_980_000, 1_700_000_040_000, [3.5], 0, 7), 0)
    outputs.start_flush()  # hands the writes over and returns
    with pytest.raises(OfflineStoreError):
        outputs.finish_flush()
    outputs.close()  # logs the failure, does not raise


class _RecordingOnline:
    """Stands in for the Redis writer: records the calls the outputs make (and when the log was there)."""

    def __init__(self, log_root: Path) -> None:
        self.calls: list[str] = []
        self.parts_at_landing: list[int] = []
        self._root = log_root

    def add(self, *_args: object) -> None:
        self.calls.append("add")

    def flush(self) -> None:
        self.calls.append("flush")

    def log_checkpoint_started(self) -> None:
        self.calls.append("started")

    def log_checkpointed(self) -> None:
        self.calls.append("landed")
        self.parts_at_landing.append(len(_log_parts(self._root)))

    def close(self) -> None:
        self.calls.append("close")


def test_a_replay_tells_redis_the_log_holds_its_values_only_once_the_files_landed(tmp_path: Path) -> None:
    """With --online, the writer keeps what it sent (to put back after a refill from the log) until the
    log's files are written: the driver says so after its next wait, not when it hands the files over."""
    from freshet.replay.driver import BatchDriver

    driver = BatchDriver([_spend_view()], {"bootstrap.servers": "127.0.0.1:9", "log_level": 0}, topic="tx",
                         start={0: 0}, end={0: 100}, state_dir=tmp_path / "state",
                         offline_root=tmp_path / "offline", redis_url=None, check_keys=False)
    online = _RecordingOnline(tmp_path / "offline")
    driver._outputs.online = online  # type: ignore[assignment]
    gate = threading.Event()
    start_flush = driver._outputs.start_flush

    def held_start_flush() -> None:  # after the checkpoint's first wait: its files queue behind the gate
        driver._writes.submit(gate.wait)
        start_flush()

    driver._outputs.start_flush = held_start_flush  # type: ignore[method-assign]
    positions, todo = {0: 0}, {0}
    driver._apply_batch([_Message(i, 1_700_000_000_000 + i) for i in range(5)], positions, todo, None)
    driver._checkpoint(positions)
    assert online.calls[-2:] == ["flush", "started"] and "landed" not in online.calls
    assert _log_parts(tmp_path / "offline") == []
    gate.set()
    driver._durable()
    assert online.calls[-1] == "landed" and online.parts_at_landing == [1]
    driver.close()
