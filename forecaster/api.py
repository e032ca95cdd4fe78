"""The HTTP API: FastAPI, versioned under ``/v1``, OpenAPI docs at ``/docs``.

Every read comes from published runs only. Answers of a run are served from memory once built
(they cannot change), each with ``ETag: "run-<id>"`` so that ``If-None-Match`` gets a 304 until
the next run, and ``Cache-Control: max-age`` up to the next scheduled refresh. Frames are JSON by
default, or Arrow IPC streams with ``Accept: application/vnd.apache.arrow.stream`` (the Python
client uses that, so it gets the same polars frames as from a file).

Errors are JSON: ``{"error": {"status": 404, "message": "..."}}``. Every bad request gets a 4xx
that says what was wrong and what is allowed; an unexpected failure gets a 500 that names only an
id to look up in the server log, never the exception. The token is checked before a body is read,
bodies are read up to ``max_request_bytes`` (413 beyond), their nesting is bounded before they are
parsed, and the work per request is linear in its body.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import polars as pl
from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from forecaster import metrics_text
from forecaster.clock import json_default
from forecaster.ingest import (
    POINT_COLUMNS,
    REQUEST_COLUMNS,
    ReadSpec,
    ingest_points_frame,
    ingest_requests_frame,
)
from forecaster.media import ARROW
from forecaster.schema import (
    DECISIONS,
    MAX_UNIT_CHARS,
    MAX_YEAR,
    MIN_YEAR,
    NAME_PATTERN,
    NAME_RULE,
    REQUEST_NUMBERS,
    IngestReport,
    InputError,
    RowError,
    split_unique_id,
    utc_in_range,
)
from forecaster.service import RefreshBusyError, Service
from forecaster.summary import service_answers

__all__ = ["ARROW", "ApiError", "BatchRows", "create_app", "downsample", "merge_report",
           "read_limited", "rows_frame"]

log = logging.getLogger("forecaster.api")

_NAME = f"^{NAME_PATTERN}$"
_UID = f"^{NAME_PATTERN}:{NAME_PATTERN}$"
_ID_MAX = 2**63 - 1  # the store's ids are BIGINT
_TIME_HELP = (f"ISO 8601 date-time in the years {MIN_YEAR} to {MAX_YEAR} (UTC); an offset is "
              "converted to UTC, none means UTC")
_DECISION_HELP = f"only these (repeatable): {', '.join(DECISIONS)}"
_RunId = Annotated[int | None, Query(ge=1, le=_ID_MAX,
                                     description="default: the latest published run")]
_PathRunId = Annotated[int, Path(ge=1, le=_ID_MAX, description="a run id")]
_Service = Annotated[str | None, Query(alias="service", pattern=_NAME, description=(
    f"only this service ({NAME_RULE})"))]
# Times in the store's range start with these years (documented, so that generated clients and
# fuzzers send times the API takes; the check itself is utc_in_range's).
_YEARS = "^(19[7-9][0-9]|2[01][0-9][0-9])-"
_ISO_DATE = re.compile(r"\s*[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_text(value: object) -> object:
    """Refuse what pydantic would read as an epoch number: times are ISO 8601 text."""
    if value is None or isinstance(value, datetime) or (
            isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("expected an ISO 8601 date-time such as 2026-11-26T08:00:00Z")


_Time = Annotated[datetime | None, BeforeValidator(_iso_text)]


def _time_query(description: str) -> Any:
    return Query(description=f"{description}; {_TIME_HELP}",
                 json_schema_extra={"pattern": _YEARS})


_JSON_COLUMNS = ("precursors", "features", "reliability")

# Bounds on what a request body may hold. A batch is an array of flat row objects, or an object
# holding that array: 3 levels of arrays and objects, and one more so that an array or object
# given as a field value (in either form) rejects its row, not the batch.
BATCH_DEPTH = 4
EVENT_DEPTH = 1
MAX_FIELD_CHARS = 1_000  # any one field of a batch row, as text
MAX_KIND_CHARS = 64
MAX_DETAIL_CHARS = 2_000
MAX_CACHED_BODIES = 256  # answers of the latest run kept in memory (least recently used go)
_SCALARS = "text, a number, true/false or null"

try:
    __version__ = version("forecaster")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0"


class ApiError(HTTPException):
    """An error answered as JSON with a clear message."""


def _utc(value: datetime | None, name: str) -> datetime | None:
    """A time parameter in UTC, refused with 422 (naming it) outside the store's years."""
    if value is None:
        return None
    try:
        return utc_in_range(value, name)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def _shown(value: object, limit: int = 60) -> str:
    """A value for a message, cut short: a client's input must not make the answer huge."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _problems(errors: list[Any]) -> str:
    """Pydantic's validation errors as one line naming each field and what it got."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
        + (f" (got {_shown(e['input'])})"
           if "input" in e and not isinstance(e["input"], dict | list) else "")
        for e in errors)


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    # NaN is no JSON: a float that is not a number is written as null
    rows = frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None)).to_dicts()
    for name in _JSON_COLUMNS:
        if name in frame.columns:
            for row in rows:
                if isinstance(row[name], str):
                    row[name] = json.loads(row[name])
    return rows


