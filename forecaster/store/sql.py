"""Every SQL statement the project runs, in one place.

Values always travel as parameters or through registered Arrow tables, never inside the text.
The only text assembled at run time is a column *identifier* of an input file, quoted with
:func:`quote_ident`, placed into the fixed templates below.
"""

from __future__ import annotations

from forecaster.kinds import REQUEST_NUMBERS
from forecaster.names import MAX_UNIT_CHARS
from forecaster.types import DECISIONS

# ---------------------------------------------------------------------------------------------
# Migrations: (version, description, statements). Append only; never edit a released step.

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "series and points",
        [
            """CREATE TABLE schema_version (
                version INTEGER PRIMARY KEY,
                description VARCHAR NOT NULL,
                applied_at TIMESTAMP NOT NULL)""",
            "CREATE SEQUENCE series_id_seq START 1",
            """CREATE TABLE series (
                series_id INTEGER PRIMARY KEY DEFAULT nextval('series_id_seq'),
                service VARCHAR NOT NULL,
                metric VARCHAR NOT NULL,
                unit VARCHAR,
                kind VARCHAR NOT NULL,
                UNIQUE (service, metric))""",
            # No primary key on purpose: uniqueness of (series_id, ts) is kept by the single
            # writer's merge, and an index would cost more than the whole bulk load.
            """CREATE TABLE points (
                series_id INTEGER NOT NULL,
                ts TIMESTAMP NOT NULL,
                value DOUBLE NOT NULL)""",
        ],
    ),
    (
        2,
        "runs and their results",
        [
            "CREATE SEQUENCE run_id_seq START 1",
            """CREATE TABLE runs (
                run_id BIGINT PRIMARY KEY DEFAULT nextval('run_id_seq'),
                started_at TIMESTAMP NOT NULL,
                finished_at TIMESTAMP,
                as_of TIMESTAMP NOT NULL,
                status VARCHAR NOT NULL,
                trigger VARCHAR NOT NULL,
                error VARCHAR,
                detail JSON)""",
            # Provenance of each series in a run: model, window, freshness, why it is special.
            """CREATE TABLE run_series (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                status VARCHAR NOT NULL,
                model VARCHAR,
                transform VARCHAR,
                train_start TIMESTAMP,
                train_end TIMESTAMP,
                n_train INTEGER,
                last_point TIMESTAMP,
                freshness_s DOUBLE,
                flags VARCHAR,
                error VARCHAR,
                PRIMARY KEY (run_id, series_id))""",
            # The model chosen per series by cross-validation, kept between refreshes.
            """CREATE TABLE model_choices (
                series_id INTEGER PRIMARY KEY,
                model VARCHAR NOT NULL,
                score DOUBLE,
                scores JSON,
                chosen_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE forecasts (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                ds TIMESTAMP NOT NULL,
                mean DOUBLE,
                q05 DOUBLE, q10 DOUBLE, q25 DOUBLE, q50 DOUBLE,
                q75 DOUBLE, q90 DOUBLE, q95 DOUBLE)""",
            """CREATE TABLE anomalies (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                ts TIMESTAMP NOT NULL,
                score DOUBLE NOT NULL,
                is_anomaly BOOLEAN NOT NULL,
                detector VARCHAR NOT NULL,
                features JSON)""",
            """CREATE TABLE interventions (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                service VARCHAR NOT NULL,
                metric VARCHAR NOT NULL,
                limit_value DOUBLE NOT NULL,
                direction VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                lead_time_s DOUBLE NOT NULL,
                eta_p10 TIMESTAMP, eta_p50 TIMESTAMP, eta_p90 TIMESTAMP,
                p_breach DOUBLE NOT NULL,
                act_by TIMESTAMP,
                decision VARCHAR NOT NULL,
                next_check_at TIMESTAMP,
                reason VARCHAR NOT NULL,
                last_value DOUBLE,
                PRIMARY KEY (run_id, series_id))""",
        ],
    ),
    (
        3,
        "request logs, events and the ingest log",
        [
            # Raw requests are kept so that a bucket's percentiles are always recomputed from all
            # of its requests, whichever log brought them and in whatever order.
            """CREATE TABLE requests (
                service VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                fingerprint UHUGEINT NOT NULL,
                occurrence INTEGER NOT NULL,
                request_id VARCHAR,
                latency_ms DOUBLE,
                ttft_ms DOUBLE,
                is_error BOOLEAN,
                prompt_tokens BIGINT,
                completion_tokens BIGINT,
                quality_score DOUBLE,
                feedback DOUBLE)""",
            "CREATE SEQUENCE event_id_seq START 1",
            """CREATE TABLE events (
                event_id BIGINT PRIMARY KEY DEFAULT nextval('event_id_seq'),
                service VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                kind VARCHAR NOT NULL,
                metric VARCHAR,
                detail VARCHAR,
                recorded_at TIMESTAMP NOT NULL)""",
            """CREATE TABLE ingest_log (
                ingested_at TIMESTAMP NOT NULL,
                source VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                rows BIGINT NOT NULL,
                stored BIGINT NOT NULL,
                updated BIGINT NOT NULL,
                duplicates BIGINT NOT NULL,
                rejected BIGINT NOT NULL,
                strict_aborted BOOLEAN NOT NULL)""",
        ],
    ),
    (
        4,
        "anomalies per series and service, precursors with interventions",
        [
            "ALTER TABLE anomalies ADD COLUMN service VARCHAR",
            "ALTER TABLE anomalies ADD COLUMN metric VARCHAR",
            # A precursor: an anomaly another kind of metric of the same service shares.
            "ALTER TABLE anomalies ADD COLUMN precursor BOOLEAN DEFAULT false",
            "ALTER TABLE anomalies ADD COLUMN corroborated_by VARCHAR",
            "ALTER TABLE anomalies ADD COLUMN detail VARCHAR",
            "ALTER TABLE interventions ADD COLUMN precursor_score DOUBLE",
            "ALTER TABLE interventions ADD COLUMN precursors JSON",
        ],
    ),
    (
        5,
        "self-scoring of published estimates",
        [
            "ALTER TABLE interventions ADD COLUMN horizon_s DOUBLE",
            "ALTER TABLE interventions ADD COLUMN reliability JSON",
            # One row per published estimate whose horizon has been observed: what happened.
            """CREATE TABLE estimate_scores (
                run_id BIGINT NOT NULL,
                series_id INTEGER NOT NULL,
                as_of TIMESTAMP NOT NULL,
                horizon_end TIMESTAMP NOT NULL,
                crossing TIMESTAMP,
                crossed BOOLEAN NOT NULL,
                p_breach DOUBLE NOT NULL,
                covered BOOLEAN,
                eta_error_s DOUBLE,
                warned BOOLEAN NOT NULL,
                scored_at TIMESTAMP NOT NULL,
                PRIMARY KEY (run_id, series_id))""",
        ],
    ),
    (
        6,
        "raw first-passage distribution kept with each estimate, for recalibration",
        [
            # The sample paths' own p_breach and first-passage quantiles at
            # forecaster.engine.calibration.LEVELS (seconds after the as-of time; NULL beyond the
            # horizon), before the map learned from scored estimates is applied.
            "ALTER TABLE interventions ADD COLUMN p_breach_raw DOUBLE",
            "ALTER TABLE interventions ADD COLUMN passage DOUBLE[]",
        ],
    ),
    (
        7,
        "stale answers: a series whose data stopped has no p_breach",
        [
            # decision `stale`: no forecast is made from a feed that stopped, so no probability
            "ALTER TABLE interventions ALTER COLUMN p_breach DROP NOT NULL",
        ],
    ),
]

