"""The drivers' collector settings: young garbage collected on call, or past a bound of allocations."""

from __future__ import annotations

import gc
import weakref

from freshet.pipelines.gc_tuning import FULL_EVERY, YOUNG_BOUND, checkpoint_gc


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_cycles_wait_for_the_checkpoint_collection_and_settings_come_back() -> None:
    before = gc.get_threshold()
    with checkpoint_gc() as collect:
        garbage = weakref.ref(Node())
        for _ in range(10_000):  # allocations that would trigger collections with the default thresholds
            Node()
        assert garbage() is not None  # nothing collected it yet
        collect()
        assert garbage() is None
    assert gc.get_threshold() == before


def test_with_no_checkpoint_the_young_generation_is_collected_past_the_bound() -> None:
    """An idle live run, or a checkpoint long in coming: cyclic garbage stays bounded."""
    with checkpoint_gc():
        garbage = weakref.ref(Node())
        held = [[] for _ in range(YOUNG_BOUND + 1000)]  # net allocations past the bound
        assert garbage() is None
        del held


def test_every_fiftieth_call_collects_the_whole_heap() -> None:
    seen: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    with checkpoint_gc() as collect:
        gc.callbacks.append(watch)
        try:
            for _ in range(FULL_EVERY):
                collect()
        finally:
            gc.callbacks.remove(watch)
    assert seen == [1] * (FULL_EVERY - 1) + [2]
