"""The HTTP API: FastAPI, versioned under ``/v1``, OpenAPI docs at ``/docs``.

Every read comes from published runs only. Answers of a run are served from memory once built
(they cannot change), each with ``ETag: "run-<id>"`` so that ``If-None-Match`` gets a 304 until
the next run, and ``Cache-Control: max-age`` up to the next scheduled refresh. Frames are JSON by
default, or Arrow IPC streams with ``Accept: application/vnd.apache.arrow.stream`` (the Python
client uses that, so it gets the same polars frames as from a file).

Errors are JSON: ``{"error": {"status": 404, "message": "..."}}``.
"""

from __future__ import annotations

import hmac
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import polars as pl
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from forecaster import metrics_text
from forecaster.ingest import ReadSpec, ingest_points_frame, ingest_requests_frame
from forecaster.schema import (
    DECISIONS,
    NAME_RULE,
    InputError,
    is_valid_name,
    split_unique_id,
    to_utc_naive,
)
from forecaster.service import RefreshBusyError, Service
from forecaster.summary import service_answers

ARROW = "application/vnd.apache.arrow.stream"
_DECISION_HELP = f"only these (repeatable): {', '.join(DECISIONS)}"
_RunId = Annotated[int | None, Query(description="default: the latest published run")]
_Service = Annotated[str | None, Query(alias="service", description="only this service")]
_JSON_COLUMNS = ("precursors", "features", "reliability")

try:
    __version__ = version("forecaster")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0"


class ApiError(HTTPException):
    """An error answered as JSON with a clear message."""


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc_naive(value)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    rows = frame.to_dicts()
    for name in _JSON_COLUMNS:
        if name in frame.columns:
            for row in rows:
                if isinstance(row[name], str):
                    row[name] = json.loads(row[name])
    return rows


def _dumps(body: object) -> bytes:
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()


