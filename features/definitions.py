"""Feature definitions: inert, frozen data that the engine compiles.

A :class:`FeatureView` names an entity, a :class:`Source`, a window, a grace
period, an emit mode and its aggregations. Everything is validated when it is
built; an error names the bad value and what is allowed. Nothing here imports
Kafka, Redis or Arrow.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from freshet.features.aggregations import FIELD_TYPES, FUNCTIONS, NUMERIC_TYPES
from freshet.features.durations import format_duration, parse_duration_ms
from freshet.features.errors import DefinitionError

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
MAX_PARTITIONS = 10_000
TYPE_ALIASES = {
    "str": "str", "string": "str", "text": "str",
    "int": "int", "integer": "int", "long": "int", "int64": "int",
    "float": "float", "double": "float", "float64": "float", "number": "float",
    "bool": "bool", "boolean": "bool",
}


class Definition(BaseModel):
    """Base of every definition: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise DefinitionError(_explain(type(self).__name__, data, exc)) from None


def _explain(kind: str, data: dict[str, Any], exc: ValidationError) -> str:
    label = data.get("name") if isinstance(data, dict) else None
    where = f"{kind} {label!r}" if label else kind
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {loc!r}"
            loc = ""
        elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return f"{where}: " + "; ".join(lines)


def _check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: use letters, digits and '_', "
            "starting with a letter or '_', at most 128 characters"
        )
    return value


class Entity(Definition):
    """What features describe, and the event field that identifies it."""

    name: str
    join_key: str | None = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "entity name")

    @property
    def key(self) -> str:
        """The event field that holds this entity's id."""
        return self.join_key or self.name


class Source(Definition):
    """A Kafka topic of JSON events with a schema, a key field and an event-time field."""

    name: str
    topic: str
    partitions: int = 1
    key: str
    timestamp: str
    event_schema: dict[str, str] = Field(alias="schema")
    description: str = ""

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "source name")

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not TOPIC_PATTERN.match(v) or v in (".", ".."):
            raise ValueError(f"topic {v!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-')")
        return v

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, v: int) -> int:
        if not 1 <= v <= MAX_PARTITIONS:
            raise ValueError(f"partitions {v} is out of range: allowed 1 to {MAX_PARTITIONS}")
        return v

    @field_validator("event_schema", mode="before")
    @classmethod
    def _schema(cls, v: Any) -> dict[str, str]:
        if not isinstance(v, dict) or not v:
            raise ValueError(f"schema must be a non-empty mapping of field -> type, got {v!r}")
        out = {}
        for field, kind in v.items():
            type_name = kind if isinstance(kind, str) else getattr(kind, "__name__", repr(kind))
            canonical = TYPE_ALIASES.get(str(type_name).lower())
            if canonical is None:
                raise ValueError(
                    f"field {field!r} has type {kind!r}; allowed types: {', '.join(sorted(FIELD_TYPES))}"
                )
            out[str(field)] = canonical
        return out

    @model_validator(mode="after")
    def _fields_exist(self) -> Source:
        for role in ("key", "timestamp"):
            field = getattr(self, role)
            if field not in self.event_schema:
                raise ValueError(
                    f"{role} field {field!r} is not in the schema; fields: {', '.join(self.event_schema)}"
                )
        if self.event_schema[self.timestamp] not in ("int", "str"):
            raise ValueError(
                f"timestamp field {self.timestamp!r} has type {self.event_schema[self.timestamp]!r}; "
                "it must be int (epoch milliseconds) or str (ISO-8601)"
            )
        return self

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def late_topic(self) -> str:
        return f"{self.topic}.late"


MAX_WINDOW_MS = 366 * 86_400_000


class _WindowBase(Definition):
    size: int

    @field_validator("size", "step", mode="before", check_fields=False)
    @classmethod
    def _parse(cls, v: Any, info: ValidationInfo) -> int:
        return parse_duration_ms(v, field=str(info.field_name))

    @field_validator("size", "step", check_fields=False)
    @classmethod
    def _in_range(cls, v: int, info: ValidationInfo) -> int:
        if not 1 <= v <= MAX_WINDOW_MS:
            raise ValueError(f"window {info.field_name} {v} ms is out of range: allowed 1 ms to 366d")
        return v


class TumblingWindow(_WindowBase):
    """Fixed, non-overlapping windows of ``size``."""

    type: Literal["tumbling"] = "tumbling"

    @property
    def step(self) -> int:
        return self.size

    def describe(self) -> str:
        return f"tumbling {format_duration(self.size)}"


class HoppingWindow(_WindowBase):
    """Overlapping windows of ``size`` starting every ``step``."""

    type: Literal["hopping"] = "hopping"
    step: int

    @model_validator(mode="after")
    def _step_within_size(self) -> HoppingWindow:
        if self.step > self.size:
            raise ValueError(
                f"step {format_duration(self.step)} ({self.step} ms) is larger than size "
                f"{format_duration(self.size)} ({self.size} ms); step must be at most the size"
            )
        return self

    def describe(self) -> str:
        return f"hopping {format_duration(self.size)} every {format_duration(self.step)}"


class SlidingWindow(_WindowBase):
    """For every event, the ``size`` of event time that ends at it."""

    type: Literal["sliding"] = "sliding"

    def describe(self) -> str:
        return f"sliding {format_duration(self.size)}"


Window = Annotated[TumblingWindow | HoppingWindow | SlidingWindow, Field(discriminator="type")]
WINDOW_TYPES = ("tumbling", "hopping", "sliding")


