"""SQL of the requests table: checking a request log, storing new requests, and rolling the
touched 5-minute buckets up into points."""

from __future__ import annotations

from forecaster.kinds import REQUEST_NUMBERS
from forecaster.store.staging_sql import TS_CHECKS

COUNT_CHECKED = "SELECT count(*), count(*) FILTER (WHERE reject IS NOT NULL) FROM checked"

NORMALIZE_REQUESTS = """
CREATE OR REPLACE TEMP VIEW norm AS
SELECT __row AS row, {ts_raw} AS ts_raw, {ts} AS ts, {service} AS service,
       {request_id} AS request_id,
       {latency_ms_raw} AS latency_ms_raw, {latency_ms} AS latency_ms,
       {ttft_ms_raw} AS ttft_ms_raw, {ttft_ms} AS ttft_ms,
       {status_raw} AS status_raw, {status} AS status,
       {error_raw} AS error_raw, {error} AS error,
       {prompt_tokens_raw} AS prompt_tokens_raw, {prompt_tokens} AS prompt_tokens,
       {completion_tokens_raw} AS completion_tokens_raw, {completion_tokens} AS completion_tokens,
       {quality_score_raw} AS quality_score_raw, {quality_score} AS quality_score,
       {feedback_raw} AS feedback_raw, {feedback} AS feedback
FROM src"""

# One optional numeric field's checks; {f} is a field name of REQUEST_NUMBERS, {lo}/{hi} its range.
OPTIONAL_NUMBER_CHECK = """
    WHEN {f}_raw IS NOT NULL AND {f} IS NULL
        THEN ['{f}', '''' || left(CAST({f}_raw AS VARCHAR), 60) || ''' is not a number']
    WHEN {f} IS NOT NULL AND NOT isfinite({f})
        THEN ['{f}', CAST({f} AS VARCHAR) || ' is not finite; NaN and infinities are refused']
    WHEN {f} IS NOT NULL AND ({f} < {lo} OR {f} > {hi})
        THEN ['{f}', CAST({f} AS VARCHAR) || ' is outside {lo} to {hi}']"""
INTEGER_CHECK = """
    WHEN {f} IS NOT NULL AND {f} <> round({f})
        THEN ['{f}', CAST({f} AS VARCHAR) || ' is not a whole number']"""

def _request_number_checks() -> str:
    parts = []
    for field, (lo, hi, whole) in REQUEST_NUMBERS.items():
        parts.append(OPTIONAL_NUMBER_CHECK.format(f=field, lo=repr(lo), hi=repr(hi)))
        if whole:
            parts.append(INTEGER_CHECK.format(f=field))
    return "".join(parts)


DISTINCT_REQUEST_SERVICES = "SELECT DISTINCT service FROM norm"

# `meta` (registered) holds the verdict on each distinct service name.
CHECK_REQUESTS = f"""
CREATE OR REPLACE TEMP VIEW checked AS
SELECT n.*, CASE {TS_CHECKS}
    WHEN m.reject_field IS NOT NULL THEN [m.reject_field, m.reject_message]
    WHEN status_raw IS NOT NULL AND (status IS NULL OR status <> round(status)
                                     OR status < 100 OR status > 599)
        THEN ['status', '''' || left(CAST(status_raw AS VARCHAR), 60)
            || ''' is not an HTTP status code (100 to 599)']
    WHEN error_raw IS NOT NULL AND error IS NULL
        THEN ['error', '''' || left(CAST(error_raw AS VARCHAR), 60)
            || ''' is not a boolean (true/false, 1/0)']
    {_request_number_checks()}
    END AS reject
FROM norm n JOIN meta m ON m.k_service = coalesce(n.service, '')"""