def _dumps(body: object) -> bytes:
    return json.dumps(body, default=json_default, separators=(",", ":")).encode()


def _arrow(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.write_ipc_stream(sink)
    return sink.getvalue()


def _wants_arrow(request: Request) -> bool:
    return ARROW in request.headers.get("accept", "")


class EventIn(BaseModel):
    """Something that changed a service: a deploy, a retrain, a scale-out done."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(pattern=_NAME, description=f"service name ({NAME_RULE})")
    ts: Annotated[datetime, BeforeValidator(_iso_text)] = Field(
        description=f"when it happened ({_TIME_HELP})", json_schema_extra={"pattern": _YEARS})
    kind: str = Field(min_length=1, max_length=MAX_KIND_CHARS, pattern=r"\S",
                      description="what it was: deploy, retrain, scale_out, rollback, ...")
    metric: str | None = Field(default=None, pattern=_NAME,
                               description=f"the one metric it concerns, if any ({NAME_RULE})")
    detail: str | None = Field(default=None, max_length=MAX_DETAIL_CHARS, description="free text")


class PointIn(BaseModel):
    """One point of a batch (documentation of ``POST /v1/points``; the store validates rows)."""

    model_config = ConfigDict(extra="forbid")

    ts: datetime = Field(description=f"when it was measured ({_TIME_HELP})",
                         json_schema_extra={"pattern": _YEARS})
    service: str = Field(pattern=_NAME, description=f"service name ({NAME_RULE})")
    metric: str = Field(pattern=_NAME, description=f"metric name ({NAME_RULE})")
    value: float = Field(description="the measured value, finite, in the metric kind's range")
    unit: str | None = Field(default=None, max_length=MAX_UNIT_CHARS,
                             description="its unit (the first one a series gets stays)")


def _number(name: str, description: str) -> Any:
    lo, hi, _whole = REQUEST_NUMBERS[name]
    return Field(default=None, ge=lo, le=hi, description=description)


class RequestIn(BaseModel):
    """One request-log row (documentation of ``POST /v1/requests``)."""

    model_config = ConfigDict(extra="forbid")

    ts: datetime = Field(description=f"when the request was made ({_TIME_HELP})",
                         json_schema_extra={"pattern": _YEARS})
    service: str = Field(pattern=_NAME, description=f"service name ({NAME_RULE})")
    request_id: str | None = Field(default=None, max_length=MAX_FIELD_CHARS,
                                   description="an id; a repeated id is counted once")
    latency_ms: float | None = _number("latency_ms", "end-to-end latency, milliseconds")
    ttft_ms: float | None = _number("ttft_ms", "time to first token, milliseconds")
    status: int | None = Field(default=None, ge=100, le=599, description="HTTP status code")
    error: bool | None = Field(default=None, description="whether the request failed")
    prompt_tokens: int | None = _number("prompt_tokens", "tokens in")
    completion_tokens: int | None = _number("completion_tokens", "tokens out")
    quality_score: float | None = _number("quality_score", "a quality score in [0, 1]")
    feedback: float | None = _number("feedback", "user feedback (negative is bad)")


def _batch_body(kind: str, row: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a batch: an array of rows, or ``{kind: [rows]}``."""
    rows = {"type": "array", "minItems": 1, "items": row.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "anyOf": [rows, {"type": "object", "required": [kind], "additionalProperties": False,
                         "properties": {kind: rows}}]}}}}}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema()}}}}