class Aggregation(Definition):
    """One aggregation function over one column (``count`` may omit the column)."""

    function: str
    column: str | None = None
    name: str

    @field_validator("function")
    @classmethod
    def _known(cls, v: str) -> str:
        v = v.lower()
        if v not in FUNCTIONS:
            raise ValueError(f"unknown aggregation function {v!r}; allowed: {', '.join(FUNCTIONS)}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "feature name")

    @model_validator(mode="after")
    def _column_given(self) -> Aggregation:
        if FUNCTIONS[self.function].needs_column and not self.column:
            raise ValueError(f"aggregation {self.name!r}: function {self.function!r} needs a column")
        return self


RESERVED_COLUMNS = frozenset(
    {"feature_ts", "window_start", "window_end", "source_partition", "source_offset", "produced_at"}
)


class FeatureView(Definition):
    """A set of windowed aggregations over one source, keyed by one entity."""

    name: str
    version: int = 1
    source: Source
    entity: Entity | None = None
    window: Window
    grace: int = 0
    emit: Literal["final", "current"] = "final"
    aggregations: tuple[Aggregation, ...]
    ttl: int = 86_400_000
    online_staleness: Literal["null", "flag"] = "null"
    # what a read answers: "last_event", the value emitted with the entity's last event (the values log's
    # point-in-time row); "request", the window as of the read's instant (features.as_of): online at the
    # request time or an explicit `at`, offline at each label's time. Part of the fingerprint when "request".
    as_of: Literal["last_event", "request"] = "last_event"
    # how often a new value is expected (operational, not part of the fingerprint): metrics export it
    # so one alert covers every view ("freshness beyond 1.5x the expected interval")
    expected_interval: int | None = None
    owner: str = ""
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "view name")

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if not 1 <= v <= 1_000_000:
            raise ValueError(f"version {v} is out of range: allowed 1 to 1000000")
        return v

    @field_validator("grace", "ttl", mode="before")
    @classmethod
    def _durations(cls, v: Any, info: ValidationInfo) -> int:
        return parse_duration_ms(v, field=str(info.field_name))

    @field_validator("expected_interval", mode="before")
    @classmethod
    def _expected_interval(cls, v: Any) -> int | None:
        if v is None:
            return None
        ms = parse_duration_ms(v, field="expected_interval")
        if not 1000 <= ms <= MAX_WINDOW_MS:
            raise ValueError(f"expected_interval {ms} ms is out of range: allowed 1s to 366d")
        return ms

    @field_validator("grace")
    @classmethod
    def _grace(cls, v: int) -> int:
        if not 0 <= v <= MAX_WINDOW_MS:
            raise ValueError(f"grace {v} ms is out of range: allowed 0 to 366d (it cannot be negative)")
        return v

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, v: int) -> int:
        if not 1_000 <= v <= 10 * MAX_WINDOW_MS:
            raise ValueError(f"ttl {v} ms is out of range: allowed 1s to 3660d")
        return v

    @field_validator("emit", mode="before")
    @classmethod
    def _emit(cls, v: Any) -> Any:
        if v not in ("final", "current"):
            raise ValueError(f"emit {v!r} is not allowed; use 'final' (once at window close) or 'current' (every update)")
        return v

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of(cls, v: Any) -> Any:
        if v not in ("last_event", "request"):
            raise ValueError(f"as_of {v!r} is not allowed; use 'request' (the window as of the read's instant) or "
                             "'last_event' (the value emitted with the entity's last event)")
        return v

    @field_validator("window", mode="before")
    @classmethod
    def _window_type(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("type") not in WINDOW_TYPES:
            raise ValueError(f"window type {v.get('type')!r} is not allowed; use one of {', '.join(WINDOW_TYPES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FeatureView:
        if not self.aggregations:
            raise ValueError("a view needs at least one aggregation")
        schema = self.source.event_schema
        if self.entity is not None and self.entity.key not in schema:
            raise ValueError(
                f"entity key {self.entity.key!r} is not a field of source {self.source.name!r}; "
                f"fields: {', '.join(schema)}"
            )
        seen: set[str] = set()
        for agg in self.aggregations:
            if agg.name in seen:
                raise ValueError(f"duplicate output name {agg.name!r}; each aggregation needs its own name")
            if agg.name in RESERVED_COLUMNS or agg.name == self.entity_key:
                raise ValueError(f"output name {agg.name!r} is reserved; reserved: {', '.join(sorted(RESERVED_COLUMNS))} and the entity key")
            seen.add(agg.name)
            if agg.column is None:
                continue
            if agg.column not in schema:
                raise ValueError(
                    f"aggregation {agg.name!r} reads column {agg.column!r}, which source "
                    f"{self.source.name!r} lacks; fields: {', '.join(schema)}"
                )
            if FUNCTIONS[agg.function].numeric_only and schema[agg.column] not in NUMERIC_TYPES:
                raise ValueError(
                    f"aggregation {agg.name!r}: {agg.function} needs a numeric column (int or float), "
                    f"but {agg.column!r} is {schema[agg.column]!r}"
                )
        return self

    # --- derived names ---------------------------------------------------

    @property
    def entity_key(self) -> str:
        """The event field whose value is the entity id."""
        return self.entity.key if self.entity is not None else self.source.key

    @property
    def entity_name(self) -> str:
        return self.entity.name if self.entity is not None else self.source.key

    @property
    def state_name(self) -> str:
        """The stable name of this view's window operator: its state namespace."""
        return f"{self.name}__v{self.version}"

    def feature_names(self) -> list[str]:
        return [a.name for a in self.aggregations]

    def feature_types(self) -> dict[str, str]:
        """Output type per feature: 'int', 'float', 'str' or 'bool'."""
        schema = self.source.event_schema
        return {
            a.name: FUNCTIONS[a.function].output_type(schema.get(a.column) if a.column else None)
            for a in self.aggregations
        }
