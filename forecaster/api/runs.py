"""Runs: the newest, one, the provenance of its series, and starting a refresh now.

Routes carry their doc in ``summary``: a docstring would become the operation's OpenAPI
description.
"""

from __future__ import annotations

import json
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Query, Request, Response

from forecaster.api.deps import READ, WRITE, ServiceDep, StoreDep
from forecaster.api.params import PathRunId
from forecaster.api.wire import ApiError, arrow, frame_response, json_response, wants_arrow
from forecaster.media import ARROW
from forecaster.service import RefreshBusyError

router = APIRouter(prefix="/v1", tags=["runs"])


@router.get("/runs", dependencies=[READ], summary="The newest runs")
def runs(request: Request, store: StoreDep,
         limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> Response:
    return frame_response(request, store.runs(limit), {})


@router.get("/runs/{run_id}", dependencies=[READ], summary="One run")
def run(request: Request, run_id: PathRunId, store: StoreDep) -> Response:
    found = store.run(run_id)
    if found is None:
        raise ApiError(404, f"no run {run_id}; GET /v1/runs lists them")
    if wants_arrow(request):  # one row with the columns and types of GET /v1/runs
        return Response(arrow(pl.DataFrame([found], schema=store.runs(0).schema)),
                        media_type=ARROW)
    if isinstance(found.get("detail"), str):
        found["detail"] = json.loads(found["detail"])
    return json_response(found)


@router.get("/runs/{run_id}/series", dependencies=[READ],
            summary="Provenance of each series in a run")
def run_series(request: Request, run_id: PathRunId, store: StoreDep) -> Response:
    return frame_response(request, store.run_series(run_id), {"run_id": run_id})


@router.post("/runs", dependencies=[WRITE], status_code=202,
             summary="Start a refresh now (202 with its id; 409 while one runs)")
def start_run(service: ServiceDep) -> Response:
    try:
        run_id = service.request_refresh()
    except RefreshBusyError as exc:
        raise ApiError(409, str(exc)) from None
    return json_response({"run_id": run_id, "status": "running", "url": f"/v1/runs/{run_id}"},
                         202, {"Location": f"/v1/runs/{run_id}"})
