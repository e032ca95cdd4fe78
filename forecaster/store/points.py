"""The series and their points: checking and merging metric points, and reading them back.

A point is kept once per (series, timestamp): the single writer's merge keeps it so (see
:func:`merge_incoming`), not a key on the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import polars as pl
import pyarrow as pa

from forecaster.ingest_report import IngestReport
from forecaster.kinds import KIND_RANGE, metric_kind
from forecaster.names import MAX_UNIT_CHARS
from forecaster.store import points_sql as sql
from forecaster.store import staging
from forecaster.store.query import frame, one
from forecaster.store.staging import Columns, IngestOptions, Source
from forecaster.store.staging_sql import NULL_NUMBER, NULL_TEXT, SERVICE_CONSTANT

# (service, metric, unit, kind) of a series as it arrives.
SeriesKey = tuple[str, str, str | None, str]


def ingest_points(cur: duckdb.DuckDBPyConnection, source: Source,
                  options: IngestOptions) -> IngestReport:
    """Validate and store metric points (``ts, service, metric, value[, unit]``), in the
    transaction open on ``cur`` (see ``Store.ingest_points``)."""
    report = IngestReport(source=source.label)
    with staging.reading(source):
        keys = check_points(cur, source, options)
        cur.execute(sql.GROUP_CHECKED)
        accepted_keys = staging.report_counts(cur, report, options,
                                              cur.execute(sql.COUNT_BY_KEY).fetchall())
        if not report.strict_aborted:
            series_ids = ensure_series(cur, [keys[k] for k in accepted_keys])
            of_key = [series_ids[keys[k][:2]] for k in accepted_keys]
            cur.register("key_series", pa.table({
                "key_id": pa.array(accepted_keys, pa.int32()),
                "series_id": pa.array(of_key, pa.int32())}))
            for statement in ([sql.INCOMING_FROM_GROUPED] if len(set(of_key)) == len(of_key)
                              else sql.INCOMING_FROM_GROUPED_KEYS):
                cur.execute(statement)
            merge_incoming(cur, report)
            report.duplicates = report.rows - report.rejected - report.stored - report.updated
        staging.log_ingest(cur, report, "points", options.now)
    staging.drop_staging(cur)
    return report


def check_points(cur: duckdb.DuckDBPyConnection, source: Source,
                 options: IngestOptions) -> dict[int, SeriesKey]:
    """Define view ``checked`` over the input; return the input's series keys by key id."""
    columns = staging.stage(cur, source, options)
    cur.execute(sql.NORMALIZE_POINTS.format(**_point_exprs(columns)))
    incoming = cur.execute(sql.DISTINCT_POINT_KEYS).fetchall()
    stored = {(s, m): u for s, m, u, _ in cur.execute(sql.STORED_SERIES).fetchall()}
    meta, keys = _point_meta(incoming, stored)
    cur.register("meta", meta)
    cur.execute(sql.CHECK_POINTS)
    return keys


def ensure_series(cur: duckdb.DuckDBPyConnection,
                  wanted: list[SeriesKey]) -> dict[tuple[str, str], int]:
    """Create the series that do not exist yet, give a unit to those stored without one; return
    every series id by (service, metric)."""
    # One row per series: an upsert may not touch a row twice.
    wanted = list({(w[0], w[1]): w for w in wanted}.values())
    if wanted:
        cur.register("new_series", pa.table({
            "service": pa.array([w[0] for w in wanted], pa.string()),
            "metric": pa.array([w[1] for w in wanted], pa.string()),
            "unit": pa.array([w[2] for w in wanted], pa.string()),
            "kind": pa.array([w[3] for w in wanted], pa.string())}))
        cur.execute(sql.INSERT_SERIES)
        cur.unregister("new_series")
    return {(s, m): int(i) for s, m, _, i in cur.execute(sql.STORED_SERIES).fetchall()}


