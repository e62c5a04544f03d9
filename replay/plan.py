"""A replay plan: which views, which offsets, which group and state; saved so a rerun resumes it.

The end is fixed when the plan is made: the true end offsets (see
:class:`freshet.pipelines.offsets.EndOffsetProbe`, which does not trust the broker's
reported watermark), or the offsets for ``--to``. The plan is written to
``<offline root>/_replays/<id>.json``; the same command after a crash finds the
unfinished plan and resumes it (same end offsets, workers and state),
so the log ends up equal to an uninterrupted replay's.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import BaseModel

from freshet.features.definitions import FeatureView
from freshet.features.durations import parse_event_time_ms
from freshet.features.errors import ReplayError, ReplayUsageError
from freshet.features.log_store import LogRoot, RootLike, open_log_root
from freshet.pipelines.decode import DEFAULT_MAX_EVENT_AHEAD_MS
from freshet.pipelines.history import topic_id
from freshet.pipelines.offsets import EndOffsetProbe, consumer_config


class ReplayPlan(BaseModel):
    plan_id: str
    topic: str
    partitions: int
    views: list[tuple[str, int]]
    from_spec: str
    to_spec: str
    start: dict[int, int]
    end: dict[int, int]
    group: str
    state_dir: str
    offline_root: str  # a directory or s3://bucket/prefix
    online: bool
    rekey: bool
    created_at: str
    workers: int = 1  # partition p belongs to worker p % workers
    max_event_ahead_ms: int = DEFAULT_MAX_EVENT_AHEAD_MS  # fixed with the plan, so a resume decides the same
    topic_id: str | None = None  # the topic's id when planned: a resume refuses a recreated topic
    status: str = "running"  # running | done
    finished_at: str | None = None
    s3_endpoint: str | None = None  # where an s3:// offline_root is served (not a secret)

    @property
    def total(self) -> int:
        return sum(max(0, self.end[p] - self.start[p]) for p in self.end)

    def log_root(self) -> LogRoot:
        return open_log_root(self.offline_root, s3_endpoint=self.s3_endpoint)

    def path(self) -> str:
        root = self.log_root()
        return root.display(f"{plan_dir(root)}/{self.plan_id}.json")

    def save(self) -> None:
        root = self.log_root()
        root.write_text(f"{plan_dir(root)}/{self.plan_id}.json", self.model_dump_json(indent=2))

    def mark_done(self) -> None:
        self.status = "done"
        self.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.save()


def plan_dir(offline_root: LogRoot) -> str:
    return offline_root.join("_replays")


def plan_key(views: list[FeatureView], from_spec: str, to_spec: str) -> str:
    text = json.dumps([sorted((v.name, v.version) for v in views), from_spec, to_spec])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def find_plans(offline_root: RootLike) -> list[ReplayPlan]:
    root = open_log_root(offline_root)
    plans = []
    for path in root.files(plan_dir(root)):
        name = root.name(path)
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            plans.append(ReplayPlan.model_validate_json(root.read_text(path)))
        except ValueError as exc:
            raise ReplayError(f"{root.display(path)} is not a valid replay plan ({exc}); delete it to "
                              "continue") from exc
    return plans


def load_plan(offline_root: RootLike, plan_id: str) -> ReplayPlan:
    """The plan ``plan_id`` saved under the root (how a replay's worker processes find it)."""
    root = open_log_root(offline_root)
    path = f"{plan_dir(root)}/{plan_id}.json"
    try:
        return ReplayPlan.model_validate_json(root.read_text(path))
    except ValueError as exc:
        raise ReplayError(f"{root.display(path)} is not a valid replay plan ({exc})") from exc


def check_resumable(kafka_config: dict[str, Any], plan: ReplayPlan) -> None:
    """Refuse to resume a plan whose topic changed since it was made (deleted and recreated, or a broker
    back empty): its offsets and the log written so far belong to the old history."""
    current = topic_id(kafka_config, plan.topic)
    changed = plan.topic_id is not None and current is not None and current != plan.topic_id
    if not changed:
        probe = EndOffsetProbe(kafka_config)
        try:
            ends = probe.end_offsets((plan.topic, p) for p in plan.end)
            changed = any(ends[(plan.topic, p)] < end for p, end in plan.end.items())
        except KafkaException:  # the topic is gone (a broker back empty): its history changed too
            changed = True
        finally:
            probe.close()
    if changed:
        raise ReplayError(
            f"topic {plan.topic!r} changed since replay {plan.plan_id} was planned ({plan.created_at}): it was "
            "deleted and recreated, or the broker lost its data, so the plan's offsets and the log it wrote "
            f"belong to the old history. Delete {plan.path()} and run the replay again with --replace "
            "(which rebuilds the views' logs from the new history).")


def find_unfinished(offline_root: RootLike, key: str) -> ReplayPlan | None:
    for plan in find_plans(offline_root):
        if plan.status != "done" and plan.plan_id.startswith(key):
            return plan
    return None


def parse_time_spec(spec: str, what: str) -> int | None:
    """None for 'earliest'/'end', else epoch ms by the one time grammar (epoch ms, ISO-8601; naive = UTC)."""
    if spec in ("earliest", "end"):
        return None
    try:
        return parse_event_time_ms(spec)
    except ValueError:
        raise ReplayUsageError(f"{what} {spec!r} is not 'earliest'/'end', epoch milliseconds or an ISO-8601 "
                               "time such as 2026-11-22T10:00:00Z") from None


def offsets_for_time(kafka_config: dict[str, Any], topic: str, partitions: int, ts_ms: int,
                     fallback: dict[int, int]) -> dict[int, int]:
    """First offset whose log timestamp is >= ts_ms, per partition (fallback where there is none)."""
    consumer = Consumer(consumer_config(kafka_config, purpose="plan"))
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, ts_ms) for p in range(partitions)], timeout=15)
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else fallback[tp.partition]) for tp in found}