SCHEMA_VERSION_TABLE_EXISTS = (
    "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version' AND NOT temporary"
)
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_version"
RECORD_MIGRATION = "INSERT INTO schema_version VALUES (?, ?, ?)"
SET_UTC = "SET TimeZone = 'UTC'"

# ---------------------------------------------------------------------------------------------
# Staging an input. `src` is a view over the input with a 0-based `__row` column.

CREATE_PARAMS = """
CREATE OR REPLACE TEMP TABLE params AS
SELECT ?::VARCHAR AS service, ?::DOUBLE AS us_per_unit, ?::TIMESTAMP AS min_ts,
       ?::TIMESTAMP AS max_ts"""

MATERIALIZE_RAW = "CREATE OR REPLACE TEMP TABLE raw AS SELECT * FROM raw_input"
# Temporary tables number their rows from a large offset, so rebase to 0.
SRC_FROM_ROWID = """
CREATE OR REPLACE TEMP VIEW src AS
SELECT rowid - (SELECT min(rowid) FROM raw) AS __row, * FROM raw"""
SRC_FROM_COLUMN = "CREATE OR REPLACE TEMP VIEW src AS SELECT {row} AS __row, * FROM raw_input"

# Expression templates, by what the source column holds. {c} is a quoted identifier. Each field
# has a `_raw` form (the input as given, NULL when missing or blank) used for the missing check
# and, cast to text, in messages: casting every value to text up front would cost more than the
# whole load, and CASE evaluates a message only for the rows it rejects.
# `{c}` is read as text through {t}: a cast for most columns, but a JSON column (JSON lines whose
# rows mix strings and numbers in one field) is read unquoted, so "7" and 7 are both 7.
TEXT_OF_COLUMN = "CAST({c} AS VARCHAR)"
TEXT_OF_JSON = "({c} ->> '$')"
# Text is trimmed of all ASCII whitespace: a tab-separated export or a Windows line end leaves
# tabs and carriage returns around values (`trim` alone takes only spaces). Trimming a set of
# characters is slow (four times `trim`), so only values that start or end with a control
# character or a space go through it.
TRIMMED = """CASE WHEN ascii({t}) > 32 AND ascii(({t})[-1]) > 32 THEN {t}
    ELSE trim({t}, ' \t\n\x0b\x0c\r') END"""
