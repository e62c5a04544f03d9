"""A checkpoint's file writes in a background thread, in order, for both drivers.

A checkpoint writes the log parts that changed and the last-flush manifests; the replay driver then
commits the worker's states and read positions (:class:`~freshet.replay.driver.BatchDriver`). Building
those belongs to the driver's thread (the writers' bookkeeping, the states serialised as they are now);
the writes themselves (Parquet encoding, compression, the file system or S3, RocksDB) are handed to one
background thread here. Parquet encoding and compression release the GIL, so on a machine with a
second core they cost the driver's thread little:

- the replay driver reads and runs the next batch meanwhile, and waits at its next checkpoint;
- the live run writes the window states back into Quix's transaction meanwhile and waits before its
  checkpoint ends (:meth:`freshet.pipelines.outputs.OperatorOutputs.finish_flush`), so offsets are
  still committed only after the log holds what they cover. A live checkpoint holds up the input, so
  this shortens it.

The guarantees are those of writing in line:

- one thread runs the jobs first in, first out, so a checkpoint's positions are committed only after
  its log files and manifests are written;
- after a job fails, the later ones do not run (positions are never committed past a failed write),
  and the error is raised in the driver at its next :meth:`BackgroundWrites.wait`;
- a driver waits for checkpoint N's jobs before it makes checkpoint N+1 (the live run: before
  checkpoint N ends), and before it reports a replay finished.

``concurrent.futures`` gives the thread; what it does not give is stopping the queue after a failure,
hence the small wrapper.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import pyarrow as pa

from freshet.features.log_store import LogRoot

log = logging.getLogger("freshet.checkpoint")


class BackgroundWrites:
    """One background thread running jobs in order; a failed job cancels the ones after it."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="freshet-checkpoint")
        self._pending: list[Future[None]] = []
        self._failed: BaseException | None = None

    def submit(self, job: Callable[[], object]) -> None:
        self._pending.append(self._pool.submit(self._run, job))

    def _run(self, job: Callable[[], object]) -> None:
        if self._failed is not None:
            return  # a write before this one failed: nothing after it may land
        try:
            job()
        except BaseException as exc:
            self._failed = exc
            raise

    def wait(self) -> None:
        """Until every job submitted so far has run; raises the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()
        if self._failed is not None:
            raise self._failed

    def close(self) -> None:
        """Let the submitted jobs finish, then stop the thread. A failure is logged, not raised (the
        caller is ending, perhaps because of another error; :meth:`wait` is where failures are raised)."""
        try:
            self.wait()
        except Exception as exc:  # noqa: BLE001 - reported, and the run that called close already failed or ended
            log.error("a checkpoint write failed while the run was closing: %s", str(exc))
        finally:
            self._pool.shutdown(wait=True)


class BackgroundLogRoot(LogRoot):
    """A log root whose file writes are :class:`BackgroundWrites` jobs; everything else is the root's."""

    _writes: BackgroundWrites

    @classmethod
    def wrap(cls, root: LogRoot, writes: BackgroundWrites) -> BackgroundLogRoot:
        wrapped = cls(root.fs, root.base, root.scheme, root.endpoint)
        object.__setattr__(wrapped, "_writes", writes)  # LogRoot is a frozen dataclass
        return wrapped

    def write_parquet(self, path: str, table: pa.Table, *, compression: str = "zstd") -> None:
        self._writes.submit(partial(LogRoot.write_parquet, self, path, table, compression=compression))

    def write_text(self, path: str, text: str) -> None:
        self._writes.submit(partial(LogRoot.write_text, self, path, text))
