"""SQL of staging an input: the input as view ``src``, its columns read as typed expressions,
the checks on times both kinds of input share, rejected rows, the ingest log.

The only text assembled at run time is a column *identifier* of an input file, quoted with
:func:`forecaster.store.query.quote_ident`, placed into the fixed templates below; values
travel as parameters or registered Arrow tables.
"""

from __future__ import annotations

# `src` is a view over the input with a 0-based `__row` column.

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

FIRST_REJECTS = """
SELECT row, reject[1], reject[2] FROM checked WHERE reject IS NOT NULL ORDER BY row LIMIT ?"""
ALL_REJECTS = """
SELECT row + 1 AS row, reject[1] AS field, reject[2] AS message
FROM checked WHERE reject IS NOT NULL ORDER BY row"""


# Every temporary object an ingest may leave on its cursor (points and request logs alike),
# dropped before the ingest's transaction commits.
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

LOG_INGEST = "INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
