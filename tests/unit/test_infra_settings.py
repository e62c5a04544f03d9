"""Settings: env vs. CLI override precedence, -X parsing, the client config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from freshet.features.errors import ConfigError
from freshet.infra.settings import FreshetSettings, kafka_client_config, load_settings, parse_kafka_overrides


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test without the caller's FRESHET_* variables (a dev stack may be loaded)."""
    for name in list(os.environ):
        if name.startswith("FRESHET_"):
            monkeypatch.delenv(name)


def test_defaults_without_env() -> None:
    settings = load_settings()
    assert settings.kafka_bootstrap is None
    assert settings.redis_url is None
    assert settings.offline_root == "data/offline"
    assert settings.state_dir == Path(".freshet/state")
    assert settings.kafka_config == {}


def test_env_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHET_KAFKA_BOOTSTRAP", "broker:9092")
    monkeypatch.setenv("FRESHET_REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("FRESHET_OFFLINE_ROOT", "/srv/offline")
    monkeypatch.setenv("FRESHET_STATE_DIR", "/srv/state")
    monkeypatch.setenv("FRESHET_KAFKA_CONFIG", '{"security.protocol": "SASL_SSL", "linger.ms": 5}')
    settings = load_settings()
    assert settings.kafka_bootstrap == "broker:9092"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.offline_root == "/srv/offline"
    assert settings.state_dir == Path("/srv/state")
    # JSON numbers reach librdkafka as strings.
    assert settings.kafka_config == {"security.protocol": "SASL_SSL", "linger.ms": "5"}


def test_overrides_win_over_env_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHET_KAFKA_BOOTSTRAP", "from-env:9092")
    monkeypatch.setenv("FRESHET_REDIS_URL", "redis://from-env:6379/0")
    settings = load_settings({"kafka_bootstrap": "from-flag:9092", "redis_url": None, "state_dir": "/tmp/s"})
    assert settings.kafka_bootstrap == "from-flag:9092"
    assert settings.redis_url == "redis://from-env:6379/0"
    assert settings.state_dir == Path("/tmp/s")


def test_kafka_config_override_merges_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHET_KAFKA_CONFIG", '{"security.protocol": "SSL", "client.id": "env"}')
    settings = load_settings({"kafka_config": parse_kafka_overrides(["client.id=flag", "acks=all"])})
    assert settings.kafka_config == {"security.protocol": "SSL", "client.id": "flag", "acks": "all"}


def test_blank_env_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHET_KAFKA_BOOTSTRAP", "  ")
    assert load_settings().kafka_bootstrap is None


def test_bad_kafka_config_json_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHET_KAFKA_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="FRESHET_KAFKA_CONFIG"):
        load_settings()


def test_kafka_config_must_be_an_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHET_KAFKA_CONFIG", '["a", "b"]')
    with pytest.raises(ConfigError, match="kafka_config"):
        load_settings()


def test_unknown_override_is_named() -> None:
    with pytest.raises(ConfigError, match="'kafka_bootstrp'"):
        load_settings({"kafka_bootstrp": "x:1"})


def test_parse_kafka_overrides() -> None:
    parsed = parse_kafka_overrides(
        ["security.protocol=SASL_SSL", "sasl.password=a=b=c", "acks=1", "acks=all", "empty="]
    )
    assert parsed == {"security.protocol": "SASL_SSL", "sasl.password": "a=b=c", "acks": "all", "empty": ""}
    assert parse_kafka_overrides([]) == {}


@pytest.mark.parametrize("bad", ["security.protocol", "=value"])
def test_parse_kafka_overrides_names_the_bad_item(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_kafka_overrides(["acks=all", bad])
    assert repr(bad) in str(caught.value)


def test_kafka_client_config_passes_extra_settings_through() -> None:
    settings = FreshetSettings(
        kafka_bootstrap="a:1,b:2", kafka_config={"sasl.mechanism": "PLAIN", "security.protocol": "SASL_SSL"}
    )
    assert kafka_client_config(settings) == {
        "bootstrap.servers": "a:1,b:2",
        "sasl.mechanism": "PLAIN",
        "security.protocol": "SASL_SSL",
    }


def test_kafka_client_config_without_bootstrap_tells_what_to_do() -> None:
    with pytest.raises(ConfigError) as caught:
        kafka_client_config(load_settings())
    message = str(caught.value)
    assert "freshet dev up" in message
    assert "eval $(freshet dev env)" in message
    assert "FRESHET_KAFKA_BOOTSTRAP" in message


def test_max_event_ahead_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().max_event_ahead_ms == 366 * 86_400_000
    monkeypatch.setenv("FRESHET_MAX_EVENT_AHEAD", "2h")
    assert load_settings().max_event_ahead_ms == 7_200_000
    monkeypatch.setenv("FRESHET_MAX_EVENT_AHEAD", "0")
    assert load_settings().max_event_ahead_ms == 0
    monkeypatch.setenv("FRESHET_MAX_EVENT_AHEAD", "soon")
    with pytest.raises(ConfigError, match="FRESHET_MAX_EVENT_AHEAD: 'soon' is not a duration"):
        load_settings()