class _RunCache:
    """Built response bodies of the latest published run (they never change), the
    ``max_entries`` most recently used only: keys hold client-chosen values."""

    def __init__(self, latest: int | None, max_entries: int = MAX_CACHED_BODIES) -> None:
        self.latest = latest
        self.max_entries = max_entries
        self.bodies: OrderedDict[tuple[object, ...], bytes] = OrderedDict()

    def published(self, run_id: int) -> None:
        """A new run is out: forget the old one's bodies (called from the refresh thread, so
        the dict is replaced, not emptied under a reader)."""
        self.latest = run_id
        self.bodies = OrderedDict()

    def get(self, key: tuple[object, ...]) -> bytes | None:
        """The cached body for ``key``, if any (it becomes the most recently used)."""
        bodies = self.bodies
        body = bodies.get(key)
        if body is not None:
            bodies.move_to_end(key)
        return body

    def put(self, key: tuple[object, ...], body: bytes) -> None:
        """Keep ``body`` if it belongs to the latest run; drop the least recently used."""
        if key[0] != self.latest:
            return
        bodies = self.bodies
        bodies[key] = body
        while len(bodies) > self.max_entries:
            bodies.popitem(last=False)


def create_app(service: Service, *, start_scheduler: bool = True) -> FastAPI:
    """The FastAPI app over a running :class:`Service`.

    Args:
        service: The store, settings and refresh job.
        start_scheduler: Start the scheduler with the app (the lifespan) and stop it after.
    """
    settings = service.settings
    store = service.store
    tokens = settings.tokens()
    cache = _RunCache(store.latest_run_id())
    service.on_publish.append(cache.published)

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

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": {"status": exc.status_code, "message": exc.detail}},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": {"status": 422, "message": _problems(list(exc.errors()))}},
                            status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The client learns only an id; what went wrong is for the operator's log.
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error (id %s) answering %s %s", error_id, request.method,
                  request.url.path, exc_info=exc)
        return JSONResponse({"error": {"status": 500, "message": "internal error; see the "
                                       f"server log (id {error_id})"}}, status_code=500)

    def need(scope: str) -> Callable[[Request], None]:
        def check(request: Request) -> None:
            if not tokens:
                return  # no tokens: the server is bound to loopback only
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            challenge = {"WWW-Authenticate": "Bearer"}
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                               headers=challenge)
            granted = next((s for t, s in tokens.items()
                            if hmac.compare_digest(t.encode(), token.strip().encode())), None)
            if granted is None:
                raise ApiError(401, "unknown bearer token", headers=challenge)
            if scope == "write" and granted != "write":
                raise ApiError(403, f"this token may only read; {request.method} "
                                    f"{request.url.path} needs a token from write_tokens")
        return check

    read, write = Depends(need("read")), Depends(need("write"))

    def max_age() -> int:
        every = int(settings.refresh_every.total_seconds())
        nxt = service.next_refresh_at()
        if nxt is None:
            return every
        return max(0, min(every, int((nxt - service.clock()).total_seconds())))

    def latest_run() -> int:
        if cache.latest is None:
            raise ApiError(404, "no published run yet: POST /v1/runs starts one, or wait for "
                                "the scheduled refresh")
        return cache.latest

    def run_headers(run_id: int) -> dict[str, str]:
        return {"ETag": f'"run-{run_id}"', "Cache-Control": f"max-age={max_age()}"}

    def not_modified(request: Request, run_id: int) -> bool:
        asked = request.headers.get("if-none-match", "")
        tags = {t.strip().removeprefix("W/") for t in asked.split(",")}
        return f'"run-{run_id}"' in tags or "*" in tags

    async def cached(key: tuple[object, ...], build: Callable[[], bytes]) -> bytes:
        body = cache.get(key)
        if body is None:
            body = await run_in_threadpool(build)
            cache.put(key, body)
        return body

    def frame_response(request: Request, frame: pl.DataFrame, wrap: dict[str, Any],
                       status: int = 200, headers: dict[str, str] | None = None) -> Response:
        if _wants_arrow(request):
            return Response(_arrow(frame), status_code=status, media_type=ARROW, headers=headers)
        return Response(_dumps({**wrap, "items": _records(frame)}), status_code=status,
                        media_type="application/json", headers=headers)

    def known_series(uid: str) -> tuple[str, str]:
        try:
            service_name, metric = split_unique_id(uid)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        series = store.series()
        if series.filter(pl.col("unique_id") == uid).is_empty():
            raise ApiError(404, f"no series {uid!r}; GET /v1/series lists them")
        return service_name, metric

    # -- health ------------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"], summary="Database open, last run, scheduler running")
    def readyz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            checks["database"] = {"ok": True, "schema_version": store.schema_version,
                                  "path": str(store.path)}
        except Exception:  # noqa: BLE001
            error_id = uuid.uuid4().hex[:12]
            log.exception("database check failed (id %s)", error_id)
            checks["database"] = {"ok": False, "error": "the database cannot be read; see the "
                                                        f"server log (id {error_id})"}
        checks["scheduler"] = {"ok": service.scheduler_running,
                               "next_refresh_at": service.next_refresh_at()}
        runs = store.runs(1).to_dicts() if checks["database"]["ok"] else []
        now = service.clock()
        last = runs[0] if runs else None
        checks["last_run"] = None if last is None else {
            "run_id": last["run_id"], "status": last["status"], "error": last["error"],
            "age_s": (now - last["started_at"]).total_seconds()}
        published = store.run(cache.latest) if cache.latest is not None else None
        checks["last_published_run"] = None if published is None else {
            "run_id": published["run_id"], "as_of": published["as_of"],
            "age_s": (now - published["finished_at"]).total_seconds()
            if published["finished_at"] else None}
        job = service.refresh_status
        checks["refresh_job"] = {"runs": job.runs, "failures": job.failures,
                                 "last_ok": job.last_ok, "last_error": job.last_error,
                                 "running_run_id": service.running_run_id}
        ready = bool(checks["database"]["ok"] and checks["scheduler"]["ok"])
        return JSONResponse(json.loads(_dumps({"ready": ready, **checks})),
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], dependencies=[read],
             summary="Prometheus text: eta quantiles, p_breach, decisions, runs, ingest")
    def metrics() -> Response:
        return Response(metrics_text.render(store, service, cache.latest),
                        media_type=metrics_text.CONTENT_TYPE)

    # -- answers -----------------------------------------------------------------------------

    @app.get("/v1/interventions", tags=["answers"], dependencies=[read],
             summary="Latest answers, most urgent first")
    async def interventions(
        request: Request,
        service_name: _Service = None,
        decision: Annotated[list[str] | None, Query(description=_DECISION_HELP,
                                                    json_schema_extra={"items": {
                                                        "type": "string",
                                                        "enum": list(DECISIONS)}})] = None,
        min_p_breach: Annotated[float, Query(ge=0.0, le=1.0,
                                             description="only p_breach >= this")] = 0.0,
        by_service: Annotated[bool, Query(description="one answer per service: its driving "
                                                      "series")] = False,
    ) -> Response:
        bad = [d for d in decision or [] if d not in DECISIONS]
        if bad:
            raise ApiError(422, f"decision {bad[0]!r} is not one of {', '.join(DECISIONS)}")
        run_id = latest_run()
        headers = run_headers(run_id)
        if not_modified(request, run_id):
            return Response(status_code=304, headers=headers)
        arrow = _wants_arrow(request)

        def build() -> bytes:
            frame = store.interventions(run_id)
            if service_name is not None:
                frame = frame.filter(pl.col("service") == service_name)
            if decision:
                frame = frame.filter(pl.col("decision").is_in(decision))
            if min_p_breach > 0:
                frame = frame.filter(pl.col("p_breach") >= min_p_breach)
            if by_service:
                frame = service_answers(frame)
            if arrow:
                return _arrow(frame)
            run = store.run(run_id) or {}
            return _dumps({"run_id": run_id, "as_of": run.get("as_of"),
                           "next_check_at": service.next_refresh_at(),
                           "items": _records(frame)})

        key = (run_id, "interventions", service_name, tuple(decision or ()), min_p_breach,
               by_service, arrow)
        body = await cached(key, build)
        return Response(body, media_type=ARROW if arrow else "application/json",
                        headers=headers)

    @app.get("/v1/services/{service_name}", tags=["answers"], dependencies=[read],
             summary="One service: its answer, every series' answer, its anomalies")
    def service_detail(service_name: Annotated[str, Path(pattern=_NAME, description=(
            f"service name ({NAME_RULE})"))]) -> Response:
        run_id = latest_run()
        if store.series().filter(pl.col("service") == service_name).is_empty():
            raise ApiError(404, f"no service {service_name!r}; GET /v1/series lists them")
        answers = store.interventions(run_id).filter(pl.col("service") == service_name)
        records = _records(answers)
        return Response(_dumps({
            "service": service_name, "run_id": run_id,
            "answer": records[0] if records else None, "series": records,
            "anomalies": _records(store.anomalies(service=service_name, run_id=run_id)),
        }), media_type="application/json", headers=run_headers(run_id))

    @app.get("/v1/series", tags=["data"], dependencies=[read], summary="Every stored series")
    def series(request: Request) -> Response:
        return frame_response(request, store.series(), {})

    @app.get("/v1/series/{uid}/forecast", tags=["answers"], dependencies=[read],
             summary="Forecast quantiles of one series (latest run, metric scale)")
    def forecast(request: Request, uid: Annotated[str, Path(pattern=_UID, description=(
            f"series id service:metric ({NAME_RULE} each)"))],
                 run_id: _RunId = None) -> Response:
        known_series(uid)
        chosen = run_id if run_id is not None else latest_run()
        return frame_response(request, store.forecasts(uid, chosen),
                              {"unique_id": uid, "run_id": chosen})

    @app.get("/v1/series/{uid}/history", tags=["data"], dependencies=[read],
             summary="Stored points of one series, optionally downsampled")
    def series_history(
        request: Request, uid: Annotated[str, Path(pattern=_UID, description=(
            f"series id service:metric ({NAME_RULE} each)"))],
        start: Annotated[_Time, _time_query("from (inclusive)")] = None,
        end: Annotated[_Time, _time_query("to (exclusive)")] = None,
        points: Annotated[int | None, Query(
            ge=1, le=100_000, description="downsample to about this many buckets (mean, min, "
                                          "max and count of each)")] = None,
    ) -> Response:
        service_name, metric = known_series(uid)
        frame = store.history(service_name, metric, _utc(start, "start"), _utc(end, "end"))
        if points is not None:
            frame = downsample(frame, points)
        return frame_response(request, frame, {"unique_id": uid})

    @app.get("/v1/history", tags=["data"], dependencies=[read],
             summary="Stored points in long format (unique_id, ds, y)")
    def history(
        request: Request, service_name: _Service = None,
        metric: Annotated[str | None, Query(pattern=_NAME, description=(
            f"only this metric ({NAME_RULE})"))] = None,
        start: Annotated[_Time, _time_query("from (inclusive)")] = None,
        end: Annotated[_Time, _time_query("to (exclusive)")] = None,
    ) -> Response:
        return frame_response(request, store.history(service_name, metric, _utc(start, "start"),
                                                     _utc(end, "end")), {})

    @app.get("/v1/anomalies", tags=["answers"], dependencies=[read],
             summary="Anomalies of the latest run, newest first")
    def anomalies(request: Request,
                  since: Annotated[_Time, _time_query("at or after this")] = None,
                  service_name: _Service = None,
                  precursors: Annotated[bool, Query(description="only precursors")] = False,
                  run_id: _RunId = None) -> Response:
        chosen = run_id if run_id is not None else latest_run()
        frame = store.anomalies(since=_utc(since, "since"), service=service_name,
                                run_id=chosen)
        if precursors:
            frame = frame.filter(pl.col("precursor"))
        return frame_response(request, frame, {"run_id": chosen})

    @app.get("/v1/reliability", tags=["answers"], dependencies=[read],
             summary="How right the published estimates proved, per series and overall")
    def reliability(request: Request,
                    since: Annotated[_Time, _time_query(
                        "estimates made at or after this (default: reliability_window ago)")
                    ] = None
                    ) -> Response:
        start = _utc(since, "since") or service.clock() - settings.reliability_window
        per_series, overall = store.reliability(since=start)
        if _wants_arrow(request):
            return Response(_arrow(per_series), media_type=ARROW)
        latest = store.run()
        detail = json.loads(latest["detail"]) if latest and latest.get("detail") else {}
        return Response(_dumps({"since": start, "overall": overall,
                                "calibration": detail.get("calibration"),
                                "items": _records(per_series)}), media_type="application/json")

    # -- runs --------------------------------------------------------------------------------

    @app.get("/v1/runs", tags=["runs"], dependencies=[read], summary="The newest runs")
    def runs(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> Response:
        return frame_response(request, store.runs(limit), {})

    @app.get("/v1/runs/{run_id}", tags=["runs"], dependencies=[read], summary="One run")
    def run(request: Request, run_id: _PathRunId) -> Response:
        found = store.run(run_id)
        if found is None:
            raise ApiError(404, f"no run {run_id}; GET /v1/runs lists them")
        if _wants_arrow(request):  # one row with the columns and types of GET /v1/runs
            return Response(_arrow(pl.DataFrame([found], schema=store.runs(0).schema)),
                            media_type=ARROW)
        if isinstance(found.get("detail"), str):
            found["detail"] = json.loads(found["detail"])
        return Response(_dumps(found), media_type="application/json")

    @app.get("/v1/runs/{run_id}/series", tags=["runs"], dependencies=[read],
             summary="Provenance of each series in a run")
    def run_series(request: Request, run_id: _PathRunId) -> Response:
        return frame_response(request, store.run_series(run_id), {"run_id": run_id})

    @app.post("/v1/runs", tags=["runs"], dependencies=[write], status_code=202,
              summary="Start a refresh now (202 with its id; 409 while one runs)")
    def start_run() -> JSONResponse:
        try:
            run_id = service.request_refresh()
        except RefreshBusyError as exc:
            raise ApiError(409, str(exc)) from None
        return JSONResponse({"run_id": run_id, "status": "running",
                             "url": f"/v1/runs/{run_id}"}, status_code=202,
                            headers={"Location": f"/v1/runs/{run_id}"})

    # -- writes ------------------------------------------------------------------------------

    async def batch(request: Request, kind: str) -> JSONResponse:
        shape = (f"a batch is a JSON array of {kind[:-1]} objects, or {{\"{kind}\": [...]}}, "
                 f"whose fields are {_SCALARS}")
        data = parse_json(await read_limited(request, settings.max_request_bytes),
                          BATCH_DEPTH, shape)
        if isinstance(data, dict):
            extra = next((key for key in data if key != kind), None)
            if extra is not None:
                raise ApiError(422, f"unexpected key {_shown(extra)}; {shape}")
        rows = data.get(kind) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ApiError(422, shape)
        if not rows:
            raise ApiError(422, f"the batch holds no {kind}")
        label = f"POST /v1/{kind}"
        parsed = rows_frame(rows, POINT_COLUMNS if kind == "points" else REQUEST_COLUMNS,
                            settings.max_reported_errors, label)
        ingest = ingest_points_frame if kind == "points" else ingest_requests_frame
        spec = ReadSpec(max_errors=settings.max_reported_errors)
        try:
            report = await run_in_threadpool(ingest, store, parsed.frame, service.clock(), spec,
                                             label)
        except InputError as exc:
            raise ApiError(422, str(exc)) from None
        report = merge_report(report, parsed, settings.max_reported_errors)
        service.count_ingest(kind, report.stored, report.updated, report.duplicates,
                             report.rejected)
        return JSONResponse(json.loads(_dumps({
            "rows": report.rows, "stored": report.stored, "updated": report.updated,
            "duplicates": report.duplicates, "rejected": report.rejected,
            "requests_stored": report.requests_stored,
            "errors": [{"row": e.row, "field": e.field, "message": e.message}
                       for e in report.errors],
        })))

    @app.post("/v1/points", tags=["ingest"], dependencies=[write],
              openapi_extra=_batch_body("points", PointIn),
              summary="Store a JSON batch of points (ts, service, metric, value[, unit])")
    async def post_points(request: Request) -> JSONResponse:
        return await batch(request, "points")

    @app.post("/v1/requests", tags=["ingest"], dependencies=[write],
              openapi_extra=_batch_body("requests", RequestIn),
              summary="Store a JSON batch of request-log rows and roll them up")
    async def post_requests(request: Request) -> JSONResponse:
        return await batch(request, "requests")

    @app.post("/v1/events", tags=["ingest"], dependencies=[write], status_code=201,
              openapi_extra=_json_body(EventIn),
              summary="Record a deploy, retrain or scale-out (forecasts train after it)")
    async def post_event(request: Request) -> JSONResponse:
        # Read like the batches (token first, bounded read), then validate with the model.
        shape = f"an event is a JSON object whose fields are {_SCALARS}"
        data = parse_json(await read_limited(request, settings.max_request_bytes),
                          EVENT_DEPTH, shape)
        if not isinstance(data, dict):
            raise ApiError(422, shape)
        try:
            event = EventIn.model_validate(data)
        except ValidationError as exc:
            raise ApiError(422, _problems(list(exc.errors()))) from None
        for name, value in data.items():
            # a lone surrogate passes the model, but no store can keep it
            problem = _unicode_problem(value, name) if isinstance(value, str) else None
            if problem is not None:
                raise ApiError(422, problem)
        ts = _utc(event.ts, "ts")
        assert ts is not None
        event_id = await run_in_threadpool(
            lambda: store.add_event(service=event.service, ts=ts, kind=event.kind,
                                    metric=event.metric, detail=event.detail,
                                    now=service.clock()))
        return JSONResponse({"event_id": event_id}, status_code=201)

    return app


_ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["status", "message"], "additionalProperties": False,
        "properties": {"status": {"type": "integer"},
                       "message": {"type": "string", "description": "what was wrong and what "
                                                                    "is allowed"}}}}}
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
    schemas["Error"] = _ERROR_SCHEMA
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


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (checked before reading when
    the client says its length, and while reading otherwise)."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, f"the body is larger than {limit} bytes (max_request_bytes); "
                              "send smaller batches")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


