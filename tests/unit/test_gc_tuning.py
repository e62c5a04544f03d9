"""The replay driver's collector settings: no automatic collection in the loop, young garbage collected on call."""

from __future__ import annotations

import gc
import weakref

from freshet.pipelines.gc_tuning import FULL_EVERY, checkpoint_gc


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_cycles_wait_for_the_checkpoint_collection_and_settings_come_back() -> None:
    was = gc.isenabled()
    with checkpoint_gc() as collect:
        assert not gc.isenabled()
        garbage = weakref.ref(Node())
        for _ in range(10_000):  # allocations that would trigger automatic collections
            Node()
        assert garbage() is not None  # nothing collected it yet
        collect()
        assert garbage() is None
    assert gc.isenabled() == was


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
