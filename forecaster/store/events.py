"""Events: what changed a series' behaviour (a deploy, a retrain, a scale-out), as recorded."""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from forecaster.store.query import frame, one

INSERT_EVENT = """
INSERT INTO events (service, ts, kind, metric, detail, recorded_at) VALUES (?, ?, ?, ?, ?, ?)
RETURNING event_id"""
EVENTS = """
SELECT event_id, service, ts, kind, metric, detail, recorded_at FROM events
WHERE (? IS NULL OR service = ?) ORDER BY ts, event_id"""


def add_event(cur: duckdb.DuckDBPyConnection, *, service: str, ts: datetime, kind: str,
              now: datetime, metric: str | None, detail: str | None) -> int:
    """Record an event, recorded at ``now``; returns its id."""
    (event_id,) = one(cur, INSERT_EVENT, [service, ts, kind, metric, detail, now])
    return int(event_id)


def events(cur: duckdb.DuckDBPyConnection, service: str | None) -> pl.DataFrame:
    """Recorded events (of one service, or all), oldest first."""
    return frame(cur, EVENTS, [service, service])