# A JSON string literal (escapes included), or an unterminated one up to the end: a match can
# never fail, so no quote inside a string is tried again as a start (which would be quadratic).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_EMPTY_PAIR = re.compile(rb"[\[{][\]}]")


def too_deep(body: bytes, depth: int) -> bool:
    """Whether JSON ``body`` nests arrays and objects more than ``depth`` levels, found without
    parsing it (a parser recurses per level) in time linear in the body.

    Strings are dropped, then only brackets are kept; each pass removes every innermost pair
    and so one level. Brackets left after ``depth`` passes mean deeper nesting (or brackets
    that do not match, which the parser then refuses).
    """
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(depth):
        if not brackets:
            return False
        brackets = _EMPTY_PAIR.sub(b"", brackets)
    return bool(brackets)


def parse_json(body: bytes, depth: int, shape: str) -> Any:
    """A request body parsed, refused with 422 when it is not JSON or nests too deep.

    Args:
        body: The raw body, already bounded in size.
        depth: How many levels of arrays and objects the body may nest.
        shape: What the body should be, for messages.
    """
    deep = ApiError(422, f"the body nests arrays or objects more than {depth} level"
                         f"{'s' if depth > 1 else ''} deep; {shape}")
    if too_deep(body, depth):
        try:
            json.loads(body)
        except RecursionError:
            raise deep from None
        except ValueError:
            pass  # not JSON at all: say that below
        else:
            raise deep
    try:
        return json.loads(body)
    except RecursionError:  # pragma: no cover - too_deep found it first
        raise deep from None
    except UnicodeDecodeError as exc:
        raise ApiError(422, f"the body is not UTF-8 text (byte {exc.start}); {shape}") from None
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"the body is not JSON: {exc.msg} at line {exc.lineno} column "
                            f"{exc.colno}; {shape}") from None
    except ValueError:  # an integer too long to convert, for one
        raise ApiError(422, f"the body holds a value JSON cannot carry here; {shape}") from None