RAW_TEXT = f"nullif({TRIMMED}, '')"
RAW_NATIVE = "{c}"
NUMBER_FROM_NATIVE = "CAST({c} AS DOUBLE)"
# A number as people write it (NaN and infinities included, to be refused by name); DuckDB's
# own cast alone would also take '+-5' as -5 and '1_000' as 1000.
DECIMAL_NUMBER = r"(?i)[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?|[+-]?(nan|inf|infinity)"
NUMBER_FROM_TEXT = f"""CASE WHEN regexp_full_match({TRIMMED}, '{DECIMAL_NUMBER}')
    THEN try_cast({TRIMMED} AS DOUBLE) END"""
BOOLEAN = f"try_cast({RAW_TEXT} AS BOOLEAN)"
TS_FROM_TIMESTAMP = "CAST({c} AS TIMESTAMP)"
# ISO 8601 as people write it: a date, optionally a time (T or space) to the minute, second or
# fraction (up to 12 digits, as DuckDB reads them; kept to the microsecond), then optionally Z,
# an offset of at most 23:59 (seconds allowed: +02:00:00), or a trailing UTC or GMT. DuckDB's
# own parser alone would also take words ('epoch' is 1970-01-01), zone names and offsets of 99
# hours.
ISO_8601 = (r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,12})?)?)?"
            r"( ?([Zz]|[+-]([01]\d|2[0-3])(:[0-5]\d(:[0-5]\d)?|[0-5]\d)?)| ?(?i:utc|gmt))?")
# A trailing UTC or GMT is cast as Z: reading zone names needs the ICU extension, which the
# store does not rely on (times are kept in UTC).
UTC_SUFFIX = r" ?(?i:utc|gmt)$"
# Text is read as ISO 8601 (an offset is converted to UTC; none means UTC), or, when a time unit
# was given, as an epoch number in that unit; numbers need the unit.
TS_FROM_TEXT = """CASE WHEN (SELECT us_per_unit FROM params) IS NULL
    THEN CASE WHEN regexp_full_match({raw}, '{iso}')
        THEN CAST(try_cast(CASE WHEN ({raw})[-1] IN ('C', 'c', 'T', 't')
            THEN regexp_replace({raw}, '{utc}', 'Z') ELSE {raw} END AS TIMESTAMPTZ) AS TIMESTAMP)
        END
    ELSE {epoch} END""".replace("{iso}", ISO_8601.replace("{", "{{").replace("}", "}}")).replace(
    "{utc}", UTC_SUFFIX).replace("{raw}", RAW_TEXT)
# An epoch number is converted exactly (as a decimal: a double has 53 bits, so nanoseconds of
# today, 1.8e18, would come out a microsecond off); the double only guards the range, so that
# the product fits (1e18 us is the year 33658). The allowed range is checked afterwards, with a
# message that says so.
_EPOCH = """CASE WHEN abs({n} * (SELECT us_per_unit FROM params)) < 1e18
    THEN make_timestamp(CAST(round({d} * CAST((SELECT us_per_unit FROM params) AS DECIMAL(10, 3)))
                             AS BIGINT)) END"""
DECIMAL_FROM_TEXT = f"try_cast({RAW_TEXT} AS DECIMAL(38, 9))"
DECIMAL_FROM_NATIVE = "try_cast({c} AS DECIMAL(38, 9))"
TS_FROM_TEXT = TS_FROM_TEXT.replace(
    "{epoch}", _EPOCH.replace("{n}", NUMBER_FROM_TEXT).replace("{d}", DECIMAL_FROM_TEXT))
