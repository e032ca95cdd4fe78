"""The reads a forecaster database offers, the same from a file as through a server.

:class:`~forecaster.store.Store` (a file) and :class:`~forecaster.client.RemoteStore` (a running
server's HTTP API) both satisfy :class:`StoreReads`, with the same calls returning the same
polars frames, so a notebook or command works on either. Kept light (no DuckDB, polars only for
type checking): the HTTP client imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    import polars as pl


@runtime_checkable
class StoreReads(Protocol):
    """The read API of a forecaster database: published runs and their answers, stored series.

    A read that takes ``run_id`` reads the latest published run when it is None
    (:func:`run_or_latest`).
    """

    def latest_run_id(self) -> int | None:
        """The newest published run, if any."""
        ...

    def run(self, run_id: int | None = None) -> dict[str, Any] | None:
        """One run's row (default: the latest published run), or None."""
        ...

    def runs(self, limit: int = 20) -> pl.DataFrame:
        """The newest runs, published or not."""
        ...

    def interventions(self, run_id: int | None = None) -> pl.DataFrame:
        """A published run's answers (default: the latest), most urgent first."""
        ...

    def forecasts(self, unique_id: str | None = None, run_id: int | None = None) -> pl.DataFrame:
        """A published run's forecast quantiles (default: the latest run), metric scale."""
        ...

    def run_series(self, run_id: int | None = None) -> pl.DataFrame:
        """Provenance of each series in a run (default: the latest)."""
        ...

    def anomalies(self, since: datetime | None = None, service: str | None = None,
                  run_id: int | None = None) -> pl.DataFrame:
        """Anomalies a published run found (default: the latest), newest first."""
        ...

    def series(self) -> pl.DataFrame:
        """Every stored series."""
        ...

    def history(self, service: str | None = None, metric: str | None = None,
                start: datetime | None = None, end: datetime | None = None) -> pl.DataFrame:
        """Stored points in long format (unique_id, ds, y), ``start <= ds < end``."""
        ...

    def close(self) -> None:
        """Release the file or the connections."""
        ...

    def __enter__(self) -> Self:
        ...

    def __exit__(self, *exc: object) -> None:
        ...


def run_or_latest(run_id: int | None, latest: Callable[[], int | None]) -> int | None:
    """The run a read is about: ``run_id`` when given, else the latest published run.

    Args:
        run_id: The run asked for, or None.
        latest: How this reader finds its latest published run (asked only when needed).
    """
    return run_id if run_id is not None else latest()
