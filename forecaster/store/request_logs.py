"""LLM request logs: checking them, keeping each request once, and rolling the 5-minute buckets
they touch up into metric points.

Raw requests are kept so that a bucket's percentiles are always recomputed from all of its
requests, whichever log brought them and in whatever order.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from forecaster.ingest_report import IngestReport
from forecaster.kinds import REQUEST_NUMBERS, ROLLUP_METRICS, ROLLUP_SECONDS
from forecaster.store import request_logs_sql as sql
from forecaster.store import staging
from forecaster.store.points import ensure_series, merge_incoming
from forecaster.store.query import one
from forecaster.store.staging import Columns, IngestOptions, Source
from forecaster.store.staging_sql import (
    BOOLEAN,
    NULL_BOOLEAN,
    NULL_NUMBER,
    NULL_TEXT,
    SERVICE_CONSTANT,
)


def ingest_requests(cur: duckdb.DuckDBPyConnection, source: Source,
                    options: IngestOptions) -> IngestReport:
    """Validate and store request-log rows and roll them up into points, in the transaction
    open on ``cur`` (see ``Store.ingest_requests``)."""
    report = IngestReport(source=source.label, requests_stored=0)
    with staging.reading(source):
        check_requests(cur, source, options)
        staging.report_counts(cur, report, options, [(0, *one(cur, sql.COUNT_CHECKED))])
        if not report.strict_aborted:
            cur.execute(sql.NEW_REQUESTS)
            (new,) = one(cur, sql.COUNT_NEW_REQUESTS)
            report.requests_stored = int(new)
            report.duplicates = report.rows - report.rejected - report.requests_stored
            if new:
                cur.execute(sql.INSERT_NEW_REQUESTS)
                _roll_up(cur, report)
        staging.log_ingest(cur, report, "requests", options.now)
    staging.drop_staging(cur)
    return report


def check_requests(cur: duckdb.DuckDBPyConnection, source: Source,
                   options: IngestOptions) -> None:
    """Define view ``checked`` over a request-log input."""
    columns = staging.stage(cur, source, options)
    cur.execute(sql.NORMALIZE_REQUESTS.format(**_request_exprs(columns)))
    services = [s for (s,) in cur.execute(sql.DISTINCT_REQUEST_SERVICES).fetchall()]
    verdicts = [staging.name_problem("service", s) for s in services]
    cur.register("meta", pa.table({
        "k_service": pa.array([s or "" for s in services], pa.string()),
        "reject_field": pa.array([v and "service" for v in verdicts], pa.string()),
        "reject_message": pa.array(verdicts, pa.string())}))
    cur.execute(sql.CHECK_REQUESTS)


def _roll_up(cur: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
    """Recompute the points of every bucket that gained a request, from all its requests."""
    width = float(ROLLUP_SECONDS)
    cur.execute(sql.TOUCHED_BUCKETS, [width])
    cur.execute(sql.ROLLUP_TOUCHED, [width, width, width, width])
    cur.execute(sql.ROLLED_LONG)
    pairs = cur.execute(sql.ROLLED_SERIES).fetchall()
    ensure_series(cur, [(service, metric, ROLLUP_METRICS[metric][1],
                         ROLLUP_METRICS[metric][0].value) for service, metric in pairs])
    cur.execute(sql.INCOMING_FROM_ROLLED)
    merge_incoming(cur, report)


def _request_exprs(columns: Columns) -> dict[str, str]:
    exprs = staging.ts_exprs(columns) | {
        "service": staging.text(columns, "service", SERVICE_CONSTANT),
        "request_id": staging.text(columns, "request_id", NULL_TEXT),
        "error_raw": staging.text(columns, "error", NULL_TEXT),
        "error": (BOOLEAN.format(t=staging.as_text(columns, "error"))
                  if "error" in columns else NULL_BOOLEAN),
    }
    for field in (*REQUEST_NUMBERS, "status"):
        exprs[f"{field}_raw"], exprs[field] = staging.number_field(columns, field, NULL_NUMBER)
    return exprs