TS_FROM_NUMBER = _EPOCH.replace("{n}", NUMBER_FROM_NATIVE).replace("{d}", DECIMAL_FROM_NATIVE)
SERVICE_CONSTANT = "(SELECT service FROM params)"
NULL_TEXT = "CAST(NULL AS VARCHAR)"
NULL_NUMBER = "CAST(NULL AS DOUBLE)"
NULL_BOOLEAN = "CAST(NULL AS BOOLEAN)"

# A time followed by a zone name ('2026-11-26 08:00:00 Europe/Berlin', '... CET') is refused
# like any unreadable time, but says why: times are kept in UTC, without a time-zone database.
# A name has two letters or more, so that a bad time ending in Z keeps the ISO 8601 hint; an
# impossible date before UTC or GMT, or ISO text given with a time unit, keep the usual message.
ZONE_NAMED = (r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)? ?"
              r"[A-Za-z][A-Za-z_]+(/[A-Za-z0-9_+-]+)*")
# Time checks shared by both kinds of input, as CASE branches yielding [field, message].
TS_CHECKS = """
    WHEN ts_raw IS NULL THEN ['ts', 'missing time']
    WHEN ts IS NULL AND (SELECT us_per_unit FROM params) IS NULL
        AND regexp_full_match(CAST(ts_raw AS VARCHAR), '{zone}')
        AND NOT regexp_matches(CAST(ts_raw AS VARCHAR), '{utc}')
        THEN ['ts', 'cannot read ''' || left(CAST(ts_raw AS VARCHAR), 60) || ''' as a time: a'
        || ' time-zone name is not understood; give an offset such as +01:00 or Z']
    WHEN ts IS NULL THEN ['ts', 'cannot read ''' || left(CAST(ts_raw AS VARCHAR), 60) || ''' as a'
        || ' time; expected ISO 8601 such as 2026-11-26T08:00:00Z (an offset is converted to UTC,'
        || ' none means UTC), or an epoch number with --time-unit s|ms|us|ns']
    WHEN ts < (SELECT min_ts FROM params) OR ts >= (SELECT max_ts FROM params)
        THEN ['ts', 'time ' || left(CAST(ts_raw AS VARCHAR), 60) || ' is outside '
        || (SELECT min_ts FROM params) || ' to ' || (SELECT max_ts FROM params)]"""
TS_CHECKS = TS_CHECKS.replace("{zone}", ZONE_NAMED).replace("{utc}", UTC_SUFFIX)

NORMALIZE_POINTS = """
CREATE OR REPLACE TEMP VIEW norm AS
SELECT __row AS row, {ts_raw} AS ts_raw, {ts} AS ts, {service} AS service, {metric} AS metric,
       {unit} AS unit, {value_raw} AS value_raw, {value} AS value
FROM src"""

DISTINCT_POINT_KEYS = "SELECT DISTINCT service, metric, unit FROM norm"

# Names, kinds and units are checked once per distinct (service, metric, unit) in Python; `meta`
# (registered) carries the verdict, the kind's range and a small integer key for each, so that
# the per-row work is a join on that key and a few comparisons.
CHECK_POINTS = f"""
CREATE OR REPLACE TEMP VIEW checked AS
SELECT n.row, n.ts, n.value, m.key_id, CASE {TS_CHECKS}
    WHEN length(n.unit) > {MAX_UNIT_CHARS} THEN ['unit', 'unit ''' || left(n.unit, 60) || ''''
        || CASE WHEN length(n.unit) > 60 THEN '...' ELSE '' END
        || ' is ' || length(n.unit) || ' characters long; at most {MAX_UNIT_CHARS}']
    WHEN m.reject_field IS NOT NULL THEN [m.reject_field, m.reject_message]
    WHEN n.value_raw IS NULL THEN ['value', 'missing value']
    WHEN n.value IS NULL
        THEN ['value', '''' || left(CAST(n.value_raw AS VARCHAR), 60) || ''' is not a number']
    WHEN NOT isfinite(n.value)
        THEN ['value', CAST(n.value AS VARCHAR)
            || ' is not finite; NaN and infinities are refused']
    WHEN (m.lo IS NOT NULL AND n.value < m.lo) OR (m.hi IS NOT NULL AND n.value > m.hi)
        THEN ['value', CAST(n.value AS VARCHAR) || ' is outside the range of a ' || m.kind
            || ' metric ('
            || coalesce(CAST(m.lo AS VARCHAR), '-inf') || ' to '
            || coalesce(CAST(m.hi AS VARCHAR), 'inf') || ')']
    END AS reject
FROM norm n JOIN meta m
  ON m.k_service = coalesce(n.service, '') AND m.k_metric = coalesce(n.metric, '')
 AND m.k_unit = coalesce(n.unit, '')"""

