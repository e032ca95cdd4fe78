"""Read a running forecaster server over HTTP with the same calls, and the same polars frames,
as :class:`~forecaster.store.Store` gives from a file (both are
:class:`~forecaster.store.reads.StoreReads`).

While a server runs it is the only process that may open its database file, so a notebook reads
through the server instead::

    import forecaster
    store = forecaster.open_store("http://127.0.0.1:8000", token="...")
    store.interventions()          # the same frame as from the file
    store.history(service="chat-api")

Frames travel as Arrow IPC streams, so their columns and types are exactly those of the file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import polars as pl

from forecaster.media import ARROW
from forecaster.store.reads import run_or_latest


class RemoteError(RuntimeError):
    """The server refused a request; the message is the server's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class RemoteStore:
    """The read API of :class:`~forecaster.store.Store`, served by a forecaster server: a
    :class:`~forecaster.store.reads.StoreReads`.

    Args:
        url: The server's base address, for example ``http://127.0.0.1:8000``.
        token: A bearer token, when the server has tokens configured.
        timeout: Seconds to wait for each response.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None,
             arrow: bool = False) -> httpx.Response:
        clean = {k: (v.isoformat() if isinstance(v, datetime) else v)
                 for k, v in (params or {}).items() if v is not None}
        response = self._http.get(path, params=clean,
                                  headers={"Accept": ARROW} if arrow else None)
        _raise_for(response)
        return response

    def _frame(self, path: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        return pl.read_ipc_stream(self._get(path, params, arrow=True).content)

    # -- StoreReads: the Store's read API ----------------------------------------------------

    def latest_run_id(self) -> int | None:
        """The newest published run, if any (the one the server serves answers of)."""
        response = self._http.get("/readyz")  # 503 (not ready) still says which run it serves
        if response.status_code not in (200, 503):
            _raise_for(response)
        published = response.json().get("last_published_run")
        return int(published["run_id"]) if published else None

    def run(self, run_id: int | None = None) -> dict[str, Any] | None:
        """One run's row (default: the latest published run), or None."""
        run_id = run_or_latest(run_id, self.latest_run_id)
        if run_id is None or run_id < 1:  # ids start at 1
            return None
        try:
            rows = self._frame(f"/v1/runs/{run_id}").to_dicts()
        except RemoteError as exc:
            if exc.status == 404:
                return None
            raise
        return rows[0] if rows else None

    def runs(self, limit: int = 20) -> pl.DataFrame:
        """The newest runs, published or not."""
        return self._frame("/v1/runs", {"limit": limit})

    def interventions(self, run_id: int | None = None) -> pl.DataFrame:
        """The latest run's answers, most urgent first (only the latest run is served)."""
        if run_id is not None and run_id != (latest := self.latest_run_id()):
            raise RemoteError(404, f"the server serves the answers of its latest run "
                                   f"({latest}), not of run {run_id}")
        return self._frame("/v1/interventions")

    def forecasts(self, unique_id: str | None = None, run_id: int | None = None) -> pl.DataFrame:
        """Forecast quantiles of one series (the server serves them per series)."""
        if unique_id is None:
            frames = [self._frame(f"/v1/series/{uid}/forecast", {"run_id": run_id})
                      for uid in self.interventions()["unique_id"].to_list()]
            return pl.concat(frames) if frames else pl.DataFrame()
        return self._frame(f"/v1/series/{unique_id}/forecast", {"run_id": run_id})

    def run_series(self, run_id: int | None = None) -> pl.DataFrame:
        """Provenance of each series in a run (default: the latest)."""
        run_id = run_or_latest(run_id, self.latest_run_id)
        return self._frame(f"/v1/runs/{run_id}/series")

    def anomalies(self, since: datetime | None = None, service: str | None = None,
                  run_id: int | None = None) -> pl.DataFrame:
        """Anomalies a published run found (default: the latest), newest first."""
        return self._frame("/v1/anomalies", {"since": since, "service": service,
                                             "run_id": run_id})

    def series(self) -> pl.DataFrame:
        """Every stored series."""
        return self._frame("/v1/series")

    def history(self, service: str | None = None, metric: str | None = None,
                start: datetime | None = None, end: datetime | None = None) -> pl.DataFrame:
        """Stored points in long format (unique_id, ds, y), ``start <= ds < end``."""
        return self._frame("/v1/history", {"service": service, "metric": metric,
                                           "start": start, "end": end})

    # -- the server's own ----------------------------------------------------------------------

    def refresh(self) -> int:
        """Ask the server for a refresh now; returns the run id (poll :meth:`run` for it)."""
        response = self._http.post("/v1/runs")
        _raise_for(response)
        return int(response.json()["run_id"])


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    raise RemoteError(response.status_code, message)
