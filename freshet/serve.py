"""`freshet serve`: online features over HTTP, on FastAPI and uvicorn.

- ``POST /features`` ``{"entities": [...], "features": ["view:feature", "view", "view@2:feature"]}`` ->
  ``{"vectors": [{"entity", "features", "freshness"}]}``, one vector per entity in request order.
- ``GET /healthz`` (the process runs), ``GET /readyz`` (Redis answers), ``GET /metrics``
  (Prometheus, ``prometheus_client``), ``GET /openapi.json`` (generated from the request and
  response models below) and ``GET /docs`` (Swagger UI from ``fastapi-offline``'s bundled assets:
  no CDN, so it renders on a closed network).

The body of ``POST /features`` is validated by the request model's own JSON parser
(pydantic-core) instead of FastAPI's body parameter: that parser bounds the nesting depth,
so a body nested thousands of levels deep is a 400 (FastAPI's ``json.loads`` raises
``RecursionError``, a 500), and each pydantic error becomes one sentence naming the bad value.
The route documents the same model (``openapi_extra``), so what is documented is what is accepted.

Limits, each a 4xx with the reason: entities and features per request and characters per
entity key (in the schema), keys read per request (entities x views, 413: it bounds the one Redis
call a request makes), body size (413) and the time to send it (408). A Redis that does not
answer, or a connection pool with no free connection within a second, is a 503 with
``Retry-After``. An optional bearer token is compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import Interval
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    ValidationError,
)
from starlette.routing import Route

from freshet.features.definitions import FeatureView
from freshet.features.errors import DefinitionError, OnlineStoreError
from freshet.features.log_store import LogRoot
from freshet.features.online import AsyncOnlineClient

log = logging.getLogger("freshet.serve")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# view, view@N, view:feature or view@N:feature (names as features/definitions.py allows them)
FEATURE_REFERENCE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}(@[0-9]{1,9})?(:[A-Za-z_][A-Za-z0-9_]{0,127})?$"
MAX_SAFE_INTEGER = 2**53 - 1  # integer keys beyond it lose precision in JSON clients (and in the schema)
ROUTES = ("/features", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")


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
    found: bool = Field(description="Redis holds a value of this view for the entity")
    feature_ts: int | None = Field(description="event time (UTC epoch ms) from which the value holds")
    age_ms: int | None = Field(description="now - feature_ts")
    stale: bool = Field(description="older than the view's ttl (values are null unless online_staleness=flag)")


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

    class FeaturesRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        entities: list[entity] = Field(
            min_length=1, max_length=limits.max_entities,
            description="entity keys (strings, or integers for integer keys), answered in this order")
        features: list[reference] = Field(
            min_length=1, max_length=limits.max_features,
            description="'view:feature', a whole 'view', or a pinned version 'view@2:feature' / 'view@2'")

    return FeaturesRequest


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an entity key")
    return value


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


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
    if kind == "string_pattern_mismatch":
        return f"feature {given!r} is not 'view', 'view:feature', 'view@N' or 'view@N:feature'"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}: the body has 'entities' and 'features'"
    if kind == "missing":
        return f"'{field}' is missing: send {{\"entities\": [...], \"features\": [...]}}"
    where = ".".join(str(part) for part in loc)
    return f"{where}: {first['msg']} (got {given!r})"


class ServerMetrics:
    """Prometheus metrics of one server (a registry of its own, so tests can run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("freshet_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("freshet_features_latency_seconds", "POST /features latency", buckets=BUCKETS,
                                 registry=self.registry)
        self.stale = Counter("freshet_stale_values", "view values served past their ttl", registry=self.registry)
        self.missing = Counter("freshet_missing_values", "view values asked for and not in Redis",
                               registry=self.registry)
        self.mismatch = Gauge("freshet_consistency_mismatch_ratio", "share of sampled entities whose online value "
                              "differs from the log's point-in-time value (serve --consistency-every)",
                              ["view", "version"], registry=self.registry)
        self.compared = Gauge("freshet_consistency_compared_entities", "entities compared in the last check",
                              ["view", "version"], registry=self.registry)
        self.checked_at = Gauge("freshet_consistency_last_check_timestamp_seconds", "when the last check ended",
                                ["view", "version"], registry=self.registry)
        self.markers = Gauge("freshet_online_store_marker_present",
                             "1 while Redis holds the pipeline's marker for the view; 0: the store lost the "
                             "view's values (run `freshet materialize`)", ["view", "version"], registry=self.registry)

    def render(self, markers: dict[tuple[str, int], bool]) -> bytes:
        for (view, version), present in markers.items():
            self.markers.labels(view, str(version)).set(int(present))
        return generate_latest(self.registry)


@dataclass(frozen=True)
class ConsistencyChecks:
    """``serve --consistency-every``: sample each view every ``every_s`` and export the mismatch ratio."""

    redis_url: str
    offline_root: LogRoot
    every_s: float
    sample: int = 200


async def _check_consistency(checks: ConsistencyChecks, views: dict[str, FeatureView], metrics: ServerMetrics) -> None:
    from freshet.commands_consistency import check_view

    while True:
        for view in views.values():
            labels = (view.name, str(view.version))
            try:
                report = await asyncio.to_thread(check_view, checks.redis_url, view, checks.offline_root,
                                                 checks.sample)
            except Exception as exc:  # a check must never take the server down
                log.warning("consistency check of %s failed: %s", view.name, exc)
                continue
            metrics.mismatch.labels(*labels).set(report.mismatch_rate)
            metrics.compared.labels(*labels).set(report.compared)
            metrics.checked_at.labels(*labels).set(time.time())
            if report.inconsistent:
                log.warning("consistency: %s v%s: %d of %d sampled entities differ from the log (first: %s)",
                            view.name, view.version, len(report.inconsistent), report.compared,
                            report.inconsistent[0].entity)
        await asyncio.sleep(checks.every_s)


def create_app(client: AsyncOnlineClient, views: dict[str, FeatureView], *, token: str | None = None,
               limits: Limits | None = None, consistency: ConsistencyChecks | None = None) -> FastAPI:
    limits = limits or Limits()
    model = request_model(limits)
    metrics = ServerMetrics()
    expected = f"Bearer {token}".encode() if token else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_check_consistency(consistency, views, metrics)) if consistency else None
        yield
        if task is not None:
            task.cancel()
        await client.close()

    app = FastAPIOffline(
        title="Freshet online features", version="1", redoc_url=None, lifespan=lifespan,
        description="Fresh feature vectors from Redis, with each view's feature_ts, age and staleness. "
        "Errors are JSON {\"error\": \"...\"} naming the bad value.")
    app.state.metrics = metrics
    app.add_middleware(_Observed, metrics=metrics)

    @app.exception_handler(HttpError)
    async def http_error(_request: Request, exc: HttpError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(404)
    async def not_found(request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"no route {request.url.path}; see /docs"}, status_code=404)

    @app.exception_handler(405)
    async def wrong_method(request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"{request.method} is not allowed on {request.url.path}; see /docs"},
                            status_code=405)

    @app.get("/healthz", summary="the process runs")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Redis answers", responses={503: {"model": ErrorResponse}})
    async def readyz() -> JSONResponse:
        if await client.ping():
            return JSONResponse({"redis": "ok"})
        return JSONResponse({"redis": "unreachable"}, status_code=503, headers={"Retry-After": "1"})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(await client.markers()), media_type=CONTENT_TYPE_LATEST)

    errors = {400: "bad input (named in the message)", 401: "missing or wrong bearer token",
              408: "body not received in time", 413: "body or request too large",
              503: "Redis unreachable or no free connection (see Retry-After)"}

    @app.post(
        "/features", summary="feature vectors with freshness for many entities",
        response_model=FeaturesResponse,
        responses={status: {"model": ErrorResponse, "description": text} for status, text in errors.items()},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
    )
    async def features(request: Request) -> Response:
        if expected is not None and not hmac.compare_digest(
                request.headers.get("authorization", "").encode(), expected):
            raise HttpError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        body = await _read_body(request, limits)
        try:
            parsed = model.model_validate_json(body)
        except ValidationError as exc:
            raise HttpError(400, describe(exc, limits)) from None
        entities: list[Any] = parsed.entities  # type: ignore[attr-defined]
        for entity in entities:
            if isinstance(entity, str) and _LONE_SURROGATE.search(entity):
                raise HttpError(400, f"entity {entity!r} is not valid text (a lone surrogate?)")
        try:
            plan = client.plan(parsed.features)  # type: ignore[attr-defined]
        except DefinitionError as exc:
            raise HttpError(400, str(exc)) from None
        keys = len(entities) * len(plan)
        if keys > limits.max_keys:
            raise HttpError(413, f"the request reads {keys:,} keys ({len(entities)} entities x {len(plan)} views); "
                                 f"the limit is {limits.max_keys:,}: split it into smaller requests")
        try:
            vectors = await client.get(entities, plan)
        except OnlineStoreError as exc:
            raise HttpError(503, str(exc), {"Retry-After": "1"}) from None
        stale = missing = 0
        for vector in vectors:
            for fresh in vector.freshness.values():
                stale += fresh["stale"]
                missing += not fresh["found"]
        if stale:
            metrics.stale.inc(stale)
        if missing:
            metrics.missing.inc(missing)
        payload = json.dumps({"vectors": [v.as_dict() for v in vectors]}, separators=(",", ":"))
        return Response(payload, media_type="application/json")

    # Served by a plain Starlette route tried first: FastAPI's per-request dependency solving and the
    # routes FastAPIOffline registers ahead of it cost ~50-100 us a request here (bench/RESULTS.md, read
    # paths). The FastAPI route above, with the same endpoint and models, stays for the OpenAPI document.
    app.router.routes.insert(0, Route("/features", features, methods=["POST"], include_in_schema=False))
    return app


class _Observed:
    """Counts requests by path and status and times POST /features: plain ASGI, since Starlette's
    ``BaseHTTPMiddleware`` (``@app.middleware``) costs about a millisecond a request here."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            path = scope["path"]
            self.metrics.requests.labels(path if path in ROUTES else "other", str(status)).inc()
            if path == "/features":
                self.metrics.latency.observe(time.perf_counter() - started)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


async def _read_body(request: Request, limits: Limits) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise HttpError(413, f"body of {int(declared):,} bytes is over the limit of {limits.max_body_bytes:,}")

    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):  # a timer, not a task per request (wait_for)
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise HttpError(413, f"body over the limit of {limits.max_body_bytes:,} bytes")
                chunks.append(chunk)
        return b"".join(chunks)
    except TimeoutError:
        raise HttpError(408, f"the body did not arrive within {limits.body_timeout_s:g} s") from None