# A request identical in every field to one already stored is that request; n identical rows in
# one log are n requests (`occurrence` numbers them), so the stored multiplicity of a request is
# the largest any one log showed. The fingerprint alone cannot say "identical": concat_ws skips
# NULLs (latency 5 and no ttft reads as no latency and ttft 5) and a request id may hold the
# separator, so the stored fields are compared too; where the fingerprint does not collide this
# numbers and matches exactly as the fingerprint alone did, so logs stored before still match.
NEW_REQUESTS = """
CREATE OR REPLACE TEMP TABLE new_requests AS
WITH fp AS (
    SELECT service, ts, request_id, latency_ms, ttft_ms,
           -- An error is a 5xx, a 408 or 429, or an explicit error flag; unknown when neither
           -- a status nor a flag was given.
           CASE WHEN status IS NOT NULL OR error IS NOT NULL
                THEN coalesce(status >= 500 OR status IN (408, 429), false)
                     OR coalesce(error, false) END AS is_error,
           CAST(prompt_tokens AS BIGINT) AS prompt_tokens,
           CAST(completion_tokens AS BIGINT) AS completion_tokens,
           quality_score, feedback, row,
           md5_number(concat_ws('|', request_id, latency_ms, ttft_ms, status, error,
                                prompt_tokens, completion_tokens, quality_score, feedback))
               AS fingerprint
    FROM checked WHERE reject IS NULL
), numbered AS (
    SELECT *, CAST(row_number() OVER (
        PARTITION BY service, ts, fingerprint, request_id, latency_ms, ttft_ms, is_error,
                     prompt_tokens, completion_tokens, quality_score, feedback
        ORDER BY row) AS INTEGER) AS occurrence
    FROM fp
)
SELECT n.service, n.ts, n.fingerprint, n.occurrence, n.request_id, n.latency_ms, n.ttft_ms,
       n.is_error, n.prompt_tokens, n.completion_tokens, n.quality_score, n.feedback
FROM numbered n
ANTI JOIN requests r ON r.service = n.service AND r.ts = n.ts
    AND r.fingerprint = n.fingerprint AND r.occurrence = n.occurrence
    AND r.request_id IS NOT DISTINCT FROM n.request_id
    AND r.latency_ms IS NOT DISTINCT FROM n.latency_ms
    AND r.ttft_ms IS NOT DISTINCT FROM n.ttft_ms
    AND r.is_error IS NOT DISTINCT FROM n.is_error
    AND r.prompt_tokens IS NOT DISTINCT FROM n.prompt_tokens
    AND r.completion_tokens IS NOT DISTINCT FROM n.completion_tokens
    AND r.quality_score IS NOT DISTINCT FROM n.quality_score
    AND r.feedback IS NOT DISTINCT FROM n.feedback"""

COUNT_NEW_REQUESTS = "SELECT count(*) FROM new_requests"
INSERT_NEW_REQUESTS = "INSERT INTO requests SELECT * FROM new_requests"

TOUCHED_BUCKETS = """
CREATE OR REPLACE TEMP TABLE touched AS
SELECT DISTINCT service, time_bucket(to_seconds(?), ts) AS bucket FROM new_requests"""

# Percentiles are computed from all stored requests of each touched bucket, never from other
# buckets' percentiles. quantile_cont interpolates linearly between order statistics.
ROLLUP_TOUCHED = """
CREATE OR REPLACE TEMP TABLE rolled AS
WITH r AS (
    SELECT q.*, time_bucket(to_seconds(?), q.ts) AS bucket FROM requests q
    WHERE q.ts >= (SELECT min(bucket) FROM touched)
      AND q.ts < (SELECT max(bucket) FROM touched) + to_seconds(?)
), b AS (
    SELECT r.service, r.bucket,
           quantile_cont(r.latency_ms, [0.5, 0.95, 0.99]) AS lat,
           quantile_cont(r.ttft_ms, 0.95) AS ttft_p95_ms,
           count(*) AS n,
           count(r.is_error) AS n_status,
           count(*) FILTER (WHERE r.is_error) AS n_error,
           count(r.prompt_tokens) + count(r.completion_tokens) AS n_tokens,
           coalesce(sum(r.prompt_tokens), 0) + coalesce(sum(r.completion_tokens), 0) AS tokens,
           -- compensated sum: the order the requests arrive in does not change the mean
           favg(r.quality_score) AS quality_score,
           count(r.feedback) AS n_feedback,
           count(*) FILTER (WHERE r.feedback < 0) AS n_negative
    FROM r SEMI JOIN touched t ON t.service = r.service AND t.bucket = r.bucket
    GROUP BY r.service, r.bucket
)
SELECT service, bucket AS ts,
       lat[1] AS latency_p50_ms, lat[2] AS latency_p95_ms, lat[3] AS latency_p99_ms,
       ttft_p95_ms,
       CASE WHEN n_status > 0 THEN n_error / n_status END AS error_rate,
       n / ? AS requests_per_s,
       CASE WHEN n_tokens > 0 THEN tokens / ? END AS tokens_per_s,
       quality_score,
       CASE WHEN n_feedback > 0 THEN n_negative / n_feedback END AS negative_feedback_rate
FROM b"""

# Each bucket's metrics, long; UNPIVOT drops the metrics a bucket has no inputs for (NULL).
ROLLED_LONG = """
CREATE OR REPLACE TEMP VIEW rolled_long AS
UNPIVOT rolled ON COLUMNS(* EXCLUDE (service, ts)) INTO NAME metric VALUE value"""
ROLLED_SERIES = "SELECT DISTINCT service, metric FROM rolled_long"
INCOMING_FROM_ROLLED = """
CREATE OR REPLACE TEMP VIEW incoming AS
SELECT s.series_id, u.ts, CAST(u.value AS DOUBLE) AS value
FROM rolled_long u JOIN series s ON s.service = u.service AND s.metric = u.metric"""
