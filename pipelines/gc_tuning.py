"""Garbage-collector settings for the drivers' hot loops.

Both drivers allocate a few short-lived objects per event (the decoded dict, emitted
values, output rows) while they keep many long-lived ones (every key's window state,
the imported libraries). With CPython's default thresholds ``(700, 10, 10)`` the
collector walks the whole heap every ~70,000 net allocations; measured on the example
views (100,000 synthetic events decoded and run through the operator in one process)
that was about a quarter of the per-event time: 37 us an event, 28 us with these settings. Reference counting frees everything
the operator drops (its state holds no reference cycles), so older generations are
collected less often, and what exists when the loop starts (modules, definitions) is
moved out of the collector's sight with :func:`gc.freeze`. Nothing in the standard
library or a package does this for a caller, hence this module.

Both drivers go further (:func:`checkpoint_gc`): between two checkpoints they hold each
event's outputs (values, accepted events, Redis writes) until the checkpoint writes them, so every one
of those survives the young collections and is walked twice (measured on the example views: 144 ms
of collections per 100,000 events, about 6% of the replay's time). Their loops run with automatic
collection off; after each checkpoint, once the outputs are released, the young generations are
collected (what is still alive then is little: the states' new rows), and the whole heap every
:data:`FULL_EVERY` checkpoints, so cyclic garbage, which the per-event path does not make, still
cannot pile up.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# the young generation as by default; the middle and old ones 2x and 10x less often
LOOP_THRESHOLDS = (700, 20, 100)


@contextmanager
def throughput_gc() -> Iterator[None]:
    """Run the block with :data:`LOOP_THRESHOLDS` and start-up objects frozen; restore afterwards."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*LOOP_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


FULL_EVERY = 50  # checkpoints between two collections of the whole heap under checkpoint_gc


@contextmanager
def checkpoint_gc() -> Iterator[Callable[[], None]]:
    """Run the block with automatic collection off and start-up objects frozen; the function it gives
    collects the young generations (each :data:`FULL_EVERY` th call: all of them). Call it when what the
    loop held since the previous call has been released (the replay driver: after each checkpoint)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    calls = 0

    def collect() -> None:
        nonlocal calls
        calls += 1
        gc.collect(2 if calls % FULL_EVERY == 0 else 1)

    try:
        yield collect
    finally:
        if was_enabled:
            gc.enable()
        gc.unfreeze()
