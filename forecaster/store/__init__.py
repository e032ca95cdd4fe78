"""DuckDB storage, split by what it keeps; each part's SQL is beside it.

``store.py``       :class:`Store`: the connection, a cursor per thread, the write lock and the
                   transactions; every read and write delegates to the part below that keeps it
``connection.py``  connecting to the file, the files this process holds, emptying a file to rebuild
``migrations.py``  every table's DDL as versioned steps; upgrading a file, refusing a newer one
``staging.py``     an input staged for ingest: read, typed, counted, rejects reported, logged
                   (SQL in ``staging_sql.py``)
``points.py``      series and points: check, merge, read back (``points_sql.py``)
``request_logs.py``  raw requests kept once each, rolled up into points (``request_logs_sql.py``)
``events.py``      deploys, retrains and other events
``runs.py``        runs and what they publish: provenance, forecasts, answers, anomalies, model
                   choices (``runs_sql.py``)
``scores.py``      self-scoring of published estimates, reliability, the calibration record
                   (``scores_sql.py``)
``reads.py``       :class:`StoreReads`, the reads a file and a server's API both offer
``query.py``       what every part does with a cursor (one row, a frame, a quoted name)
``lock.py``        who holds a file, and what a refused process is told

The names below are imported on first use (PEP 562), so that the HTTP client can use
``reads.py`` without loading DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forecaster.store.migrations import LATEST_VERSION, current_version, migrate
    from forecaster.store.reads import StoreReads, run_or_latest
    from forecaster.store.runs import INTERRUPTED
    from forecaster.store.staging import IngestOptions, Source
    from forecaster.store.store import Store

__all__ = [
    "INTERRUPTED", "LATEST_VERSION", "IngestOptions", "Source", "Store", "StoreReads",
    "current_version", "migrate", "run_or_latest",
]

# Public name -> the module that defines it.
_LAZY = {
    "INTERRUPTED": "forecaster.store.runs",
    "LATEST_VERSION": "forecaster.store.migrations",
    "current_version": "forecaster.store.migrations",
    "migrate": "forecaster.store.migrations",
    "IngestOptions": "forecaster.store.staging",
    "Source": "forecaster.store.staging",
    "Store": "forecaster.store.store",
    "StoreReads": "forecaster.store.reads",
    "run_or_latest": "forecaster.store.reads",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        # Submodules (`from forecaster.store import lock`) are found by the import system
        # after this refusal.
        raise AttributeError(f"module 'forecaster.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
