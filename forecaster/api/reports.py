"""Weekly capacity-planning reports: the kept ones listed, one served as its page or its figures,
and one made now.

A kept report never changes until the same week's report is made again, so each answer has an
ETag of the week and the time it was made (``If-None-Match`` gets a 304) and ``Cache-Control:
no-cache``: a client keeps it and asks again cheaply. Routes carry their doc in ``summary``: a
docstring would become the operation's OpenAPI description.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from forecaster.api.deps import READ, WRITE, ServiceDep, StoreDep
from forecaster.api.wire import JSON, ApiError, json_response, records, shown
from forecaster.errors import ConfigError, InputError
from forecaster.report.week import Week, parse_week
from forecaster.service import ReportBusyError
from forecaster.store import Store

HTML = "text/html"
OFFERS = (HTML, JSON)  # what a report is served as, the default first
WEEK_HELP = "an ISO week, YYYY-Www (for example 2026-W48): Monday 00:00 UTC to the next Monday"
# Documented (so that generated clients and fuzzers send weeks), not enforced: parse_week decides
# and its message says the form.
WEEK_PATTERN = r"^(19[7-9][0-9]|2[01][0-9][0-9])-W(0[1-9]|[1-4][0-9]|5[0-3])$"
WEEKS_NAMED = 8  # kept weeks a 404 names

router = APIRouter(prefix="/v1", tags=["reports"])

_ERROR: dict[str, Any] = {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}
_SERVED: dict[int | str, dict[str, Any]] = {
    200: {"description": "the report: its self-contained HTML page (the default), or its "
                         "figures as JSON when `Accept` prefers application/json",
          "content": {f"{HTML}; charset=utf-8": {"schema": {"type": "string"}},
                      JSON: {"schema": {"type": "object"}}}},
    304: {"description": "not modified: `If-None-Match` names the report's ETag"},
    406: {"description": "the `Accept` header allows neither text/html nor application/json",
          "content": _ERROR},
}
_MADE: dict[int | str, dict[str, Any]] = {
    201: {"description": "made and kept: week, week_start, run_id, as_of, made_at, html_bytes, "
                         "url",
          "content": {JSON: {"schema": {"type": "object"}}}},
    404: {"description": "no run published yet, or none in that week", "content": _ERROR},
    409: {"description": "a report is being made", "content": _ERROR},
    503: {"description": "the policy file cannot be read", "content": _ERROR},
}


def week_param(text: str) -> Week:
    """A week from the ``week`` path or query parameter.

    Raises:
        ApiError: (422) not of the form ``YYYY-Www``, a week its year does not have, or a year
            outside the store's; the message names the week and the form.
    """
    try:
        return parse_week(text)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def _quality(params: list[str]) -> float:
    """A media range's ``q`` (1 when absent; a malformed one counts as 1: the client named the
    type, so it is taken as wanted)."""
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 1.0
            return q if math.isfinite(q) and 0.0 <= q <= 1.0 else 1.0
    return 1.0


def preferred(accept: str | None, offers: tuple[str, ...]) -> str | None:
    """The offer an ``Accept`` header prefers (RFC 9110 12.5.1).

    Each offer takes the ``q`` of the most specific range that matches it (``type/subtype``,
    then ``type/*``, then ``*/*``); the highest ``q`` wins, the earlier offer on a tie.

    Args:
        accept: The header, if sent (none or empty: the first offer).
        offers: Media types the answer can have, the default first.

    Returns:
        The chosen offer, or None when the header allows none of them.
    """
    if accept is None or not accept.strip():
        return offers[0]
    ranges: list[tuple[str, str, float]] = []
    for part in accept.split(","):
        media, *params = part.split(";")
        kind, _, sub = media.strip().lower().partition("/")
        if kind:
            ranges.append((kind, sub or "*", _quality(params)))
    best, best_q = None, 0.0
    for offer in offers:
        kind, _, sub = offer.partition("/")
        matches = [(2 if (k, s) == (kind, sub) else 1 if (k, s) == (kind, "*") else 0, q)
                   for k, s, q in ranges
                   if (k, s) in ((kind, sub), (kind, "*"), ("*", "*"))]
        if matches:
            q = max(matches)[1]  # the most specific range decides
            if q > best_q:
                best, best_q = offer, q
    return best


def _etag(report: dict[str, Any], media: str) -> str:
    made_at = report["made_at"]
    return f'"report-{report["week"]}-{made_at:%Y%m%dT%H%M%S%f}-{media.split("/")[1]}"'


def _not_found(store: Store, week: Week | None) -> ApiError:
    kept = store.reports(WEEKS_NAMED)["week"].to_list()
    if not kept:
        return ApiError(404, "no report kept yet: POST /v1/reports makes one (of the newest "
                             "run's week), or wait for the weekly job (report_day, report_time)")
    more = ", ..." if len(kept) == WEEKS_NAMED else ""
    return ApiError(404, f"no report of week {week} kept; kept: {', '.join(kept)}{more} "
                         f"(GET /v1/reports lists them; POST /v1/reports?week={week} makes it)")


async def _serve(request: Request, store: Store, week: Week | None) -> Response:
    """A kept report as the client's ``Accept`` prefers it."""
    media = preferred(request.headers.get("accept"), OFFERS)
    if media is None:
        raise ApiError(406, f"Accept {shown(request.headers.get('accept'))} allows neither "
                            f"{HTML} (the report's page) nor {JSON} (its figures)")
    label = None if week is None else week.label
    report = await run_in_threadpool(store.report, label)
    if report is None:
        raise await run_in_threadpool(_not_found, store, week)
    etag = _etag(report, media)
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept"}
    asked = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match",
                                                                        "").split(",")}
    if etag in asked or "*" in asked:
        return Response(status_code=304, headers=headers)
    if media == JSON:
        return Response(report["figures"].encode(), media_type=JSON, headers=headers)
    return Response(report["html"].encode(), media_type=f"{HTML}; charset=utf-8",
                    headers=headers)


