"""``create_app``: the FastAPI object over a running service, wired and nothing more.

It holds the lifespan (the scheduler), the error handlers (every error is
``{"error": {"status", "message"}}``), the OpenAPI document's additions (error shapes, the bearer
scheme, Arrow answers) and the routers, one per resource.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from forecaster.api import answers, charts, data, health, ingest, reports, runs
from forecaster.api.deps import RunCache
from forecaster.api.models import ERROR_SCHEMA
from forecaster.api.wire import json_response, problems
from forecaster.media import ARROW
from forecaster.service import Service

log = logging.getLogger("forecaster.api")

try:
    __version__ = version("forecaster")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0"


def create_app(service: Service, *, start_scheduler: bool = True) -> FastAPI:
    """The FastAPI app over a running :class:`Service`.

    Args:
        service: The store, settings and refresh job.
        start_scheduler: Start the scheduler with the app (the lifespan) and stop it after.
    """
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_scheduler:
            service.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(title="forecaster", version=__version__, lifespan=lifespan,
                  description="When will each LLM service need an intervention, how sure, and "
                              "by when to act. Reads come from published runs only.")
    cache = RunCache(service.store.latest_run_id())
    service.on_publish.append(cache.published)
    app.state.service = service
    app.state.cache = cache
    app.state.tokens = service.settings.tokens()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(Exception)(_unexpected)
    for module in (health, answers, data, runs, ingest, reports, charts):
        app.include_router(module.router)
    return app


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """An HTTP error (ours or Starlette's, such as 404 and 405) in the API's error shape."""
    return json_response({"error": {"status": exc.status_code, "message": exc.detail}},
                         exc.status_code, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A parameter FastAPI refused, as one 422 naming each field and what it got."""
    return json_response({"error": {"status": 422, "message": problems(list(exc.errors()))}},
                         422)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """A 500 that names only an id: what went wrong is for the operator's log."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error (id %s) answering %s %s", error_id, request.method,
              request.url.path, exc_info=exc)
    return json_response({"error": {"status": 500, "message": "internal error; see the "
                                                              f"server log (id {error_id})"}},
                         500)


_ERRORS = {
    "401": "no or unknown bearer token",
    "403": "the token may only read",
    "404": "no such run, series or service (or no published run yet)",
    "409": "a refresh is already running",
    "413": "the body is larger than max_request_bytes",
    "422": "the request is not what this operation takes; the message says why",
    "500": "an unexpected failure; the message names an id to find in the server log",
    "503": "not ready",
}
# Operations that answer Arrow IPC streams too (Accept: application/vnd.apache.arrow.stream).
_FRAMES = ("/v1/interventions", "/v1/series", "/v1/series/{uid}/forecast",
           "/v1/series/{uid}/history", "/v1/history", "/v1/anomalies", "/v1/reliability",
           "/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/series")


def _document_errors(doc: dict[str, Any]) -> dict[str, Any]:
    """Say in the OpenAPI document how errors look, which operations need a token, and what
    content types answers have (FastAPI documents its own 422 shape, not ours)."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "read_tokens may read; write_tokens may also write. A server without "
                       "tokens (loopback only) needs none."}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            guarded = path.startswith("/v1/") or path == "/metrics"
            codes = ["500"]
            if guarded:
                operation["security"] = [{"bearer": []}]
                codes += ["401", "404", "422"]
            if method == "post":
                codes += ["403", "413"] if path != "/v1/runs" else ["403", "409"]
            for code in codes:
                responses[code] = {"description": _ERRORS[code], "content": error}
            if path == "/readyz":  # the same checks as a 200, with ready false
                responses["503"] = {"description": _ERRORS["503"],
                                    "content": {"application/json": {"schema": {}}}}
            ok = next((c for c in ("200", "201", "202") if c in responses), None)
            if path == "/metrics" and ok:
                responses[ok]["content"] = {"text/plain": {"schema": {"type": "string"}}}
            elif path in _FRAMES and ok:
                responses[ok].setdefault("content", {})[ARROW] = {
                    "schema": {"type": "string", "format": "binary"}}
    return doc
