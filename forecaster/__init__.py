"""forecaster: when will each LLM service need an intervention, how sure, and by when to act.

The Python API notebooks and scripts use::

    import forecaster
    store = forecaster.open_store("forecaster.duckdb")
    forecaster.ingest_points_frame(store, frame, now=forecaster.utcnow())
    store.history(service="chat-api")   # polars: unique_id, ds, y
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from forecaster.config import Settings, load_settings
from forecaster.ingest import (
    ReadSpec,
    ingest_files,
    ingest_points_frame,
    ingest_requests_frame,
)
from forecaster.schema import IngestReport, RowError
from forecaster.store import Store

__all__ = [
    "IngestReport", "ReadSpec", "RowError", "Settings", "Store", "ingest_files",
    "ingest_points_frame", "ingest_requests_frame", "load_settings", "open_store", "utcnow",
]


def utcnow() -> datetime:
    """The current time in UTC, naive, as the store keeps times."""
    return datetime.now(UTC).replace(tzinfo=None)


def open_store(path: str | Path, settings: Settings | None = None,
               read_only: bool = False) -> Store:
    """Open (creating or upgrading) a forecaster database for a notebook or script."""
    return Store.open(path, now=utcnow(), settings=settings, read_only=read_only)
