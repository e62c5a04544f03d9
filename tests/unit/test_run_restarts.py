"""`freshet run` restarts from its last commit when Quix Streams hands a changelog record to processing."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from freshet import commands_run
from freshet.pipelines.stats import PipelineStats


def test_a_changelog_record_in_processing_restarts_from_the_last_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = PipelineStats()
    outcomes: list[Any] = [KeyError("changelog__g--repartition.g.rekey_card_id--default"), {"read": 10}]
    built: list[PipelineStats] = []

    def build(views: Any, config: Any, run_stats: PipelineStats) -> str:
        built.append(run_stats)
        return "pipeline"

    read_at_start: list[int] = []

    def run(pipeline: str, **_: Any) -> Any:
        read_at_start.append(stats.read)
        stats.read = 7  # counted after the last commit, then lost with the failed attempt
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr("freshet.pipelines.topology.build_pipeline", build)
    monkeypatch.setattr("freshet.pipelines.runner.run_pipeline", run)
    stats.read = 3
    stats.mark()
    args = argparse.Namespace(until_caught_up=True, progress_interval=5.0)
    assert commands_run._run_restarting([], object(), stats, args) == {"read": 10}
    assert built == [stats, stats]  # the same counters carry over
    assert read_at_start == [3, 3]  # rewound to the last commit before the restart


def test_other_failures_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def run(pipeline: str, **_: Any) -> Any:
        calls.append(1)
        raise KeyError("something else")

    monkeypatch.setattr("freshet.pipelines.topology.build_pipeline", lambda *a: "pipeline")
    monkeypatch.setattr("freshet.pipelines.runner.run_pipeline", run)
    with pytest.raises(KeyError, match="something else"):
        commands_run._run_restarting([], object(), PipelineStats(), argparse.Namespace(until_caught_up=True,
                                                                                      progress_interval=5.0))
    assert calls == [1]
