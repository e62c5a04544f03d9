"""The replay's background checkpoint writes: in order, nothing after a failed write, the failure raised."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from freshet.features.errors import OfflineStoreError
from freshet.features.log_store import open_log_root
from freshet.replay.checkpoint_writes import BackgroundLogRoot, BackgroundWrites


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
