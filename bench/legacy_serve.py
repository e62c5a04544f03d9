"""The 0.2 HTTP server (a hand-written ASGI app), kept only as the read-path benchmark's baseline.

`python -m bench.legacy_serve --repo DIR --port N` serves it with FRESHET_REDIS_URL, as
`freshet serve` 0.2 did (uvicorn, no access log), so bench/read_paths.py can measure the
FastAPI server against it in the same run. Not used by Freshet itself.

- ``POST /features`` ``{"entities": [...], "features": ["view:feature", "view", ...]}`` ->
  ``{"vectors": [{"entity", "features", "freshness"}]}``
- ``GET /healthz`` (the process runs), ``GET /readyz`` (Redis answers),
  ``GET /metrics`` (Prometheus text), ``GET /openapi.json`` and ``GET /docs``.
- Input limits with clear 4xx errors; an optional bearer token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from freshet.features.definitions import FeatureView
from freshet.features.errors import DefinitionError, OnlineStoreError
from freshet.features.online import AsyncOnlineClient

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass
class Limits:
    max_entities: int = 1000
    max_key_length: int = 256
    max_features: int = 200
    max_body_bytes: int = 1_000_000


@dataclass
class Metrics:
    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    latency_sum: float = 0.0
    stale: int = 0
    missing: int = 0

    def observe(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] = self.requests.get((path, status), 0) + 1
        if path == "/features":
            self.latency_sum += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.latency_counts[i] += 1
                    break
            else:
                self.latency_counts[-1] += 1

    def render(self, markers: dict[tuple[str, int], bool] | None = None) -> str:
        lines = ["# HELP freshet_requests_total HTTP requests by path and status",
                 "# TYPE freshet_requests_total counter"]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'freshet_requests_total{{path="{path}",status="{status}"}} {n}')
        lines += ["# HELP freshet_features_latency_seconds POST /features latency",
                  "# TYPE freshet_features_latency_seconds histogram"]
        running = 0
        for bound, n in zip([*BUCKETS, float("inf")], self.latency_counts, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'freshet_features_latency_seconds_bucket{{le="{le}"}} {running}')
        lines.append(f"freshet_features_latency_seconds_sum {self.latency_sum}")
        lines.append(f"freshet_features_latency_seconds_count {running}")
        lines += ["# TYPE freshet_stale_values_total counter", f"freshet_stale_values_total {self.stale}",
                  "# TYPE freshet_missing_values_total counter", f"freshet_missing_values_total {self.missing}"]
        if markers:
            lines += ["# HELP freshet_online_store_marker_present 1 while Redis holds the pipeline's marker for "
                      "the view; 0: the store lost the view's values (run `freshet materialize`)",
                      "# TYPE freshet_online_store_marker_present gauge"]
            lines += [f'freshet_online_store_marker_present{{view="{view}",version="{version}"}} {int(present)}'
                      for (view, version), present in sorted(markers.items())]
        return "\n".join(lines) + "\n"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def openapi(views: dict[str, FeatureView]) -> dict[str, Any]:
    names = sorted(f"{v.name}:{f}" for v in views.values() for f in v.feature_names())
    return {
        "openapi": "3.0.3",
        "info": {"title": "Freshet online features", "version": "1"},
        "paths": {
            "/features": {"post": {
                "summary": "Feature vectors with freshness for many entities",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["entities", "features"],
                    "properties": {"entities": {"type": "array", "items": {"type": "string"}},
                                   "features": {"type": "array", "items": {"type": "string", "enum": names},
                                                "description": "view:feature, a whole view, or view@N:feature"}}}}}},
                "responses": {"200": {"description": "one vector per entity, in request order"},
                              "400": {"description": "bad input"}, "401": {"description": "bad or no token"},
                              "413": {"description": "body too large"}, "503": {"description": "Redis down"}}}},
            "/healthz": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"responses": {"200": {"description": "Redis answers"},
                                              "503": {"description": "Redis does not answer"}}}},
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text"}}}},
        },
    }


DOCS = """<!doctype html><html><head><title>Freshet API</title></head><body>
<h1>Freshet online features</h1><p>POST <code>/features</code> with
<code>{"entities": ["card-00001"], "features": ["card_spend_5m:txn_count"]}</code>.</p>
<p>Schema: <a href="/openapi.json">/openapi.json</a>. Health: <a href="/healthz">/healthz</a>,
<a href="/readyz">/readyz</a>. Metrics: <a href="/metrics">/metrics</a>.</p></body></html>"""


class FeatureServer:
    def __init__(self, client: AsyncOnlineClient, views: dict[str, FeatureView], *, token: str | None = None,
                 limits: Limits | None = None) -> None:
        self.client = client
        self.views = views
        self.token = token
        self.limits = limits or Limits()
        self.metrics = Metrics()
        self._openapi = json.dumps(openapi(views)).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        try:
            status, body, ctype = await self._route(path, method, scope, receive)
        except HttpError as exc:
            status, body, ctype = exc.status, json.dumps({"error": exc.message}).encode(), "application/json"
        self.metrics.observe(path if path in ("/features", "/healthz", "/readyz", "/metrics") else "other",
                             status, time.perf_counter() - started)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, path: str, method: str, scope: Scope, receive: Receive) -> tuple[int, bytes, str]:
        if path == "/healthz":
            return 200, b'{"status":"ok"}', "application/json"
        if path == "/readyz":
            ok = await self.client.ping()
            return (200, b'{"redis":"ok"}', "application/json") if ok else (
                503, b'{"redis":"unreachable"}', "application/json")
        if path == "/metrics":
            markers = await self.client.markers()
            return 200, self.metrics.render(markers).encode(), "text/plain; version=0.0.4"
        if path == "/openapi.json":
            return 200, self._openapi, "application/json"
        if path == "/docs":
            return 200, DOCS.encode(), "text/html"
        if path != "/features":
            raise HttpError(404, f"no route {path}; see /docs")
        if method != "POST":
            raise HttpError(405, "use POST /features")
        self._authorize(scope)
        body = await self._body(receive)
        return 200, await self._features(body), "application/json"

    def _authorize(self, scope: Scope) -> None:
        if self.token is None:
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"authorization", b"") != f"Bearer {self.token}".encode():
            raise HttpError(401, "missing or wrong bearer token")

    async def _body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise HttpError(413, f"body over {self.limits.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _features(self, body: bytes) -> bytes:
        try:
            request = json.loads(body)
        except ValueError as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from None
        except RecursionError:
            raise HttpError(400, "body nests too deeply: send {\"entities\": [...], \"features\": [...]}") from None
        if not isinstance(request, dict):
            raise HttpError(400, 'body must be an object: {"entities": [...], "features": [...]}')
        entities, features = request.get("entities"), request.get("features")
        if not isinstance(entities, list) or not entities:
            raise HttpError(400, "'entities' must be a non-empty list")
        if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
            raise HttpError(400, "'features' must be a non-empty list of 'view:feature' or 'view'")
        if len(entities) > self.limits.max_entities:
            raise HttpError(400, f"{len(entities)} entities is over the limit of {self.limits.max_entities}")
        if len(features) > self.limits.max_features:
            raise HttpError(400, f"{len(features)} features is over the limit of {self.limits.max_features}")
        for e in entities:
            if not isinstance(e, (str, int)) or isinstance(e, bool):
                raise HttpError(400, f"entity {e!r} must be a string or an integer")
            if isinstance(e, str) and not _encodable(e):
                raise HttpError(400, f"entity {e!r} is not valid text (a lone surrogate?)")
            if len(str(e)) > self.limits.max_key_length:
                raise HttpError(400, f"entity key of {len(str(e))} characters is over the limit of "
                                     f"{self.limits.max_key_length}")
        try:
            requests = self.client.plan(features)
            vectors = await self.client.get(entities, requests)
        except DefinitionError as exc:
            raise HttpError(400, str(exc)) from None
        except OnlineStoreError as exc:
            raise HttpError(503, str(exc)) from None
        for v in vectors:
            for fresh in v.freshness.values():
                self.metrics.stale += fresh["stale"]
                self.metrics.missing += not fresh["found"]
        return json.dumps({"vectors": [v.as_dict() for v in vectors]}, separators=(",", ":")).encode()


def main() -> None:
    import argparse
    import os

    import uvicorn

    from freshet.features.registry import Registry

    parser = argparse.ArgumentParser(prog="python -m bench.legacy_serve")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    views = Registry.load(args.repo).views
    app = FeatureServer(AsyncOnlineClient(os.environ["FRESHET_REDIS_URL"], views), views)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
