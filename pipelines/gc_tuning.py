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
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
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
