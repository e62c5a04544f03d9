"""Runtime settings: environment variables (``FRESHET_*``) overridden by CLI flags.

Precedence, highest first: CLI overrides passed to :func:`load_settings`, then
``FRESHET_*`` environment variables, then the defaults below. Extra librdkafka
settings (SASL, SSL, client ids...) travel unchanged in ``kafka_config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from freshet.features.errors import ConfigError

if TYPE_CHECKING:
    from freshet.features.log_store import LogRoot

_NO_BOOTSTRAP_HINT = (
    "no Kafka bootstrap servers configured: start the local stack with "
    "`freshet dev up` and load its environment with `eval $(freshet dev env)`, "
    "or set FRESHET_KAFKA_BOOTSTRAP (e.g. FRESHET_KAFKA_BOOTSTRAP=localhost:9092)"
)


class FreshetSettings(BaseSettings):
    """Where Freshet finds its broker, its online store and its local files."""

    model_config = SettingsConfigDict(env_prefix="FRESHET_", extra="forbid")

    kafka_bootstrap: str | None = None
    """Kafka bootstrap servers, ``host:port[,host:port...]`` (FRESHET_KAFKA_BOOTSTRAP)."""

    redis_url: str | None = None
    """Online store URL, e.g. ``redis://localhost:6379/0`` (FRESHET_REDIS_URL)."""

    offline_root: str = "data/offline"
    """Root of the Parquet offline log: a directory or ``s3://bucket/prefix`` (FRESHET_OFFLINE_ROOT)."""

    s3_endpoint: str | None = None
    """S3 endpoint URL for an ``s3://`` offline root (FRESHET_S3_ENDPOINT; else the AWS SDK's
    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS). Credentials come from the AWS SDK's chain."""

    state_dir: Path = Path(".freshet/state")
    """Directory of the stream processor's local state (FRESHET_STATE_DIR)."""

    kafka_config: dict[str, str] = Field(default_factory=dict)
    """Extra librdkafka settings, JSON object in FRESHET_KAFKA_CONFIG."""

    max_event_ahead: str = "366d"
    """How far an event time may be ahead of its record's Kafka timestamp before the event is
    dead-lettered as ``future_timestamp`` (FRESHET_MAX_EVENT_AHEAD; a duration, ``0`` for no bound)."""

    @field_validator("max_event_ahead", mode="after")
    @classmethod
    def _duration(cls, value: str) -> str:
        from freshet.features.durations import parse_duration_ms

        if value.strip() != "0":
            parse_duration_ms(value, field="FRESHET_MAX_EVENT_AHEAD")
        return value

    @property
    def max_event_ahead_ms(self) -> int:
        from freshet.features.durations import parse_duration_ms

        return 0 if self.max_event_ahead.strip() == "0" else parse_duration_ms(self.max_event_ahead,
                                                                             field="FRESHET_MAX_EVENT_AHEAD")

    def log_root(self) -> LogRoot:
        """The offline log's root (local or S3) as readers and writers take it."""
        from freshet.features.log_store import open_log_root

        return open_log_root(self.offline_root, s3_endpoint=self.s3_endpoint)

    @field_validator("offline_root", mode="before")
    @classmethod
    def _root_text(cls, value: object) -> object:
        return value.as_posix() if isinstance(value, Path) else value

    @field_validator("kafka_bootstrap", "redis_url", "s3_endpoint", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("kafka_config", mode="before")
    @classmethod
    def _scalars_to_strings(cls, value: object) -> object:
        # librdkafka takes every setting as a string; accept JSON numbers and
        # booleans ({"session.timeout.ms": 6000}) and pass them on as strings.
        if not isinstance(value, dict):
            return value
        converted: dict[object, object] = {}
        for key, item in value.items():
            if isinstance(item, bool):
                converted[key] = "true" if item else "false"
            elif isinstance(item, int | float):
                converted[key] = str(item)
            else:
                converted[key] = item
        return converted


def _describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(piece) for piece in item["loc"]) or "settings"
        parts.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(parts)


def load_settings(overrides: dict[str, object] | None = None) -> FreshetSettings:
    """Read the settings from the environment, with non-None ``overrides`` winning.

    ``overrides`` are typically CLI flags keyed by field name; ``None`` values
    mean "flag not given" and are ignored. A ``kafka_config`` override is merged
    over the one from FRESHET_KAFKA_CONFIG (keys from the override win).
    """
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    unknown = sorted(set(given) - set(FreshetSettings.model_fields))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known settings are {', '.join(sorted(FreshetSettings.model_fields))}"
        )
    try:
        from_env = FreshetSettings()
        if not given:
            return from_env
        merged: dict[str, Any] = dict(given)
        if "kafka_config" in merged:
            extra = merged["kafka_config"]
            if not isinstance(extra, dict):
                raise ConfigError(
                    f"kafka_config override must be a mapping of librdkafka settings, "
                    f"got {type(extra).__name__} {extra!r}"
                )
            merged["kafka_config"] = {**from_env.kafka_config, **extra}
        return FreshetSettings(**merged)
    except SettingsError as exc:
        raise ConfigError(
            f"invalid FRESHET_* environment variable: {exc} "
            "(FRESHET_KAFKA_CONFIG must be a JSON object such as "
            '\'{"security.protocol": "SASL_SSL"}\')'
        ) from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {_describe_validation_error(exc)}") from exc


def parse_kafka_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn repeated ``-X key=value`` flags into a librdkafka config mapping.

    The value may itself contain ``=`` (only the first one splits); a later
    flag for the same key wins.
    """
    parsed: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(
                f"bad -X option {item!r}: expected key=value, e.g. -X security.protocol=SASL_SSL"
            )
        if not key:
            raise ConfigError(f"bad -X option {item!r}: the key before '=' is empty")
        parsed[key] = value
    return parsed


def kafka_client_config(settings: FreshetSettings) -> dict[str, str]:
    """The librdkafka configuration for every Kafka client Freshet creates."""
    if settings.kafka_bootstrap is None:
        if "bootstrap.servers" in settings.kafka_config:
            return dict(settings.kafka_config)
        raise ConfigError(_NO_BOOTSTRAP_HINT)
    return {"bootstrap.servers": settings.kafka_bootstrap, **settings.kafka_config}