COUNT_CHECKED = "SELECT count(*), count(*) FILTER (WHERE reject IS NOT NULL) FROM checked"
# One pass over the input both counts and de-duplicates: rows grouped by (key, ts, rejected),
# keeping the value of the last row of each group. Rejected rows are only counted.
GROUP_CHECKED = """
CREATE OR REPLACE TEMP TABLE grouped AS
SELECT key_id, ts, reject IS NOT NULL AS bad, arg_max(value, row) AS value, max(row) AS last,
       count(*) AS n
FROM checked GROUP BY ALL"""
COUNT_BY_KEY = """
SELECT key_id, sum(n), coalesce(sum(n) FILTER (WHERE bad), 0) FROM grouped GROUP BY key_id"""
FIRST_REJECTS = """
SELECT row, reject[1], reject[2] FROM checked WHERE reject IS NOT NULL ORDER BY row LIMIT ?"""
ALL_REJECTS = """
SELECT row + 1 AS row, reject[1] AS field, reject[2] AS message
FROM checked WHERE reject IS NOT NULL ORDER BY row"""

STORED_SERIES = "SELECT service, metric, unit, series_id FROM series"
# `new_series` (registered): service, metric, unit, kind, one row per (service, metric). A series
# stored without a unit takes the first unit it is given.
INSERT_SERIES = """
INSERT INTO series (service, metric, unit, kind)
SELECT service, metric, unit, kind FROM new_series
ON CONFLICT (service, metric) DO UPDATE SET unit = coalesce(series.unit, excluded.unit)"""

# `key_series` (registered) maps each accepted key to its series. When every series has one key
# (the usual case), `grouped` already holds one row per (series, ts).
INCOMING_FROM_GROUPED = """
CREATE OR REPLACE TEMP VIEW incoming AS
SELECT k.series_id, g.ts, g.value
FROM grouped g JOIN key_series k ON k.key_id = g.key_id
WHERE NOT g.bad"""
# Several keys can name one series (a row with a unit and one without): the last row of each
# (series, ts) wins across them too, so that a point is stored once. A table, not a view: the
# update and the insert both read it, and the grouping is the costly part.
INCOMING_FROM_GROUPED_KEYS = [
    """CREATE OR REPLACE TEMP TABLE regrouped AS
SELECT k.series_id, g.ts, arg_max(g.value, g.last) AS value
FROM grouped g JOIN key_series k ON k.key_id = g.key_id
WHERE NOT g.bad
GROUP BY k.series_id, g.ts""",
    "CREATE OR REPLACE TEMP VIEW incoming AS SELECT * FROM regrouped"]

UPDATE_CHANGED_POINTS = """
UPDATE points SET value = i.value FROM incoming i
WHERE points.series_id = i.series_id AND points.ts = i.ts AND points.value <> i.value"""
INSERT_NEW_POINTS = """
INSERT INTO points
SELECT i.series_id, i.ts, i.value FROM incoming i
ANTI JOIN points p ON p.series_id = i.series_id AND p.ts = i.ts"""

DROP_STAGING = [
    "DROP VIEW IF EXISTS checked",
    "DROP VIEW IF EXISTS norm",
    "DROP VIEW IF EXISTS src",
    "DROP VIEW IF EXISTS raw_input",
    "DROP TABLE IF EXISTS raw",
    "DROP VIEW IF EXISTS incoming",
    "DROP TABLE IF EXISTS regrouped",
    "DROP TABLE IF EXISTS grouped",
    "DROP TABLE IF EXISTS new_requests",
    "DROP TABLE IF EXISTS touched",
    "DROP VIEW IF EXISTS rolled_long",
    "DROP TABLE IF EXISTS rolled",
    "DROP TABLE IF EXISTS params",
]

# ---------------------------------------------------------------------------------------------
# Request logs

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

# ---------------------------------------------------------------------------------------------
# Ingest log, events

