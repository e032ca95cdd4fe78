"""Runs and what they publish: a run is started, then published (its series' provenance,
forecasts, answers, anomalies and model choices in one transaction) or failed. Readers see
published runs only.

The reads take an explicit run id; which run they default to (the latest published) is
decided once, by :func:`forecaster.store.reads.run_or_latest`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from forecaster.store import runs_sql as sql
from forecaster.store.query import frame, one

# How the error of a run failed on open begins (metrics_text counts them by it).
INTERRUPTED = "interrupted:"


def start_run(cur: duckdb.DuckDBPyConnection, started_at: datetime, as_of: datetime,
              trigger: str) -> int:
    """Record a run as ``running``; returns its id."""
    (run_id,) = one(cur, sql.START_RUN, [started_at, as_of, trigger])
    return int(run_id)


def publish_run(
    cur: duckdb.DuckDBPyConnection, run_id: int, finished_at: datetime, *,
    run_series: pl.DataFrame, forecasts: pl.DataFrame, interventions: pl.DataFrame,
    choices: pl.DataFrame, detail: str, anomalies: pl.DataFrame | None,
) -> None:
    """Insert everything a run computed and mark it published, in the transaction on ``cur``."""
    for name, rows, statement in (
            ("new_run_series", run_series, sql.PUBLISH_RUN_SERIES),
            ("new_forecasts", forecasts, sql.PUBLISH_FORECASTS),
            ("new_interventions", interventions, sql.PUBLISH_INTERVENTIONS),
            ("new_choices", choices, sql.SAVE_CHOICES),
            ("new_anomalies", anomalies if anomalies is not None else pl.DataFrame(),
             sql.PUBLISH_ANOMALIES)):
        if rows.height:
            cur.register(name, rows.to_arrow())
            cur.execute(statement)
            cur.unregister(name)
    cur.execute(sql.FINISH_RUN, ["published", finished_at, None, detail, run_id])


def fail_run(cur: duckdb.DuckDBPyConnection, run_id: int, finished_at: datetime, error: str,
             detail: str) -> None:
    """Mark a run failed, with why."""
    cur.execute(sql.FINISH_RUN, ["failed", finished_at, error, detail, run_id])


def fail_interrupted_runs(con: duckdb.DuckDBPyConnection, now: datetime) -> list[int]:
    """Mark failed every run left ``running``, saying it was interrupted; return their ids.

    Only for a file this process alone holds writable: no other process can be running a run
    in it.
    """
    at = f"{now:%Y-%m-%dT%H:%M:%S}Z"
    error = (f"{INTERRUPTED} the process that ran it stopped before it finished; marked failed "
             f"when the file was next opened at {at}")
    detail = json.dumps({"stage": "interrupted", "marked_failed_at": at})
    rows = con.execute(sql.FAIL_INTERRUPTED_RUNS, [error, detail]).fetchall()
    return sorted(int(run_id) for (run_id,) in rows)


def model_choices(cur: duckdb.DuckDBPyConnection) -> dict[int, tuple[str, datetime]]:
    """Stored model choice and when it was made, by series id."""
    rows = cur.execute(sql.MODEL_CHOICES).fetchall()
    return {int(sid): (model, at) for sid, model, at in rows}


# ---------------------------------------------------------------------------------------------
# Reads


def latest_run_id(cur: duckdb.DuckDBPyConnection) -> int | None:
    """The newest published run, if any."""
    rows = cur.execute(sql.LATEST_PUBLISHED_RUN).fetchall()
    return int(rows[0][0]) if rows else None


def run(cur: duckdb.DuckDBPyConnection, run_id: int | None) -> dict[str, Any] | None:
    """One run's row, or None."""
    rows = frame(cur, sql.RUN, [run_id]).to_dicts()
    return rows[0] if rows else None


def run_before(cur: duckdb.DuckDBPyConnection, end: datetime) -> dict[str, Any] | None:
    """The latest published run whose as-of time is before ``end``, or None."""
    rows = frame(cur, sql.RUN_BEFORE, [end]).to_dicts()
    return rows[0] if rows else None


def anomalies_between(cur: duckdb.DuckDBPyConnection, start: datetime,
                      end: datetime) -> pl.DataFrame:
    """Anomalies any published run found in ``[start, end)``, once per series and time,
    precursors first, then newest first."""
    return frame(cur, sql.ANOMALIES_BETWEEN, [start, end])


def runs(cur: duckdb.DuckDBPyConnection, limit: int) -> pl.DataFrame:
    """The newest runs, published or not."""
    return frame(cur, sql.RUNS, [limit])


def interventions(cur: duckdb.DuckDBPyConnection, run_id: int | None) -> pl.DataFrame:
    """A run's answers, most urgent first."""
    return frame(cur, sql.INTERVENTIONS, [run_id])


def anomalies(cur: duckdb.DuckDBPyConnection, run_id: int | None, since: datetime | None,
              service: str | None) -> pl.DataFrame:
    """The anomalies a run found (at or after ``since``, of ``service``), newest first."""
    return frame(cur, sql.ANOMALIES, [run_id, since, since, service, service])


def forecasts(cur: duckdb.DuckDBPyConnection, run_id: int | None,
              unique_id: str | None) -> pl.DataFrame:
    """A run's forecast quantiles (of one series, or all), metric scale."""
    return frame(cur, sql.FORECASTS, [run_id, unique_id, unique_id])


def run_series(cur: duckdb.DuckDBPyConnection, run_id: int | None) -> pl.DataFrame:
    """Provenance of each series in a run."""
    return frame(cur, sql.RUN_SERIES, [run_id])
