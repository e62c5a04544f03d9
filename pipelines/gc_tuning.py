"""Garbage-collector settings for the drivers' hot loops.

Both drivers allocate a few short-lived objects per event (the decoded dict, emitted
values, output rows) while they keep many long-lived ones (every key's window state,
the imported libraries). With CPython's default thresholds ``(700, 10, 10)`` the
collector walks the whole heap every ~70,000 net allocations; measured on the example
views (100,000 synthetic events decoded and run through the operator in one process)
that was about a quarter of the per-event time (37 us an event, 28 us with fewer
collections of the older generations). Reference counting frees everything the operator
drops (its state holds no reference cycles), and what exists when the loop starts
(modules, definitions) is moved out of the collector's sight with :func:`gc.freeze`.

Between two checkpoints the drivers also hold each event's outputs (values, accepted
events, Redis writes) until the checkpoint writes them, so every one of those survived
the young collections and was walked twice (on the example views: 144 ms of collections
per 100,000 events, about 6% of the replay's time). A young collection at each checkpoint,
once the outputs were released, still cost 67-93 ms a checkpoint in the replay (the window
states' new objects, about 105,000 lists scattered in memory, walked three times each) and
collected nothing: reference counting had freed it all. So at each checkpoint
:func:`checkpoint_gc`'s function *freezes* what is alive instead (:func:`gc.freeze`: moved out of
the collector's sight in constant time; reference counting still frees it), and every
:data:`FULL_EVERY` th call it unfreezes and collects the whole heap first. Automatic collection
runs only after :data:`YOUNG_BOUND` net allocations (a checkpoint long in coming, an idle live
run). Cyclic garbage, which the per-event path does not make (the live run's checkpoint
collections found 0-129 objects each), so waits at most ``FULL_EVERY`` checkpoints. On the
example repository the replay went from 38,760-45,297 to 41,861-48,076 events/s (five runs each,
alternating, by hand: ``freshet replay --workers 1`` on the benchmark's 100,000-event topic).
Nothing in the standard library or a package does this for a caller, hence this module.

On entry only the young generations are collected before the freeze. A collection of the whole heap
there (the CLI's: about 96,000 objects after its imports) took 55-57 ms and found nothing, and it was
paid inside every replay worker's and live run's start, between building the driver and its first
batch (by hand: ``python -c 'import freshet.cli, ...; gc.collect()'``, three calls). Cyclic garbage of
the old generation that exists on entry is frozen with the rest and freed at the first full collection
(the :data:`FULL_EVERY` th call) or, after the block, by the collector's own runs. (CPython 3.14's
incremental collector has two generations and ``gc.collect(1)`` also walks part of the old one there:
a little more work on entry, the same guarantees.)
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FULL_EVERY = 50  # checkpoints between two collections of the whole heap under checkpoint_gc
# net allocations of tracked objects after which the young generation is collected anyway: far more
# than a checkpoint interval holds (the replay at 2 s holds about 600,000 on the example views)
YOUNG_BOUND = 2_000_000


@contextmanager
def checkpoint_gc() -> Iterator[Callable[[], None]]:
    """Run the block with start-up objects frozen and automatic collection only past :data:`YOUNG_BOUND`
    net allocations; the function it gives freezes what is alive (each :data:`FULL_EVERY` th call: after
    collecting the whole heap). Call it when what the loop held since the previous call has been
    released (the drivers: after each checkpoint's flush)."""
    before = gc.get_threshold()
    gc.collect(1)  # the young generations only: see the module's last paragraph
    gc.freeze()
    gc.set_threshold(YOUNG_BOUND, 1000, 1000)
    calls = 0

    def collect() -> None:
        nonlocal calls
        calls += 1
        if calls % FULL_EVERY == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()

    try:
        yield collect
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
