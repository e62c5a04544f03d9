"""The request and response models of `freshet serve` (its OpenAPI document), and the limits they carry.

The request model is built per server (:func:`request_model`): its limits are in its schema. Its own
JSON parser validates bodies (see :mod:`freshet.serve`), and :func:`describe` turns its first error into
one sentence naming the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import Interval
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    ValidationError,
)

from freshet.features.online_as_of import MAX_AT_MS

# view, view@N, view:feature or view@N:feature (names as features/definitions.py allows them)
FEATURE_REFERENCE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}(@[0-9]{1,9})?(:[A-Za-z_][A-Za-z0-9_]{0,127})?$"
MAX_SAFE_INTEGER = 2**53 - 1  # integer keys beyond it lose precision in JSON clients (and in the schema)
AT_DESCRIPTION = (
    "the instant request-time views (as_of: request) are read as of: UTC epoch milliseconds, or ISO-8601 text "
    "('2026-11-22T12:00:00Z'; a time without a zone is UTC); default now. Refused (400) when a last-event view "
    "is asked for; an instant before what Redis keeps for an entity is a 422 (use a training set)")


@dataclass(frozen=True)
class Limits:
    max_entities: int = 1000
    max_key_length: int = 256
    max_features: int = 200
    max_keys: int = 10_000  # entities x views read per request
    max_body_bytes: int = 1_000_000
    body_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_entities", "max_key_length", "max_features", "max_keys", "max_body_bytes"):
            value = getattr(self, name)
            if not 1 <= value <= 100_000_000:
                raise ValueError(f"{name} {value} is out of range: allowed 1 to 100000000")
        if not 0 < self.body_timeout_s <= 3600:
            raise ValueError(f"body_timeout_s {self.body_timeout_s} is out of range: allowed above 0 to 3600")


class Freshness(BaseModel):
    found: bool = Field(description="Redis holds a value of this view for the entity (a request-time view: a "
                        "window has ended by the instant read; an entity without events reads count 0, not null)")
    feature_ts: int | None = Field(description="event time (UTC epoch ms) from which the value holds (a "
                                   "request-time view: its window's end, or the instant read for a sliding one)")
    age_ms: int | None = Field(description="now - feature_ts")
    stale: bool = Field(description="older than the view's ttl (values are null unless online_staleness=flag); "
                        "always false for request-time views")


class FeatureVectorOut(BaseModel):
    entity: str | int
    features: dict[str, Any] = Field(description="'view:feature' (as requested) -> typed value or null")
    freshness: dict[str, Freshness] = Field(description="per view (or view@N) asked for")


class FeaturesResponse(BaseModel):
    vectors: list[FeatureVectorOut]


class ErrorResponse(BaseModel):
    error: str


def request_model(limits: Limits) -> type[BaseModel]:
    """The request body, with this server's limits in its schema."""
    # an integer key may arrive as 7 or 7.0 (JSON and its schema do not tell them apart); never as true
    entity = Annotated[StrictStr, StringConstraints(max_length=limits.max_key_length)] | Annotated[
        int, Interval(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER), BeforeValidator(_not_a_boolean)]
    reference = Annotated[str, StringConstraints(pattern=FEATURE_REFERENCE)]
    instant = Annotated[int, Interval(ge=0, le=MAX_AT_MS), BeforeValidator(_not_a_boolean)] | Annotated[
        StrictStr, StringConstraints(min_length=1, max_length=64)]

    class FeaturesRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        entities: list[entity] = Field(
            min_length=1, max_length=limits.max_entities,
            description="entity keys (strings, or integers for integer keys), answered in this order")
        features: list[reference] = Field(
            min_length=1, max_length=limits.max_features,
            description="'view:feature', a whole 'view', or a pinned version 'view@2:feature' / 'view@2'")
        at: instant | None = Field(default=None, description=AT_DESCRIPTION)

    return FeaturesRequest


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an entity key")
    return value


def describe(error: ValidationError, limits: Limits) -> str:
    """A pydantic error of the request body as one sentence naming the bad value."""
    first = error.errors(include_url=False)[0]
    kind, loc, given = first["type"], first["loc"], first.get("input")
    if kind == "json_invalid":
        if "recursion limit" in first["msg"]:
            return 'body nests too deeply: send {"entities": [...], "features": [...]}'
        if "surrogate" in first["msg"] or "hex escape" in first["msg"]:
            return ("body is not valid text: a lone surrogate escape such as \\ud800? "
                    f"({first['msg'].removeprefix('Invalid JSON: ')})")
        return f"body is not JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    if kind == "model_type" or not loc:
        return 'body must be an object: {"entities": [...], "features": [...]}'
    field = loc[0]
    if kind == "too_long" and len(loc) == 1:
        limit = limits.max_entities if field == "entities" else limits.max_features
        return f"{len(given)} {field} is over the limit of {limit}"
    if kind == "too_short":
        return f"'{field}' must be a non-empty list"
    if kind == "string_too_long" and field == "entities":
        return f"entity key of {len(given)} characters is over the limit of {limits.max_key_length}"
    if field == "entities" and len(loc) > 1:
        if isinstance(given, int | float) and not isinstance(given, bool) and abs(given) > MAX_SAFE_INTEGER:
            return f"entity {given!r} is outside the integer keys JSON carries exactly (at most {MAX_SAFE_INTEGER})"
        return f"entity {given!r} must be a string or an integer"
    if field == "at":
        return (f"at {given!r} is not an instant: give UTC epoch milliseconds (0 to {MAX_AT_MS}) or ISO-8601 "
                "text such as '2026-11-22T12:00:00Z'")
    if kind == "string_pattern_mismatch":
        return f"feature {given!r} is not 'view', 'view:feature', 'view@N' or 'view@N:feature'"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}: the body has 'entities', 'features' and optionally 'at'"
    if kind == "missing":
        return f"'{field}' is missing: send {{\"entities\": [...], \"features\": [...]}}"
    where = ".".join(str(part) for part in loc)
    return f"{where}: {first['msg']} (got {given!r})"


