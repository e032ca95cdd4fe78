"""Charts of the latest published run as SVG: one series (history, forecast fan, limit, crossing
interval) and one service's demand against its learned capacity, the same pictures the weekly
report shows (:mod:`forecaster.report.pictures`).

A chart is drawn once per run (the run cache keeps it, like every answer of the latest run) in a
worker thread: a series chart takes about 0.4 s, a service's about 1.5 s (the capacity fits).
They are not sent to the refresh's worker process, where they would wait behind a refresh that
can take minutes. Routes carry their doc in ``summary``: a docstring would become the
operation's OpenAPI description.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

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
from forecaster.api.params import SeriesPath, ServicePath
from forecaster.api.wire import ApiError
from forecaster.errors import ConfigError
from forecaster.names import split_unique_id
from forecaster.policies import Policy
from forecaster.store import Store

SVG = "image/svg+xml"
# How far ahead a service's demand is forecast (the report's horizon).
_AFTER = timedelta(microseconds=1)  # the run's as-of point included in its history

router = APIRouter(prefix="/v1", tags=["charts"], dependencies=[READ])

_ERROR: dict[str, Any] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _drawn(what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": f"{what}, an SVG document (glyphs as paths: no fonts needed)",
                  "content": {SVG: {"schema": {"type": "string"}}}},
            304: {"description": "not modified: `If-None-Match` names the run's ETag"}}


def series_svg(store: Store, uid: str, run_id: int) -> bytes:
    """The chart of series ``uid`` in run ``run_id``: the last eight weeks of its history, the
    run's forecast fan, its policy's limit and the crossing interval."""
    from forecaster.report import charts, pictures
    from forecaster.report.build import HISTORY

    run = store.run(run_id)
    assert run is not None  # the run cache names published runs only
    as_of = run["as_of"]
    service_name, metric = split_unique_id(uid)
    history = store.history(service_name, metric, as_of - HISTORY, as_of + _AFTER)
    answers = store.interventions(run_id).filter(pl.col("unique_id") == uid).to_dicts()
    units = store.series().filter(pl.col("unique_id") == uid)["unit"].to_list()
    figure = pictures.series_figure(uid, (units[0] or "") if units else "",
                                    history.select("ds", "y").sort("ds"),
                                    store.forecasts(uid, run_id), answers[0] if answers else None,
                                    as_of)
    return charts.to_svg(figure).encode()


def service_svg(store: Store, policies: tuple[Policy, ...], service_name: str, run_id: int,
                seed: int) -> bytes:
    """The demand chart of ``service_name`` as of run ``run_id``: its demand history and
    forecast against the capacity learned from its own history (``plan_service``).

    Raises:
        ApiError: (404) the service has no demand series.
    """
    from forecaster.report import charts, pictures, planning
    from forecaster.report.build import HISTORY, HORIZON

    series = store.series().filter(pl.col("service") == service_name)
    run = store.run(run_id)
    assert run is not None  # the run cache names published runs only
    as_of = run["as_of"]
    history = store.history(service_name, None, as_of - HISTORY, as_of + _AFTER)
    units = dict(zip(series["metric"].to_list(), series["unit"].fill_null("").to_list(),
                     strict=True))
    plan = planning.plan_service(service_name, history, units, policies, (), HORIZON,
                                 seed)
    if plan.load_metric is None:
        raise ApiError(404, f"service {service_name!r} has no demand chart: {plan.problem} in "
                            f"the {HISTORY.days // 7} weeks up to run {run_id}")
    demand = (history.filter(pl.col("unique_id") == f"{service_name}:{plan.load_metric}")
              .select("ds", "y").sort("ds"))
    return charts.to_svg(pictures.demand_figure(plan, demand, as_of)).encode()


@router.get("/series/{uid}/chart.svg", response_class=Response,
            responses=_drawn("the series' chart"),
            summary="One series' chart (latest run): 8 weeks of history, the forecast fan, "
                    "the limit and the crossing interval")
async def series_chart(request: Request, uid: SeriesPath, service: ServiceDep, store: StoreDep,
                       cache: CacheDep) -> Response:
    await run_in_threadpool(known_series, store, uid)
    run_id = latest_run(cache)
    headers = run_headers(service, run_id)
    if not_modified(request, run_id):
        return Response(status_code=304, headers=headers)
    body = await cached(cache, (run_id, "series.svg", uid),
                        lambda: series_svg(store, uid, run_id))
    return Response(body, media_type=SVG, headers=headers)


@router.get("/services/{service_name}/chart.svg", response_class=Response,
            responses={**_drawn("the service's demand chart"),
                       503: {"description": "the policy file cannot be read",
                             "content": _ERROR}},
            summary="One service's demand chart (latest run): demand and its forecast against "
                    "the capacity learned from its history")
async def service_chart(request: Request, service_name: ServicePath, service: ServiceDep,
                        store: StoreDep, cache: CacheDep) -> Response:
    await run_in_threadpool(_known_service, store, service_name)
    run_id = latest_run(cache)
    headers = run_headers(service, run_id)
    if not_modified(request, run_id):
        return Response(status_code=304, headers=headers)

    def build() -> bytes:
        try:
            policies = service.policies()  # read now: the file may have changed
        except ConfigError as exc:
            raise ApiError(503, f"cannot draw the chart: {exc}") from None
        return service_svg(store, policies, service_name, run_id, service.settings.seed)

    body = await cached(cache, (run_id, "service.svg", service_name), build)
    return Response(body, media_type=SVG, headers=headers)


def _known_service(store: Store, service_name: str) -> None:
    if store.series().filter(pl.col("service") == service_name).is_empty():
        raise ApiError(404, f"no service {service_name!r}; GET /v1/series lists them")
