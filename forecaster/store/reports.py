"""Weekly capacity-planning reports, kept as made: one per ISO week, the page and its figures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from forecaster.store import reports_sql as sql
from forecaster.store.query import frame


def save_report(cur: duckdb.DuckDBPyConnection, *, week: str, week_start: datetime, run_id: int,
                as_of: datetime, made_at: datetime, html: str, figures: str) -> None:
    """Keep a week's report, replacing an earlier one of the same week."""
    cur.execute(sql.SAVE_REPORT, [week, week_start, run_id, as_of, made_at, html, figures])


def reports(cur: duckdb.DuckDBPyConnection, limit: int) -> pl.DataFrame:
    """The kept reports, newest week first (without their bodies)."""
    return frame(cur, sql.REPORTS, [limit])


def report(cur: duckdb.DuckDBPyConnection, week: str | None) -> dict[str, Any] | None:
    """One week's report (the newest when ``week`` is None) with its page and figures."""
    rows = (frame(cur, sql.LATEST_REPORT) if week is None
            else frame(cur, sql.REPORT, [week])).to_dicts()
    return rows[0] if rows else None
