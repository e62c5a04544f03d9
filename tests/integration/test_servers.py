"""The shared servers answer: a real broker and a real Redis, never mocks."""

from __future__ import annotations

import redis
from confluent_kafka.admin import AdminClient

from tests.integration.conftest import Servers


def test_broker_and_redis_answer(servers: Servers) -> None:
    metadata = AdminClient(servers.kafka_config()).list_topics(timeout=10)
    assert metadata.brokers, "the broker returned no brokers in its metadata"
    client = redis.Redis.from_url(servers.redis_url)
    assert client.ping() is True
    client.set("freshet:test:ping", "1", px=10_000)
    assert client.get("freshet:test:ping") == b"1"