def _arrow(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.write_ipc_stream(sink)
    return sink.getvalue()


def _wants_arrow(request: Request) -> bool:
    return ARROW in request.headers.get("accept", "")


class EventIn(BaseModel):
    """Something that changed a service: a deploy, a retrain, a scale-out done."""

    service: str = Field(description=f"service name ({NAME_RULE})")
    ts: datetime = Field(description="when it happened (ISO 8601; no offset means UTC)")
    kind: str = Field(description="what it was: deploy, retrain, scale_out, rollback, ...")
    metric: str | None = Field(default=None, description="the one metric it concerns, if any")
    detail: str | None = Field(default=None, description="free text")


class _RunCache:
    """Built response bodies of the latest published run (they never change)."""

    def __init__(self, latest: int | None) -> None:
        self.latest = latest
        self.bodies: dict[tuple[object, ...], bytes] = {}

    def published(self, run_id: int) -> None:
        self.latest = run_id
        self.bodies = {}


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

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": {"status": exc.status_code, "message": exc.detail}},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
            + (f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict)
               else "")
            for e in exc.errors())
        return JSONResponse({"error": {"status": 422, "message": problems}}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": {"status": 500,
                                       "message": f"{type(exc).__name__}: {exc}"}},
                            status_code=500)

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
        body = cache.bodies.get(key)
        if body is None:
            body = await run_in_threadpool(build)
            if key[0] == cache.latest:
                cache.bodies[key] = body
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
        except Exception as exc:  # noqa: BLE001
            checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
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
        decision: Annotated[list[str] | None, Query(description=_DECISION_HELP)] = None,
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
    def service_detail(service_name: str) -> Response:
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
    def forecast(request: Request, uid: str, run_id: _RunId = None) -> Response:
        known_series(uid)
        chosen = run_id if run_id is not None else latest_run()
        return frame_response(request, store.forecasts(uid, chosen),
                              {"unique_id": uid, "run_id": chosen})

    @app.get("/v1/series/{uid}/history", tags=["data"], dependencies=[read],
             summary="Stored points of one series, optionally downsampled")
    def series_history(
        request: Request, uid: str,
        start: Annotated[datetime | None, Query(description="from (inclusive)")] = None,
        end: Annotated[datetime | None, Query(description="to (exclusive)")] = None,
        points: Annotated[int | None, Query(
            ge=1, le=100_000, description="downsample to about this many buckets (mean, min, "
                                          "max and count of each)")] = None,
    ) -> Response:
        service_name, metric = known_series(uid)
        frame = store.history(service_name, metric, _utc(start), _utc(end))
        if points is not None:
            frame = downsample(frame, points)
        return frame_response(request, frame, {"unique_id": uid})

    @app.get("/v1/history", tags=["data"], dependencies=[read],
             summary="Stored points in long format (unique_id, ds, y)")
    def history(request: Request, service_name: _Service = None, metric: str | None = None,
                start: datetime | None = None, end: datetime | None = None) -> Response:
        return frame_response(request, store.history(service_name, metric, _utc(start),
                                                     _utc(end)), {})

    @app.get("/v1/anomalies", tags=["answers"], dependencies=[read],
             summary="Anomalies of the latest run, newest first")
    def anomalies(request: Request,
                  since: Annotated[datetime | None, Query(description="at or after this")] = None,
                  service_name: _Service = None,
                  precursors: Annotated[bool, Query(description="only precursors")] = False,
                  run_id: _RunId = None) -> Response:
        chosen = run_id if run_id is not None else latest_run()
        frame = store.anomalies(since=_utc(since), service=service_name, run_id=chosen)
        if precursors:
            frame = frame.filter(pl.col("precursor"))
        return frame_response(request, frame, {"run_id": chosen})

    @app.get("/v1/reliability", tags=["answers"], dependencies=[read],
             summary="How right the published estimates proved, per series and overall")
    def reliability(request: Request,
                    since: Annotated[datetime | None, Query(
                        description="estimates made at or after this (default: "
                                    "reliability_window ago)")] = None) -> Response:
        start = _utc(since) or service.clock() - settings.reliability_window
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
    def run(run_id: int) -> Response:
        found = store.run(run_id)
        if found is None:
            raise ApiError(404, f"no run {run_id}; GET /v1/runs lists them")
        if isinstance(found.get("detail"), str):
            found["detail"] = json.loads(found["detail"])
        return Response(_dumps(found), media_type="application/json")

    @app.get("/v1/runs/{run_id}/series", tags=["runs"], dependencies=[read],
             summary="Provenance of each series in a run")
    def run_series(request: Request, run_id: int) -> Response:
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
        body = await read_limited(request, settings.max_request_bytes)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ApiError(422, f"the body is not JSON: {exc}") from None
        rows = data.get(kind) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ApiError(422, f"the body must be a JSON array of {kind[:-1]} objects, or "
                                f'{{"{kind}": [...]}}')
        if not rows:
            raise ApiError(422, f"the batch holds no {kind}")
        frame = rows_frame(rows)
        ingest = ingest_points_frame if kind == "points" else ingest_requests_frame
        spec = ReadSpec(max_errors=settings.max_reported_errors)
        try:
            report = await run_in_threadpool(ingest, store, frame, service.clock(), spec,
                                             f"POST /v1/{kind}")
        except InputError as exc:
            raise ApiError(422, str(exc)) from None
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
              summary="Store a JSON batch of points (ts, service, metric, value[, unit])")
    async def post_points(request: Request) -> JSONResponse:
        return await batch(request, "points")

    @app.post("/v1/requests", tags=["ingest"], dependencies=[write],
              summary="Store a JSON batch of request-log rows and roll them up")
    async def post_requests(request: Request) -> JSONResponse:
        return await batch(request, "requests")

    @app.post("/v1/events", tags=["ingest"], dependencies=[write], status_code=201,
              summary="Record a deploy, retrain or scale-out (forecasts train after it)")
    def post_event(event: EventIn) -> JSONResponse:
        for field_name in ("service", "metric"):
            value = getattr(event, field_name)
            if value is not None and not is_valid_name(value):
                raise ApiError(422, f"{field_name} {value!r} is not a valid name ({NAME_RULE})")
        if not event.kind.strip():
            raise ApiError(422, "kind must not be empty")
        event_id = store.add_event(service=event.service, ts=_utc(event.ts),  # type: ignore[arg-type]
                                   kind=event.kind, metric=event.metric, detail=event.detail,
                                   now=service.clock())
        return JSONResponse({"event_id": event_id}, status_code=201)

    return app


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


def rows_frame(rows: list[Any]) -> pl.DataFrame:
    """JSON rows as a frame of text columns, validated by the ingest like a CSV file's (row 1 is
    the first element of the batch)."""
    columns: dict[str, list[str | None]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ApiError(422, f"row {i + 1} is not a JSON object")
        for name in row:
            columns.setdefault(str(name), [None] * len(rows))
    for i, row in enumerate(rows):
        for name, value in row.items():
            columns[str(name)][i] = _text(value)
    return pl.DataFrame(columns, schema={name: pl.String for name in columns})


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


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