@router.get("/reports", dependencies=[READ],
            summary="The kept weekly reports, newest week first (without their bodies)")
def reports(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 52) -> Response:
    items = records(store.reports(limit))
    for item in items:
        item["url"] = f"/v1/reports/{item['week']}"
    return json_response({"items": items})


@router.get("/reports/latest", dependencies=[READ], response_class=Response, responses=_SERVED,
            summary="The newest week's report: HTML, or its figures with Accept: "
                    "application/json")
async def latest_report(request: Request, store: StoreDep) -> Response:
    return await _serve(request, store, None)


@router.get("/reports/{week}", dependencies=[READ], response_class=Response, responses=_SERVED,
            summary="One week's report: HTML, or its figures with Accept: application/json")
async def week_report(request: Request, store: StoreDep, week: Annotated[str, Path(
        description=WEEK_HELP, json_schema_extra={"pattern": WEEK_PATTERN})]) -> Response:
    return await _serve(request, store, week_param(week))


@router.post("/reports", dependencies=[WRITE], status_code=201, responses=_MADE,
             summary="Make a week's report now and keep it (it takes seconds; 409 while one "
                     "is being made)")
async def make_report(service: ServiceDep, week: Annotated[str | None, Query(
        description=f"{WEEK_HELP}; default: the newest published run's week",
        json_schema_extra={"pattern": WEEK_PATTERN})] = None) -> Response:
    chosen = None if week is None else week_param(week)
    try:
        # seconds of work (mostly in the worker process): never on the event loop
        made = await run_in_threadpool(service.make_report, chosen)
    except ReportBusyError as exc:
        raise ApiError(409, str(exc)) from None
    except InputError as exc:
        raise ApiError(404, str(exc)) from None
    except ConfigError as exc:
        raise ApiError(503, f"cannot make the report: {exc}") from None
    url = f"/v1/reports/{made['week']}"
    return json_response({**made, "url": url}, 201, {"Location": url})
