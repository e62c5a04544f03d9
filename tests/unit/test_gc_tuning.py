"""The drivers' collector settings: what is alive frozen on call, the whole heap collected every
FULL_EVERY calls, young garbage collected past a bound of allocations."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from freshet.pipelines.gc_tuning import FULL_EVERY, YOUNG_BOUND, checkpoint_gc


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_a_call_freezes_what_is_alive_and_cycles_wait_for_the_full_collection() -> None:
    before = gc.get_threshold()
    with checkpoint_gc() as collect:
        garbage = weakref.ref(Node())
        for _ in range(10_000):  # allocations that would trigger collections with the default thresholds
            Node()
        assert garbage() is not None  # nothing collected it yet
        frozen = gc.get_freeze_count()
        collect()
        assert gc.get_count()[0] < 100  # the young generation is empty: what was alive is frozen now
        assert gc.get_freeze_count() > frozen + 10_000
        assert garbage() is not None  # frozen with the rest: no collection walked it
        for _ in range(FULL_EVERY - 2):
            collect()
        assert garbage() is not None
        collect()  # the FULL_EVERY th call collects the whole heap, frozen objects included
        assert garbage() is None
        assert gc.get_freeze_count() > 0  # and freezes what is alive again
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0  # nothing stays frozen after the block


def test_reference_counting_still_frees_frozen_objects() -> None:
    class Plain:
        pass

    with checkpoint_gc() as collect:
        held = [Plain()]
        watched = weakref.ref(held[0])
        collect()
        del held
        assert watched() is None  # no collection needed: frozen objects are freed when unreferenced


def test_with_no_checkpoint_the_young_generation_is_collected_past_the_bound() -> None:
    """An idle live run, or a checkpoint long in coming: cyclic garbage stays bounded."""
    with checkpoint_gc():
        garbage = weakref.ref(Node())
        held = [[] for _ in range(YOUNG_BOUND + 1000)]  # net allocations past the bound
        assert garbage() is None
        del held


def test_only_every_fiftieth_call_collects_and_it_collects_the_whole_heap() -> None:
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
    assert seen == [2]


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14's incremental collector: collect(1) walks part of "
                    "the old generation too")
def test_entry_collects_only_the_young_generations_and_old_garbage_waits_for_the_full_collection() -> None:
    """Entering does not walk the whole heap (tens of ms in the CLI, inside every driver's start)."""
    gc.collect()
    held = Node()
    old = weakref.ref(held)
    gc.collect(1)  # alive: moved into the old generation
    del held  # garbage now, in the old generation: only a full collection frees it
    young = weakref.ref(Node())
    seen: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(watch)
    try:
        with checkpoint_gc() as collect:
            assert seen == [1]  # the young generations, once
            assert young() is None
            assert old() is not None  # frozen with what is alive
            for _ in range(FULL_EVERY):
                collect()
            assert old() is None  # the FULL_EVERY th call's full collection freed it
    finally:
        gc.callbacks.remove(watch)
