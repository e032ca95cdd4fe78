"""Self-scoring: each published estimate scored once against what happened, and the figures
(reliability) and record (for recalibration) read from those scores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from forecaster.store import scores_sql as sql
from forecaster.store.query import frame


def score_estimates(cur: duckdb.DuckDBPyConnection, now: datetime) -> int:
    """Score the estimates due by ``now``; returns how many were scored."""
    [(inserted,)] = cur.execute(sql.SCORE_ESTIMATES, [now]).fetchall()
    return int(inserted)


def reliability(cur: duckdb.DuckDBPyConnection,
                since: datetime) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Reliability figures of the estimates made since ``since``: per series, and overall."""
    per_series = frame(cur, sql.RELIABILITY, [since])
    overall = frame(cur, sql.RELIABILITY_OVERALL, [since]).to_dicts()[0]
    return per_series, overall


def calibration_record(cur: duckdb.DuckDBPyConnection, since: datetime) -> pl.DataFrame:
    """The scored estimates made since ``since`` that kept their raw distribution."""
    return frame(cur, sql.CALIBRATION_RECORD, [since])