class _BadField(ValueError):
    """A field value a batch row cannot have: that row is rejected, the batch goes on."""


@dataclass(frozen=True, slots=True)
class BatchRows:
    """A batch's rows as the ingest reads them, less the rows refused on the way.

    Attributes:
        frame: The rows that go to the ingest, as text columns.
        kept: The batch index (0-based) of each frame row, in order; None when no row was
            refused, so that frame row i is batch row i.
        rejected: How many rows were refused.
        errors: The first refused rows (row 1 is the first element of the batch), at most the
            ``max_errors`` asked for.
    """

    frame: pl.DataFrame
    kept: list[int] | None
    rejected: int
    errors: list[RowError]


def rows_frame(rows: list[Any], known: dict[str, bool], max_errors: int = 20,
               source: str = "batch") -> BatchRows:
    """JSON rows as a frame of text columns, validated by the ingest like a CSV file's (row 1 is
    the first element of the batch); one pass over the rows.

    A row with a field no store can keep (an array or object, text longer than
    ``MAX_FIELD_CHARS``, a unit longer than ``MAX_UNIT_CHARS``, a lone surrogate) is left out of
    the frame and reported with its row number and field: one bad row does not cost the others.

    Args:
        rows: The batch's row objects.
        known: The columns this kind of batch has (``ingest.POINT_COLUMNS`` or
            ``REQUEST_COLUMNS``).
        max_errors: How many refused rows to describe (the others are only counted).
        source: The label of the rows, for the errors.

    Raises:
        ApiError: (422) at the first row that is not an object or the first key that is not one
            of ``known``: the batch's shape is wrong, so none of it is read.
    """
    n = len(rows)
    columns: dict[str, list[str | None]] = {}
    keep: list[bool] | None = None
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ApiError(422, f"row {i + 1} is not a JSON object (it is "
                                f"{_json_type(row)}); each row is an object of "
                                f"{', '.join(known)}")
        bad = False
        for name, value in row.items():
            column = columns.get(name)
            if column is None:
                if name not in known:
                    raise ApiError(422, f"row {i + 1}: unknown field {_shown(name)}; known: "
                                        f"{', '.join(known)}")
                column = columns[name] = [None] * n
            if bad:
                continue  # one reason per row; later keys are still checked for the shape
            try:
                column[i] = _text(value, name)
            except _BadField as exc:
                bad = True
                rejected += 1
                if keep is None:
                    keep = [True] * n
                keep[i] = False
                if len(errors) < max_errors:
                    errors.append(RowError(source, i + 1, name, str(exc)))
    frame = pl.DataFrame(columns, schema={name: pl.String for name in columns})
    if keep is None:
        return BatchRows(frame, None, 0, [])
    kept = [i for i, ok in enumerate(keep) if ok]
    return BatchRows(frame.filter(pl.Series(keep)), kept, rejected, errors)


