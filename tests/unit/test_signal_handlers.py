"""The caller's SIGINT/SIGTERM handlers come back after a block that set its own (both drivers)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytest

from freshet.pipelines.signal_handlers import callers_signal_handlers


def _mine(_signum: int, _frame: FrameType | None) -> None:
    pass


def _theirs(_signum: int, _frame: FrameType | None) -> None:
    pass


def test_the_handlers_before_the_block_are_back_after_it_even_when_it_fails() -> None:
    before_int = signal.getsignal(signal.SIGINT)
    before_term = signal.signal(signal.SIGTERM, _mine)
    try:
        with pytest.raises(RuntimeError), callers_signal_handlers():
            signal.signal(signal.SIGTERM, _theirs)
            signal.signal(signal.SIGINT, _theirs)
            raise RuntimeError("the run failed")
        assert signal.getsignal(signal.SIGTERM) is _mine
        assert signal.getsignal(signal.SIGINT) is before_int
    finally:
        signal.signal(signal.SIGTERM, before_term)


def test_off_the_main_thread_it_does_nothing() -> None:
    errors: list[BaseException] = []

    def block() -> None:
        try:
            with callers_signal_handlers():
                pass
        except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
            errors.append(exc)

    worker = threading.Thread(target=block)
    worker.start()
    worker.join()
    assert errors == []
