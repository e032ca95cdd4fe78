"""Pushed data: batches of points and of request-log rows, and events (deploys, retrains).

The token is checked before a body is read (the router's dependency), bodies are read up to
``max_request_bytes`` (413 beyond) and their nesting bounded before they are parsed. Routes carry
their doc in ``summary``: a docstring would become the operation's OpenAPI description.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from forecaster.api.deps import WRITE, ServiceDep
from forecaster.api.models import EVENT_DEPTH, EventIn, PointIn, RequestIn, batch_body, json_body
from forecaster.api.params import utc
from forecaster.api.rows import BATCH_DEPTH, SCALARS, merge_report, rows_frame, unicode_problem
from forecaster.api.wire import ApiError, json_response, parse_json, problems, read_limited, shown
from forecaster.errors import InputError
from forecaster.service import Service
from forecaster.sources.files import (
    POINT_COLUMNS,
    REQUEST_COLUMNS,
    ReadSpec,
    ingest_points_frame,
    ingest_requests_frame,
)

router = APIRouter(prefix="/v1", tags=["ingest"], dependencies=[WRITE])


@router.post("/points", openapi_extra=batch_body("points", PointIn),
             summary="Store a JSON batch of points (ts, service, metric, value[, unit])")
async def post_points(request: Request, service: ServiceDep) -> Response:
    return await batch(request, service, "points")


@router.post("/requests", openapi_extra=batch_body("requests", RequestIn),
             summary="Store a JSON batch of request-log rows and roll them up")
async def post_requests(request: Request, service: ServiceDep) -> Response:
    return await batch(request, service, "requests")


@router.post("/events", status_code=201, openapi_extra=json_body(EventIn),
             summary="Record a deploy, retrain or scale-out (forecasts train after it)")
async def post_event(request: Request, service: ServiceDep) -> Response:
    # Read like the batches (token first, bounded read), then validate with the model.
    shape = f"an event is a JSON object whose fields are {SCALARS}"
    data = parse_json(await read_limited(request, service.settings.max_request_bytes),
                      EVENT_DEPTH, shape)
    if not isinstance(data, dict):
        raise ApiError(422, shape)
    try:
        event = EventIn.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, problems(list(exc.errors()))) from None
    for name, value in data.items():
        # a lone surrogate passes the model, but no store can keep it
        problem = unicode_problem(value, name) if isinstance(value, str) else None
        if problem is not None:
            raise ApiError(422, problem)
    ts = utc(event.ts, "ts")
    assert ts is not None
    event_id = await run_in_threadpool(
        lambda: service.store.add_event(service=event.service, ts=ts, kind=event.kind,
                                        metric=event.metric, detail=event.detail,
                                        now=service.clock()))
    return json_response({"event_id": event_id}, 201)


async def batch(request: Request, service: Service, kind: str) -> Response:
    """Store a pushed batch of ``kind`` (``points`` or ``requests``) and report on every row.

    Args:
        request: The request; its body is read here, bounded.
        service: The service whose store takes the rows.
        kind: The batch's kind: its key in ``{kind: [...]}`` and its path.

    Raises:
        ApiError: (413) the body is too large; (422) it is not a batch of row objects of the
            kind's fields, or the ingest refuses it whole.
    """
    settings = service.settings
    shape = (f"a batch is a JSON array of {kind[:-1]} objects, or {{\"{kind}\": [...]}}, "
             f"whose fields are {SCALARS}")
    data = parse_json(await read_limited(request, settings.max_request_bytes), BATCH_DEPTH, shape)
    if isinstance(data, dict):
        extra = next((key for key in data if key != kind), None)
        if extra is not None:
            raise ApiError(422, f"unexpected key {shown(extra)}; {shape}")
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
        report = await run_in_threadpool(ingest, service.store, parsed.frame, service.clock(),
                                         spec, label)
    except InputError as exc:
        raise ApiError(422, str(exc)) from None
    report = merge_report(report, parsed, settings.max_reported_errors)
    service.count_ingest(kind, report.stored, report.updated, report.duplicates,
                         report.rejected)
    return json_response({
        "rows": report.rows, "stored": report.stored, "updated": report.updated,
        "duplicates": report.duplicates, "rejected": report.rejected,
        "requests_stored": report.requests_stored,
        "errors": [{"row": e.row, "field": e.field, "message": e.message}
                   for e in report.errors],
    })