LOG_INGEST = "INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_EVENT = """
INSERT INTO events (service, ts, kind, metric, detail, recorded_at) VALUES (?, ?, ?, ?, ?, ?)
RETURNING event_id"""
EVENTS = """
SELECT event_id, service, ts, kind, metric, detail, recorded_at FROM events
WHERE (? IS NULL OR service = ?) ORDER BY ts, event_id"""

# ---------------------------------------------------------------------------------------------
# Runs: written by the pipeline only; readers see published runs only.

START_RUN = """
INSERT INTO runs (started_at, as_of, status, trigger) VALUES (?, ?, 'running', ?)
RETURNING run_id"""
FINISH_RUN = """
UPDATE runs SET status = ?, finished_at = ?, error = ?, detail = ? WHERE run_id = ?"""
# `new_run_series`, `new_forecasts`, `new_interventions`, `new_choices` are registered Arrow
# tables whose columns follow the tables'.
PUBLISH_RUN_SERIES = "INSERT INTO run_series BY NAME SELECT * FROM new_run_series"
PUBLISH_FORECASTS = "INSERT INTO forecasts BY NAME SELECT * FROM new_forecasts"
PUBLISH_INTERVENTIONS = "INSERT INTO interventions BY NAME SELECT * FROM new_interventions"
PUBLISH_ANOMALIES = "INSERT INTO anomalies BY NAME SELECT * FROM new_anomalies"

# Self-scoring: the published estimates (not `breached`, nor `stale`: neither is a forecast)
# whose horizon has passed by `now`
# (parameter 1) and whose series has points to its end, scored once each against the points up
# to `now`. Crossing = the first point past the limit after the run's as-of time, within the
# horizon; covered = inside [eta_p10, eta_p90] (no eta_p90: beyond the horizon; no eta_p10: not
# covered); the ETA error of an absent eta_p50 is taken at the horizon's end.
SCORE_ESTIMATES = """
INSERT INTO estimate_scores
WITH due AS (
    SELECT i.run_id, i.series_id, r.as_of,
           r.as_of + to_microseconds(CAST(i.horizon_s * 1e6 AS BIGINT)) AS horizon_end,
           i.limit_value, i.direction, i.p_breach, i.eta_p10, i.eta_p50, i.eta_p90, i.decision
    FROM interventions i JOIN runs r USING (run_id)
    WHERE r.status = 'published' AND i.horizon_s IS NOT NULL
      AND i.decision NOT IN ('breached', 'stale') AND i.p_breach IS NOT NULL
      AND r.as_of + to_microseconds(CAST(i.horizon_s * 1e6 AS BIGINT)) <= ?1
      AND NOT EXISTS (SELECT 1 FROM estimate_scores e
                      WHERE e.run_id = i.run_id AND e.series_id = i.series_id)
),
observed AS (
    SELECT d.* FROM due d
    WHERE EXISTS (SELECT 1 FROM points p WHERE p.series_id = d.series_id
                  AND p.ts >= d.horizon_end - INTERVAL 1 HOUR AND p.ts <= ?1)
),
crossing AS (
    SELECT o.run_id, o.series_id, min(p.ts) AS crossing
    FROM observed o JOIN points p ON p.series_id = o.series_id
     AND p.ts > o.as_of AND p.ts <= o.horizon_end AND p.ts <= ?1
     AND ((o.direction = 'above' AND p.value > o.limit_value)
          OR (o.direction = 'below' AND p.value < o.limit_value))
    GROUP BY ALL
)
SELECT o.run_id, o.series_id, o.as_of, o.horizon_end, c.crossing,
       c.crossing IS NOT NULL AS crossed, o.p_breach,
       CASE WHEN c.crossing IS NULL THEN NULL
            ELSE coalesce(o.eta_p10 <= c.crossing AND (o.eta_p90 IS NULL
                                                       OR c.crossing <= o.eta_p90), false) END,
       CASE WHEN c.crossing IS NULL THEN NULL
            ELSE epoch(coalesce(o.eta_p50, o.horizon_end)) - epoch(c.crossing) END,
       o.decision IN ('schedule', 'act_now'), ?1
FROM observed o LEFT JOIN crossing c USING (run_id, series_id)"""

# Reliability of the scored estimates made since parameter 1, per series and overall (the same
# figures, a constant fragment of SQL text, no values). `coverage` counts an
# estimate without a crossing by forecaster.engine.reliability.interval_credit (the same formula);
# `coverage_crossed` is over crossings only.
_RELIABILITY_FIGURES = """count(*) AS scored,
       count(*) FILTER (WHERE e.crossed) AS crossings,
       avg(e.covered::INTEGER) FILTER (WHERE e.crossed) AS coverage_crossed,
       avg(CASE WHEN e.crossed THEN e.covered::DOUBLE
                WHEN e.p_breach >= 1 THEN 0.0
                ELSE greatest(0.0, 0.9 - greatest(e.p_breach, 0.1)) / (1.0 - e.p_breach)
           END) AS coverage,
       avg(abs(e.eta_error_s)) FILTER (WHERE e.crossed) / 3600.0 AS eta_mae_h,
       avg(power(e.p_breach - e.crossed::INTEGER, 2)) AS brier,
       count(*) FILTER (WHERE e.warned AND NOT e.crossed) AS false_alarms,
       count(*) FILTER (WHERE e.crossed AND NOT e.warned) AS missed"""
RELIABILITY = f"""
SELECT s.series_id, s.service || ':' || s.metric AS unique_id,
       {_RELIABILITY_FIGURES}
