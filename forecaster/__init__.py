"""forecaster: when will each LLM service need an intervention, how sure, and by when to act.

The Python API notebooks and scripts use::

    import forecaster
    store = forecaster.open_store("forecaster.duckdb")
    forecaster.ingest_points_frame(store, frame, now=forecaster.utcnow())
    store.history(service="chat-api")   # polars: unique_id, ds, y
    forecaster.refresh(store)           # forecast and publish one run
    store.interventions()               # the answers, most urgent first

The names below are imported on first use (PEP 562), so that ``import forecaster`` and the
command line start without loading DuckDB, polars, statsforecast or PyOD.
"""

from __future__ import annotations

import importlib
import importlib.util
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.clock import utcnow

if TYPE_CHECKING:
    from forecaster.config import Settings, load_settings
    from forecaster.ingest_report import IngestReport, RowError
    from forecaster.pipeline import RunResult, run_once
    from forecaster.policies import Policy, load_policies
    from forecaster.sources.files import (
        ReadSpec,
        ingest_files,
        ingest_points_frame,
        ingest_requests_frame,
    )
    from forecaster.store import Store
    from forecaster.store.reads import StoreReads
    from forecaster.summary import service_answers

__all__ = [
    "IngestReport", "Policy", "ReadSpec", "RowError", "RunResult", "Settings", "Store",
    "ingest_files", "ingest_points_frame", "ingest_requests_frame", "load_policies",
    "load_settings", "open_store", "refresh", "run_once", "service_answers", "utcnow",
]

# Public name -> the module that defines it.
_LAZY = {
    "IngestReport": "forecaster.ingest_report",
    "RowError": "forecaster.ingest_report",
    "Policy": "forecaster.policies",
    "load_policies": "forecaster.policies",
    "ReadSpec": "forecaster.sources.files",
    "ingest_files": "forecaster.sources.files",
    "ingest_points_frame": "forecaster.sources.files",
    "ingest_requests_frame": "forecaster.sources.files",
    "RunResult": "forecaster.pipeline",
    "run_once": "forecaster.pipeline",
    "Settings": "forecaster.config",
    "load_settings": "forecaster.config",
    "Store": "forecaster.store",
    "service_answers": "forecaster.summary",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        # A submodule (`forecaster.summary` after `import forecaster`, as when the package
        # imported them all); anything else is no attribute of ours.
        if importlib.util.find_spec(f"forecaster.{name}") is None:
            raise AttributeError(f"module 'forecaster' has no attribute {name!r}")
        return importlib.import_module(f"forecaster.{name}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def open_store(path: str | Path, settings: Settings | None = None,
               read_only: bool = False, token: str | None = None) -> StoreReads:
    """Open a forecaster database for a notebook or script: a file (created or upgraded when
    needed), or the address of a running server (``http://...``), read through its API with the
    same calls and frames (:class:`~forecaster.store.reads.StoreReads`; a file opens as a
    :class:`~forecaster.store.Store`, which also ingests and refreshes)."""
    if isinstance(path, str) and path.startswith(("http://", "https://")):
        from forecaster.client import RemoteStore

        return RemoteStore(path, token=token)
    from forecaster.store import Store

    return Store.open(path, now=utcnow(), settings=settings, read_only=read_only)


def refresh(store: Store, now: datetime | None = None, settings: Settings | None = None,
            policies: str | Path | None = None, reselect: bool = False) -> RunResult:
    """Forecast every series with a policy and publish one run (see :func:`run_once`).

    Args:
        store: An open store.
        now: The time to answer for; default the current time.
        settings: Thresholds and jobs; default the built-in settings.
        policies: A policy TOML file added to the built-in policies.
        reselect: Re-make every model choice now.

    Returns:
        The published run's result.

    Raises:
        RefreshFailedError: the run failed as a whole (it is recorded as failed, with why;
            :func:`run_once` returns such a result instead of raising, for callers that record
            failures themselves).
    """
    from forecaster.config import Settings
    from forecaster.errors import RefreshFailedError
    from forecaster.pipeline import run_once
    from forecaster.policies import load_policies

    result = run_once(store, settings or Settings(), load_policies(Path(policies) if policies
                                                                   else None),
                      now or utcnow(), reselect=reselect, clock=utcnow)
    if result.status != "published":
        raise RefreshFailedError(f"refresh run {result.run_id} failed: {result.error}")
    return result
