"""`freshet serve`: online features over HTTP, on FastAPI and uvicorn.

- ``POST /features`` ``{"entities": [...], "features": ["view:feature", "view", "view@2:feature"]}`` ->
  ``{"vectors": [{"entity", "features", "freshness"}]}``, one vector per entity in request order. An
  optional ``"at"`` (UTC epoch ms or ISO-8601 text) reads request-time views as of that instant
  (default: now); with a last-event view it is a 400, before what Redis keeps a 422
  (:mod:`freshet.features.online_as_of`).
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
import gc
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

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
from pydantic import ValidationError
from starlette.routing import Route

from freshet.features.as_of import AsOfHorizonError
from freshet.features.definitions import FeatureView
from freshet.features.durations import parse_event_time_ms
from freshet.features.errors import DefinitionError, OnlineStoreError, RequestError
from freshet.features.log_store import LogRoot
from freshet.features.online import AsyncOnlineClient
from freshet.serve_models import ErrorResponse, FeaturesResponse, Limits, describe, request_model

__all__ = ["ConsistencyChecks", "HttpError", "Limits", "ServerMetrics", "create_app", "describe", "request_model"]

log = logging.getLogger("freshet.serve")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
ROUTES = ("/features", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


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
                log.warning("consistency check of %s failed: %s", view.name, str(exc))
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
        # start-up objects (modules, definitions, the app) out of the collector's sight: the full collections
        # that requests' allocations trigger then walk only what requests made (a p99 of reads, measured)
        gc.collect()
        gc.freeze()
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
              422: "`at` before what Redis keeps for an entity of a request-time view (use a training set)",
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
        at = _instant(parsed.at)  # type: ignore[attr-defined]
        try:
            vectors = await client.get(entities, plan, at)
        except RequestError as exc:
            raise HttpError(400, str(exc)) from None
        except AsOfHorizonError as exc:
            raise HttpError(422, str(exc)) from None
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


def _instant(given: int | str | None) -> int | None:
    """The body's ``at`` as epoch ms (ISO-8601 text parsed here; the range is checked by the client)."""
    if given is None or isinstance(given, int):
        return given
    try:
        return parse_event_time_ms(given)
    except ValueError as exc:
        raise HttpError(400, f"at: {exc}; give UTC epoch milliseconds or ISO-8601 text such as "
                             "'2026-11-22T12:00:00Z'") from None


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
