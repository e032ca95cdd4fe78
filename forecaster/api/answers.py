"""Answers of published runs: interventions, one service, a series' forecast, anomalies, and
how right past estimates proved (reliability).

Routes carry their doc in ``summary``: a docstring would become the operation's OpenAPI
description.
"""

from __future__ import annotations

import json
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Query, Request, Response

from forecaster.api.deps import (
    READ,
    CacheDep,
    ServiceDep,
    StoreDep,
    cached,
    known_series,
    latest_run,
    not_modified,
    run_headers,
)
from forecaster.api.params import (
    DECISION_HELP,
    RunId,
    SeriesPath,
    ServiceName,
    ServicePath,
    Time,
    time_query,
    utc,
)
from forecaster.api.wire import (
    JSON,
    ApiError,
    arrow,
    dumps,
    frame_response,
    json_response,
    records,
    wants_arrow,
)
from forecaster.media import ARROW
from forecaster.summary import service_answers
from forecaster.types import DECISIONS

router = APIRouter(prefix="/v1", tags=["answers"], dependencies=[READ])


@router.get("/interventions", summary="Latest answers, most urgent first")
async def interventions(
    request: Request, service: ServiceDep, store: StoreDep, cache: CacheDep,
    service_name: ServiceName = None,
    decision: Annotated[list[str] | None, Query(description=DECISION_HELP,
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
    run_id = latest_run(cache)
    headers = run_headers(service, run_id)
    if not_modified(request, run_id):
        return Response(status_code=304, headers=headers)
    as_arrow = wants_arrow(request)

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
        if as_arrow:
            return arrow(frame)
        run = store.run(run_id) or {}
        return dumps({"run_id": run_id, "as_of": run.get("as_of"),
                      "next_check_at": service.next_refresh_at(),
                      "items": records(frame)})

    key = (run_id, "interventions", service_name, tuple(decision or ()), min_p_breach,
           by_service, as_arrow)
    body = await cached(cache, key, build)
    return Response(body, media_type=ARROW if as_arrow else JSON, headers=headers)


@router.get("/services/{service_name}",
            summary="One service: its answer, every series' answer, its anomalies")
def service_detail(service_name: ServicePath, service: ServiceDep, store: StoreDep,
                   cache: CacheDep) -> Response:
    run_id = latest_run(cache)
    if store.series().filter(pl.col("service") == service_name).is_empty():
        raise ApiError(404, f"no service {service_name!r}; GET /v1/series lists them")
    answers = records(store.interventions(run_id).filter(pl.col("service") == service_name))
    return json_response({
        "service": service_name, "run_id": run_id,
        "answer": answers[0] if answers else None, "series": answers,
        "anomalies": records(store.anomalies(service=service_name, run_id=run_id)),
    }, headers=run_headers(service, run_id))


@router.get("/series/{uid}/forecast",
            summary="Forecast quantiles of one series (latest run, metric scale)")
def forecast(request: Request, uid: SeriesPath, store: StoreDep, cache: CacheDep,
             run_id: RunId = None) -> Response:
    known_series(store, uid)
    chosen = run_id if run_id is not None else latest_run(cache)
    return frame_response(request, store.forecasts(uid, chosen),
                          {"unique_id": uid, "run_id": chosen})


@router.get("/anomalies", summary="Anomalies of the latest run, newest first")
def anomalies(request: Request, store: StoreDep, cache: CacheDep,
              since: Annotated[Time, time_query("at or after this")] = None,
              service_name: ServiceName = None,
              precursors: Annotated[bool, Query(description="only precursors")] = False,
              run_id: RunId = None) -> Response:
    chosen = run_id if run_id is not None else latest_run(cache)
    frame = store.anomalies(since=utc(since, "since"), service=service_name, run_id=chosen)
    if precursors:
        frame = frame.filter(pl.col("precursor"))
    return frame_response(request, frame, {"run_id": chosen})


@router.get("/reliability",
            summary="How right the published estimates proved, per series and overall")
def reliability(request: Request, service: ServiceDep, store: StoreDep,
                since: Annotated[Time, time_query(
                    "estimates made at or after this (default: reliability_window ago)")
                ] = None) -> Response:
    start = utc(since, "since") or service.clock() - service.settings.reliability_window
    per_series, overall = store.reliability(since=start)
    if wants_arrow(request):
        return Response(arrow(per_series), media_type=ARROW)
    latest = store.run()
    detail = json.loads(latest["detail"]) if latest and latest.get("detail") else {}
    return json_response({"since": start, "overall": overall,
                          "calibration": detail.get("calibration"),
                          "items": records(per_series)})
