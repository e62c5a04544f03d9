"""Refuse to run on a topic whose history changed under the run's state (deleted and recreated, or a
broker that came back empty).

Two signs, either is enough: the topic's id (Kafka topic ids; a recreated topic gets a new one)
differs from the one recorded in the state directory when the state was started; or the group's
committed offset for a partition is past the partition's end (the records it counted are gone).
Running on would re-read the new records with the old window state: events silently dropped as
"already seen" and log files overwritten. So the run stops and says how to start over.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from freshet.features.errors import PipelineError
from freshet.pipelines.offsets import EndOffsetProbe, consumer_config

log = logging.getLogger(__name__)
IDENTITY_FILE = "freshet-source.json"


def topic_id(kafka_config: dict[str, Any], topic: str) -> str | None:
    """The topic's id, or None where the broker does not give one."""
    admin = AdminClient(kafka_config)  # kept referenced until the answer: a collected client cancels it
    try:
        found = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=10)
    except Exception as exc:  # an old broker or no permission: the offset check still runs
        log.info("no topic id for %s (%s): the history check uses offsets only", topic, str(exc))
        return None
    return str(found.topic_id) if found.topic_id is not None else None


def check_history(kafka_config: dict[str, Any], group: str, topic: str, partitions: int, *,
                  state_dir: Path, restart_hint: str) -> None:
    """Raise PipelineError if the topic's history changed under ``state_dir``; record its identity otherwise."""
    current = topic_id(kafka_config, topic)
    record = state_dir / IDENTITY_FILE
    if current is not None and record.exists():
        known = json.loads(record.read_text())
        if known.get("topic") == topic and known.get("topic_id") not in (None, current):
            raise PipelineError(
                f"topic {topic!r} is not the one the state in {state_dir} was built from (topic id "
                f"{known['topic_id']}, now {current}): it was deleted and recreated, or the broker came back "
                f"empty; nothing was processed. {restart_hint}")
    _check_offsets(kafka_config, group, topic, partitions, restart_hint)
    if current is not None and not record.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.tmp")
        tmp.write_text(json.dumps({"topic": topic, "topic_id": current}))
        os.replace(tmp, record)


def _check_offsets(kafka_config: dict[str, Any], group: str, topic: str, partitions: int,
                   restart_hint: str) -> None:
    consumer = Consumer(consumer_config(kafka_config, group, extra={"client.id": f"freshet-history-{uuid.uuid4().hex[:6]}"}))
    probe = EndOffsetProbe(kafka_config)
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        ends = probe.end_offsets((topic, p) for p in range(partitions))
    finally:
        probe.close()
        consumer.close()
    past = [(tp.partition, tp.offset, ends[(topic, tp.partition)]) for tp in committed
            if tp.offset >= 0 and tp.offset > ends[(topic, tp.partition)]]
    if past:
        detail = ", ".join(f"partition {p}: committed {c}, end {e}" for p, c, e in past)
        raise PipelineError(
            f"the history of topic {topic!r} changed under consumer group {group!r} ({detail}): the topic was "
            "deleted and recreated, or the broker lost its data. The group's offsets, its window state and the "
            f"log's file names belong to the old history, so nothing was processed. {restart_hint}")