def merge_report(report: IngestReport, batch: BatchRows, max_errors: int) -> IngestReport:
    """The ingest's report on ``batch.frame`` as a report on the whole batch: row numbers of the
    batch, and the rows refused before the ingest counted and listed in row order."""
    if batch.kept is None:
        return report
    kept = batch.kept
    moved = [RowError(e.source, kept[e.row - 1] + 1, e.field, e.message) for e in report.errors]
    return replace(report, rows=report.rows + batch.rejected,
                   rejected=report.rejected + batch.rejected,
                   errors=sorted(moved + batch.errors, key=lambda e: e.row)[:max_errors])


def _json_type(value: object) -> str:
    return ("an array" if isinstance(value, list) else "an object" if isinstance(value, dict)
            else "null" if value is None else "true/false" if isinstance(value, bool)
            else "a number" if isinstance(value, int | float) else "text")


def _quoted(text: str) -> str:
    """Text for a message, cut to 60 characters (the store's messages cut the same way)."""
    return repr(text[:60]) + ("..." if len(text) > 60 else "")


def _text(value: object, name: str) -> str | None:
    """A scalar field as the text a CSV cell would hold.

    Raises:
        _BadField: the value is an array or object, too long, or not valid Unicode text.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise _BadField(f"{name} is {_json_type(value)}; a field is {_SCALARS}")
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_FIELD_CHARS:
        raise _BadField(f"{name} {_quoted(text)} is {len(text)} characters long; at most "
                        f"{MAX_FIELD_CHARS}")
    problem = _unicode_problem(text, name)
    if problem is not None:
        raise _BadField(problem)
    if name == "unit":
        # Measured as the store does (spaces trimmed), with the store's message: a file's unit
        # gets the same check in CHECK_POINTS. Refused here, the unit never takes part in
        # choosing a new series' unit, so the batch's other rows are not judged against it.
        unit = text.strip(" ")
        if len(unit) > MAX_UNIT_CHARS:
            raise _BadField(f"unit {_quoted(unit)} is {len(unit)} characters long; at most "
                            f"{MAX_UNIT_CHARS}")
    return text


def _unicode_problem(text: str, name: str) -> str | None:
    """Why ``text`` cannot be stored (a lone surrogate escape such as "\\ud800"), or None."""
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return (f"{name} is not valid Unicode text (a lone surrogate at character "
                f"{exc.start + 1}); a field is UTF-8 text")
    return None


def downsample(frame: pl.DataFrame, points: int) -> pl.DataFrame:
    """About ``points`` equal time buckets: their start, mean, min, max and count."""
    if frame.height <= points:
        return frame.with_columns(y_min=pl.col("y"), y_max=pl.col("y"), n=pl.lit(1, pl.UInt32))
    first, last = frame["ds"].min(), frame["ds"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    span_us = max(1, int((last - first).total_seconds() * 1e6))
    every = f"{-(-span_us // points)}us"
    return (frame.sort("ds")
            .group_by_dynamic("ds", every=every, group_by="unique_id", start_by="datapoint")
            .agg(y=pl.col("y").mean(), y_min=pl.col("y").min(), y_max=pl.col("y").max(),
                 n=pl.len().cast(pl.UInt32)))
