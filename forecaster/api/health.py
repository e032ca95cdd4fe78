"""Health: ``/healthz`` (alive), ``/readyz`` (database, scheduler, last runs, Prometheus
sources), ``/metrics``.

Routes carry their doc in ``summary``: a docstring would become the operation's OpenAPI
description.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Response

from forecaster.api import metrics_text
from forecaster.api.deps import READ, CacheDep, ServiceDep, StoreDep
from forecaster.api.wire import json_response

log = logging.getLogger("forecaster.api")

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz", summary="Database open, last run, scheduler running")
def readyz(service: ServiceDep, store: StoreDep, cache: CacheDep) -> Response:
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
    checks["report_job"] = service.report_job()
    # failing Prometheus sources are shown, not fatal: the service still answers from its data
    checks["prometheus_sources"] = service.puller.report()
    ready = bool(checks["database"]["ok"] and checks["scheduler"]["ok"])
    return json_response({"ready": ready, **checks}, 200 if ready else 503)


@router.get("/metrics", dependencies=[READ],
            summary="Prometheus text: eta quantiles, p_breach, decisions, runs, ingest")
def metrics(service: ServiceDep, store: StoreDep, cache: CacheDep) -> Response:
    return Response(metrics_text.render(store, service, cache.latest),
                    media_type=metrics_text.CONTENT_TYPE)
