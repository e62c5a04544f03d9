"""The caller's SIGINT/SIGTERM handlers, put back when a run ends, for both drivers.

A live run's Quix Streams application installs handlers that stop it, and a replay installs its own
that stop its driver. Left in place after the run, a later SIGTERM only stops a run that has already
ended (a program that runs a pipeline and goes on could not be terminated), and the handlers keep
the finished run alive. ``signal`` has no scoped form of ``signal.signal``, hence this context manager.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def callers_signal_handlers() -> Iterator[None]:
    """The block may install its own SIGINT/SIGTERM handlers; on leaving it the ones before it are back.
    Off the main thread, where no handler can be set, it does nothing; a handler set outside Python
    (``getsignal`` gives None) is left as the block left it."""
    saved = ([(signum, signal.getsignal(signum)) for signum in STOP_SIGNALS]
             if threading.current_thread() is threading.main_thread() else [])
    try:
        yield
    finally:
        for signum, handler in saved:
            if handler is not None:
                signal.signal(signum, handler)
