"""Topic provisioning: create what is missing, check what exists.

Topics are always created with explicit config (``retention.ms`` included):
the local broker (tansu) returns no default topic configs, and the stream
processor reads them. Metadata is always requested for all topics: asking
tansu for one named topic creates it (with its own default partition count).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from freshet.features.errors import CredentialsError, TopicError

DLQ_SUFFIX = ".dlq"
LATE_SUFFIX = ".late"
SOURCE_RETENTION_MS_DEV = "-1"
SIDE_RETENTION_MS = "604800000"  # 7 days

_LEGAL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

TopicStatus = Literal["created", "exists"]


@dataclass(frozen=True)
class TopicSpec:
    """A topic Freshet needs: its name, partition count and explicit config."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict, hash=False)
    replication_factor: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _LEGAL_NAME.match(self.name) or self.name in (".", ".."):
            raise TopicError(
                f"bad topic name {self.name!r}: use 1 to 249 characters among letters, digits, '.', '_', '-'"
            )
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int) or self.partitions < 1:
            raise TopicError(
                f"topic {self.name!r}: partitions must be an integer >= 1, got {self.partitions!r}"
            )
        if (
            isinstance(self.replication_factor, bool)
            or not isinstance(self.replication_factor, int)
            or self.replication_factor < 1
        ):
            raise TopicError(
                f"topic {self.name!r}: replication_factor must be an integer >= 1, "
                f"got {self.replication_factor!r}"
            )
        for key, value in self.config.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TopicError(
                    f"topic {self.name!r}: config entries must be strings, got {key!r}: {value!r}"
                )


@dataclass(frozen=True)
class TopicReport:
    """What provisioning found or did for one topic."""

    name: str
    partitions: int
    status: TopicStatus


def source_topic_specs(
    topic: str, partitions: int, source_retention_ms: str = SOURCE_RETENTION_MS_DEV
) -> list[TopicSpec]:
    """The source topic and its dead-letter (``.dlq``) and late (``.late``) topics.

    All three have the same partition count, so an entity's dead letters and
    late events land in the partition matching its source partition. The source
    keeps everything by default (``retention.ms=-1``, for replays in dev); the
    side topics keep 7 days.
    """

    def config(retention_ms: str) -> dict[str, str]:
        return {"retention.ms": retention_ms, "cleanup.policy": "delete"}

    return [
        TopicSpec(topic, partitions, config(source_retention_ms)),
        TopicSpec(topic + DLQ_SUFFIX, partitions, config(SIDE_RETENTION_MS)),
        TopicSpec(topic + LATE_SUFFIX, partitions, config(SIDE_RETENTION_MS)),
    ]


AUTH_ERRORS = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
                         KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED})


def cluster_metadata(client_config: dict[str, str], timeout_s: float = 30.0) -> ClusterMetadata:
    """The broker's metadata, or within about a second a CredentialsError when it refuses the credentials
    (the same fast path every command that talks to Kafka first takes)."""
    refused: list[KafkaError] = []
    admin = AdminClient({**client_config, "error_cb": lambda err: _note_refusal(err, refused)})
    return _metadata(admin, str(client_config.get("bootstrap.servers", "?")), timeout_s, refused)


def _note_refusal(error: KafkaError, refused: list[KafkaError]) -> None:
    if error.code() in AUTH_ERRORS:
        refused.append(error)


def _metadata(admin: AdminClient, bootstrap: str, timeout_s: float, refused: list[KafkaError]) -> ClusterMetadata:
    """The cluster's metadata; refused credentials fail within about a second (they are not an outage:
    waiting does not help), naming the problem but never the secret."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            admin.poll(0)  # deliver the client's error callbacks
            if refused:
                raise CredentialsError(
                    f"the broker at {bootstrap!r} refused Freshet's credentials ({refused[0].str()}): check "
                    "security.protocol, sasl.mechanism, sasl.username and sasl.password in FRESHET_KAFKA_CONFIG "
                    "or -X") from None
            if time.monotonic() >= deadline:
                raise TopicError(
                    f"cannot read topic metadata from the broker at {bootstrap!r} within {timeout_s:g}s: "
                    f"{exc.args[0] if exc.args else exc}; is it running (`freshet dev up`)?"
                ) from exc


def _existing_partitions(metadata: ClusterMetadata) -> dict[str, int]:
    return {name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.error is None}


def _mismatch(spec: TopicSpec, actual: int) -> TopicError:
    return TopicError(
        f"topic {spec.name!r} exists with {actual} partition(s) but {spec.partitions} are expected. "
        f"Freshet will not repartition it (keys would move between partitions and windows). "
        f"Either set the source's partitions to {actual} in the feature repository, "
        f"or delete the topic (its data is lost) and provision again, or use a new topic name."
    )


def provision_topics(
    client_config: dict[str, str], topics: list[TopicSpec], timeout_s: float = 30.0
) -> list[TopicReport]:
    """Create the missing ``topics``, check the existing ones; one report per spec, in order.

    Raises :class:`TopicError` if an existing topic has a different partition
    count, if creation fails, or if the broker does not show the new topics
    within ``timeout_s``.
    """
    names = [spec.name for spec in topics]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TopicError(f"topic(s) listed more than once: {', '.join(map(repr, duplicates))}")
    if not topics:
        return []
    bootstrap = str(client_config.get("bootstrap.servers", "?"))
    refused: list[KafkaError] = []  # authentication errors the client reports while it connects
    admin = AdminClient({**client_config, "error_cb": lambda err: _note_refusal(err, refused)})
    existing = _existing_partitions(_metadata(admin, bootstrap, timeout_s, refused))

    status: dict[str, TopicStatus] = {}
    for spec in topics:
        if spec.name in existing:
            if existing[spec.name] != spec.partitions:
                raise _mismatch(spec, existing[spec.name])
            status[spec.name] = "exists"

    missing = [spec for spec in topics if spec.name not in status]
    if missing:
        new_topics = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=dict(spec.config),
            )
            for spec in missing
        ]
        futures = admin.create_topics(new_topics, operation_timeout=timeout_s, request_timeout=timeout_s)
        for spec in missing:
            try:
                futures[spec.name].result()
                status[spec.name] = "created"
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    status[spec.name] = "exists"  # created concurrently by someone else
                else:
                    raise TopicError(
                        f"cannot create topic {spec.name!r} ({spec.partitions} partitions, "
                        f"replication factor {spec.replication_factor}, config {spec.config}): {error or exc}"
                    ) from exc
        _wait_visible(admin, bootstrap, missing, timeout_s)

    return [TopicReport(spec.name, spec.partitions, status[spec.name]) for spec in topics]


def _wait_visible(admin: AdminClient, bootstrap: str, specs: list[TopicSpec], timeout_s: float) -> None:
    """Wait until metadata shows every spec with its partitions; check raced ones too."""
    deadline = time.monotonic() + timeout_s
    while True:
        existing = _existing_partitions(_metadata(admin, bootstrap, timeout_s, []))
        pending = []
        for spec in specs:
            actual = existing.get(spec.name)
            if actual is None or actual == 0:
                pending.append(spec.name)
            elif actual != spec.partitions:
                raise _mismatch(spec, actual)
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TopicError(
                f"topic(s) {', '.join(map(repr, pending))} were created but the broker at {bootstrap!r} "
                f"did not show them within {timeout_s:g}s"
            )
        time.sleep(0.1)
