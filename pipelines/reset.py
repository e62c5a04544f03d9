"""Start a source's live processing over: what `freshet reset` does after the source's history changed.

A consumer group's progress lives in four places, all of which belong to the old history once a topic
was deleted and recreated (or a broker came back empty): its committed offsets, its window state
(the state directory, and Quix Streams' changelog topics that restore it), its repartition topic, and
the Parquet log written from it, whose file names (``part-<partition>-<first offset>``) the new
history would reuse. A reset deletes the first three and moves the log of each of the source's
views (and the accepted-event log of each request-time view) aside to
``v<version>.before-reset-<UTC time>`` next to it (kept, no longer read), so the next
run starts from the topic's beginning with nothing of the old history and overwrites no file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from freshet.features.as_of_layout import accepted_dir
from freshet.features.definitions import FeatureView
from freshet.features.errors import PipelineError
from freshet.features.log_store import LogRoot, RootLike, open_log_root
from freshet.features.offline_layout import view_dir
from freshet.infra.topics import cluster_metadata


@dataclass
class ResetPlan:
    group: str
    state_dir: Path
    internal_topics: list[str]
    logs: list[tuple[str, str]]  # (current log directory, where it moves), in ``root``
    root: LogRoot | None = None
    done: list[str] = field(default_factory=list)


def internal_topics(topics: list[str], group: str) -> list[str]:
    """Quix Streams' topics of one consumer group: ``changelog__<group>--...`` and ``repartition__<group>--...``."""
    return sorted(t for t in topics if t.startswith((f"changelog__{group}--", f"repartition__{group}--")))


def plan_reset(kafka_config: dict[str, Any], views: list[FeatureView], *, group: str, state_root: Path,
               offline_root: RootLike | None, now: datetime | None = None) -> ResetPlan:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    topics = list(cluster_metadata(kafka_config, timeout_s=15).topics)
    logs = []
    root = open_log_root(offline_root) if offline_root is not None else None
    if root is not None:
        for view in views:  # the values log, and a request-time view's accepted-event log
            for current in (view_dir(root, view), accepted_dir(root, view)):
                if root.is_dir(current):
                    logs.append((current, f"{current}.before-reset-{stamp}"))
    return ResetPlan(group, state_root / group, internal_topics(topics, group), logs, root)


def apply_reset(kafka_config: dict[str, Any], plan: ResetPlan) -> ResetPlan:
    """Carry the plan out; stops at the first step that fails (each says what to do), none is half done."""
    admin = AdminClient(kafka_config)
    try:
        admin.delete_consumer_groups([plan.group], request_timeout=15)[plan.group].result()
        plan.done.append(f"deleted consumer group {plan.group} (its committed offsets)")
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        code = error.code() if isinstance(error, KafkaError) else None
        if code == KafkaError.GROUP_ID_NOT_FOUND:
            plan.done.append(f"consumer group {plan.group} had no committed offsets")
        elif code == KafkaError.NON_EMPTY_GROUP:
            raise PipelineError(f"consumer group {plan.group} still has members: stop every `freshet run` of it "
                                "first, then reset") from None
        else:
            raise PipelineError(f"cannot delete consumer group {plan.group}: {exc}") from None
    if plan.internal_topics:
        for topic, future in admin.delete_topics(plan.internal_topics, operation_timeout=15).items():
            try:
                future.result()
            except KafkaException as exc:
                raise PipelineError(f"cannot delete internal topic {topic}: {exc}") from None
        plan.done.append(f"deleted {len(plan.internal_topics)} internal topic(s) (window state changelog, "
                         "repartition)")
    if plan.state_dir.exists():
        shutil.rmtree(plan.state_dir)
        plan.done.append(f"removed window state {plan.state_dir}")
    for current, aside in plan.logs:
        if plan.root is None:
            break
        plan.root.move_dir(current, aside)
        plan.done.append(f"moved log {plan.root.display(current)} -> {plan.root.display(aside)}")
    return plan