FROM estimate_scores e JOIN series s USING (series_id)
WHERE e.as_of >= ?
GROUP BY ALL ORDER BY unique_id"""
RELIABILITY_OVERALL = f"""
SELECT {_RELIABILITY_FIGURES}
FROM estimate_scores e WHERE e.as_of >= ?"""
# The scored estimates made since parameter 1 that kept their raw distribution, as
# forecaster.engine.calibration.Scored (the record the recalibration map is fitted on): the first of
# each series in each 6 hours, since refreshes every few minutes make near-copies (and 30 days of
# a thousand series would otherwise be millions of rows each refresh).
CALIBRATION_RECORD = """
WITH thinned AS (
    SELECT run_id, series_id, as_of, crossing FROM estimate_scores
    WHERE as_of >= ?
    QUALIFY row_number() OVER (PARTITION BY series_id, time_bucket(INTERVAL 6 HOUR, as_of)
                               ORDER BY as_of, run_id) = 1
)
SELECT e.series_id, e.as_of, i.passage, i.p_breach_raw AS p_raw, i.horizon_s,
       epoch(e.crossing) - epoch(e.as_of) AS crossing_s
FROM thinned e JOIN interventions i USING (run_id, series_id)
WHERE i.passage IS NOT NULL AND i.p_breach_raw IS NOT NULL
  AND i.decision NOT IN ('breached', 'stale')
ORDER BY e.as_of, e.series_id"""
ANOMALIES = """
SELECT a.run_id, a.service || ':' || a.metric AS unique_id, a.service, a.metric, a.ts, a.score,
       a.precursor, a.corroborated_by, a.detail, a.detector, a.features
FROM anomalies a
WHERE a.run_id = ? AND a.is_anomaly
  AND (?::TIMESTAMP IS NULL OR a.ts >= ?)
  AND (?::VARCHAR IS NULL OR a.service = ?)
ORDER BY a.ts DESC, a.score DESC, unique_id"""
SAVE_CHOICES = """
INSERT OR REPLACE INTO model_choices BY NAME SELECT * FROM new_choices"""
MODEL_CHOICES = "SELECT series_id, model, chosen_at FROM model_choices"

POINTS_UP_TO = """
SELECT series_id, ts, value FROM points
WHERE ts <= ? AND series_id IN (SELECT unnest(?::INTEGER[]))
ORDER BY series_id, ts"""

LATEST_PUBLISHED_RUN = """
SELECT run_id FROM runs WHERE status = 'published' ORDER BY run_id DESC LIMIT 1"""
RUN = """
SELECT run_id, started_at, finished_at, as_of, status, trigger, error, detail
FROM runs WHERE run_id = ?"""
RUNS = """
SELECT run_id, started_at, finished_at, as_of, status, trigger, error, detail
FROM runs ORDER BY run_id DESC LIMIT ?"""

# The rank of a decision, from schema.DECISIONS (package constants, not input values).
_URGENCY = "CASE i.decision " + " ".join(
    f"WHEN '{d}' THEN {rank}" for rank, d in enumerate(DECISIONS)) + f" ELSE {len(DECISIONS)} END"
INTERVENTIONS = """
SELECT i.run_id, s.service || ':' || s.metric AS unique_id, i.service, i.metric, i.decision,
       i.p_breach, i.p_breach_raw, i.eta_p10, i.eta_p50, i.eta_p90, i.act_by, i.action,
       i.lead_time_s, i.limit_value, i.direction, i.last_value, i.next_check_at, i.reason,
       i.precursor_score, i.precursors, i.reliability,
       r.model, r.train_start, r.train_end, r.last_point, r.freshness_s, r.flags
FROM interventions i
JOIN series s USING (series_id)
JOIN run_series r ON r.run_id = i.run_id AND r.series_id = i.series_id
WHERE i.run_id = ?
ORDER BY {urgency}, i.precursor_score DESC NULLS LAST, i.act_by NULLS LAST, i.p_breach DESC,
         unique_id""".replace(
    "{urgency}", _URGENCY)
FORECASTS = """
SELECT s.service || ':' || s.metric AS unique_id, f.ds, f.mean, f.q05, f.q10, f.q25, f.q50,
       f.q75, f.q90, f.q95