def merge_incoming(cur: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
    """Merge temp table ``incoming`` (series_id, ts, value) into ``points``: a changed value
    replaces the stored one, a new point is inserted, an equal one changes nothing."""
    (updated,) = one(cur, sql.UPDATE_CHANGED_POINTS)
    (stored,) = one(cur, sql.INSERT_NEW_POINTS)
    report.updated += int(updated)
    report.stored += int(stored)


def _point_exprs(columns: Columns) -> dict[str, str]:
    value_raw, value = staging.number_field(columns, "value", NULL_NUMBER)
    return staging.ts_exprs(columns) | {
        "service": staging.text(columns, "service", SERVICE_CONSTANT),
        "metric": staging.text(columns, "metric", NULL_TEXT),
        "unit": staging.text(columns, "unit", NULL_TEXT),
        "value_raw": value_raw,
        "value": value,
    }


def _point_meta(
    incoming: list[tuple[str | None, str | None, str | None]],
    stored_units: dict[tuple[str, str], str | None],
) -> tuple[pa.Table, dict[int, SeriesKey]]:
    """The verdict on each distinct (service, metric, unit) of an input.

    Returns:
        The ``meta`` table for CHECK_POINTS, and the valid keys' series by key id.
    """
    units = dict(stored_units)
    # For a new series with several units in one input, the first in sorted order is kept.
    for service, metric, unit in sorted(incoming, key=lambda r: tuple(x or "" for x in r)):
        if unit is not None and len(unit) <= MAX_UNIT_CHARS \
                and units.get((service, metric)) is None:  # type: ignore[arg-type]
            units[(service, metric)] = unit  # type: ignore[index]
    cols: dict[str, list[object]] = {k: [] for k in (
        "key_id", "k_service", "k_metric", "k_unit", "kind", "lo", "hi", "reject_field",
        "reject_message")}
    keys: dict[int, SeriesKey] = {}
    for key_id, (service, metric, unit) in enumerate(incoming):
        kind = metric_kind(metric or "")
        lo, hi = KIND_RANGE[kind]
        field, problem = "service", staging.name_problem("service", service)
        if problem is None:
            field, problem = "metric", staging.name_problem("metric", metric)
        have = units.get((service, metric))  # type: ignore[arg-type]
        if problem is None and unit is not None and have is not None and have != unit:
            field, problem = "unit", (f"unit {unit!r} differs from the unit {have!r} of series "
                                      f"{service}:{metric}")
        if problem is None:
            keys[key_id] = (service, metric, unit if unit is not None else have, kind.value)  # type: ignore[assignment]
        for name, value in (("key_id", key_id), ("k_service", service or ""),
                            ("k_metric", metric or ""), ("k_unit", unit or ""),
                            ("kind", kind.value), ("lo", lo), ("hi", hi),
                            ("reject_field", field if problem else None),
                            ("reject_message", problem)):
            cols[name].append(value)
    schema = pa.schema([("key_id", pa.int32()), ("k_service", pa.string()),
                        ("k_metric", pa.string()), ("k_unit", pa.string()),
                        ("kind", pa.string()), ("lo", pa.float64()), ("hi", pa.float64()),
                        ("reject_field", pa.string()), ("reject_message", pa.string())])
    return pa.table(cols, schema=schema), keys


# ---------------------------------------------------------------------------------------------
# Reads


def series(cur: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every series: series_id, unique_id, service, metric, unit, kind."""
    return frame(cur, sql.SERIES)


def history(cur: duckdb.DuckDBPyConnection, service: str | None, metric: str | None,
            start: datetime | None, end: datetime | None) -> pl.DataFrame:
    """Stored points in long format (unique_id, ds, y), ``start <= ds < end``."""
    return frame(cur, sql.HISTORY, [service, service, metric, metric, start, start, end, end])


def series_summary(cur: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per series: points, first and last time, last value, recent means, range."""
    return frame(cur, sql.SERIES_SUMMARY)


def counts(cur: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows in the main tables (series, points, requests, events)."""
    n_series, n_points, n_requests, n_events = one(cur, sql.COUNTS)
    return {"series": n_series, "points": n_points, "requests": n_requests, "events": n_events}


def points_up_to(cur: duckdb.DuckDBPyConnection, series_ids: Sequence[int],
                 end: datetime) -> pa.Table:
    """Points (series_id, ts, value) of some series with ``ts <= end``, sorted."""
    return cur.sql(sql.POINTS_UP_TO, params=[end, list(series_ids)]).to_arrow_table()