def make_plan(kafka_config: dict[str, Any], views: list[FeatureView], *, from_spec: str, to_spec: str,
              offline_root: LogRoot, state_root: Path, online: bool, rekey: bool,
              workers: int = 1, max_event_ahead_ms: int = DEFAULT_MAX_EVENT_AHEAD_MS) -> ReplayPlan:
    source = views[0].source
    from_ms = parse_time_spec(from_spec, "--from")
    to_ms = parse_time_spec(to_spec, "--to")
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ReplayUsageError(f"--to {to_spec} is not after --from {from_spec}")
    probe = EndOffsetProbe(kafka_config)
    try:
        ends = probe.end_offsets((source.topic, p) for p in range(source.partitions))
        lows = _low_offsets(kafka_config, source.topic, source.partitions)
    finally:
        probe.close()
    true_end = {p: ends[(source.topic, p)] for p in range(source.partitions)}
    end = true_end if to_ms is None else offsets_for_time(kafka_config, source.topic, source.partitions, to_ms, true_end)
    start = lows if from_ms is None else offsets_for_time(kafka_config, source.topic, source.partitions, from_ms, true_end)
    start = {p: min(start[p], end[p]) for p in end}
    key = plan_key(views, from_spec, to_spec)
    plan_id = f"{key}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    group = f"freshet-replay-{plan_id}"
    return ReplayPlan(
        plan_id=plan_id, topic=source.topic, partitions=source.partitions,
        views=[(v.name, v.version) for v in views], from_spec=from_spec, to_spec=to_spec,
        start=start, end=end, group=group, state_dir=str(state_root / group),
        offline_root=offline_root.uri, s3_endpoint=offline_root.endpoint, online=online, rekey=rekey, workers=workers,
        max_event_ahead_ms=max_event_ahead_ms, topic_id=topic_id(kafka_config, source.topic),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _low_offsets(kafka_config: dict[str, Any], topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer(consumer_config(kafka_config, purpose="plan"))
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in range(partitions)}
    finally:
        consumer.close()
