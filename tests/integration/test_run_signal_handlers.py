"""A finished run gives the process its signal handlers back (real broker and Redis).

Quix Streams installs SIGINT/SIGTERM handlers that stop its application. Left in place after the
run, a later SIGTERM only stops an application that already stopped (a program that runs a
pipeline and goes on could not be terminated), and the handlers keep the finished application,
its Kafka clients and the run's outputs alive.
"""

from __future__ import annotations

import gc
import signal
import weakref
from pathlib import Path
from types import FrameType

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.pipelines.runner import run_pipeline
from freshet.pipelines.topology import build_pipeline
from tests.integration.conftest import Servers
from tests.integration.harness import pipeline_config, produce, provision


def test_a_finished_run_puts_back_the_callers_signal_handlers(servers: Servers, unique: str,
                                                             tmp_path: Path) -> None:
    topic = f"signals-{unique}"
    source = Source(name="tx", topic=topic, partitions=1, key="card_id", timestamp="ts",
                    schema={"card_id": "str", "amount": "float", "ts": "int"})
    view = FeatureView(name="spend", source=source, window=TumblingWindow(size="1m"), emit="current",
                       aggregations=[Aggregation(function="sum", column="amount", name="total")])
    provision(servers, topic, 1)
    produce(servers, topic, [(0, "c1", {"card_id": "c1", "amount": 2.5, "ts": 1_700_000_000_000 + i})
                             for i in range(3)])
    received: list[int] = []

    def mine(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    sigint_before = signal.getsignal(signal.SIGINT)
    sigterm_before = signal.signal(signal.SIGTERM, mine)
    try:
        pipeline = build_pipeline([view], pipeline_config(servers, tmp_path, f"signals-{unique}", rekey=False))
        application = weakref.ref(pipeline.app)
        stats = run_pipeline(pipeline, until_caught_up=True)
        assert stats["windowed"] == 3  # it ran: Quix Streams installed its handlers meanwhile
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is sigint_before
        signal.raise_signal(signal.SIGTERM)
        assert received == [signal.SIGTERM]
        del pipeline
        gc.collect()
        assert application() is None, "the finished application is still referenced"
    finally:
        signal.signal(signal.SIGTERM, sigterm_before)