FROM forecasts f JOIN series s USING (series_id)
WHERE f.run_id = ? AND (?::VARCHAR IS NULL OR s.service || ':' || s.metric = ?)
ORDER BY unique_id, f.ds"""
RUN_SERIES = """
SELECT s.service || ':' || s.metric AS unique_id, r.status, r.model, r.transform,
       r.train_start, r.train_end, r.n_train, r.last_point, r.freshness_s, r.flags, r.error
FROM run_series r JOIN series s USING (series_id)
WHERE r.run_id = ? ORDER BY unique_id"""

# ---------------------------------------------------------------------------------------------
# Reads

SERIES = """
SELECT series_id, service || ':' || metric AS unique_id, service, metric, unit, kind
FROM series ORDER BY service, metric"""

HISTORY = """
SELECT s.service || ':' || s.metric AS unique_id, p.ts AS ds, p.value AS y
FROM points p JOIN series s USING (series_id)
WHERE (?::VARCHAR IS NULL OR s.service = ?)
  AND (?::VARCHAR IS NULL OR s.metric = ?)
  AND (?::TIMESTAMP IS NULL OR p.ts >= ?)
  AND (?::TIMESTAMP IS NULL OR p.ts < ?)
ORDER BY unique_id, ds"""

SERIES_SUMMARY = """
WITH last AS (
    SELECT series_id, max(ts) AS last_ts FROM points GROUP BY series_id
)
SELECT s.service, s.metric, s.unit, s.kind, count(*) AS points,
       min(p.ts) AS first_ts, l.last_ts,
       arg_max(p.value, p.ts) AS last_value,
       avg(p.value) FILTER (WHERE p.ts > l.last_ts - INTERVAL 1 DAY) AS mean_last_day,
       avg(p.value) FILTER (WHERE p.ts > l.last_ts - INTERVAL 8 DAY
                            AND p.ts <= l.last_ts - INTERVAL 7 DAY) AS mean_week_before,
       min(p.value) AS min_value, max(p.value) AS max_value
FROM points p JOIN series s USING (series_id) JOIN last l USING (series_id)
GROUP BY ALL ORDER BY s.service, s.metric"""

COUNTS = """
SELECT (SELECT count(*) FROM series), (SELECT count(*) FROM points),
       (SELECT count(*) FROM requests), (SELECT count(*) FROM events)"""


def quote_ident(name: str) -> str:
    """Quote a column name of an input file as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'

# ---------------------------------------------------------------------------------------------
# Databases a command made and may rebuild (the demo's): a marker inside the file says who made it.

# Every table, view and sequence of the file, views first and sequences last, the order in
# which they can be dropped (a table's default may use a sequence, a view may read a table).
USER_OBJECTS = """
SELECT kind, name FROM (
    SELECT 1 AS rank, 'VIEW' AS kind, view_name AS name FROM duckdb_views()
    WHERE database_name = current_database() AND NOT internal AND NOT temporary
    UNION ALL
    SELECT 2, 'TABLE', table_name FROM duckdb_tables()
    WHERE database_name = current_database() AND NOT internal AND NOT temporary
    UNION ALL
    SELECT 3, 'SEQUENCE', sequence_name FROM duckdb_sequences()
    WHERE database_name = current_database() AND NOT temporary
) ORDER BY rank, name"""
CREATE_MADE_BY = """
CREATE TABLE made_by (maker VARCHAR NOT NULL, made_at TIMESTAMP NOT NULL)"""
MARK_MADE_BY = "INSERT INTO made_by VALUES (?, ?)"
IS_MADE_BY = "SELECT count(*) > 0 FROM made_by WHERE maker = ?"
# Databases made before the marker existed: the demo's run is the only trace of its maker.
HAS_RUN_OF_TRIGGER = "SELECT count(*) > 0 FROM runs WHERE trigger = ?"
# ... and whose every ingest read the shipped sample fleet (a constant pattern, not a value).
INGESTS_NOT_OF_THE_SAMPLE = """
SELECT count(*) > 0 FROM ingest_log WHERE source NOT LIKE '%fleet/points.parquet'"""


def drop_object(kind: str, name: str) -> str:
    """``DROP`` statement for one object listed by :data:`USER_OBJECTS` (identifiers cannot be
    parameters, so the name is quoted)."""
    if kind not in ("VIEW", "TABLE", "SEQUENCE"):
        raise ValueError(f"cannot drop a {kind}")
    return f"DROP {kind} IF EXISTS {quote_ident(name)}"

# A run left `running` by a process that stopped (only a process that holds the file writable
# runs this, so none can still be running): failed, with why; `finished_at` stays unknown.
FAIL_INTERRUPTED_RUNS = """
UPDATE runs SET status = 'failed', error = ?, detail = ? WHERE status = 'running'
RETURNING run_id"""
