"""SQL of the series and points tables: checking and merging points, and reading them back."""

from __future__ import annotations

from forecaster.names import MAX_UNIT_CHARS
from forecaster.store.staging_sql import TS_CHECKS

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

# One pass over the input both counts and de-duplicates: rows grouped by (key, ts, rejected),
# keeping the value of the last row of each group. Rejected rows are only counted.
GROUP_CHECKED = """
CREATE OR REPLACE TEMP TABLE grouped AS
SELECT key_id, ts, reject IS NOT NULL AS bad, arg_max(value, row) AS value, max(row) AS last,
       count(*) AS n
FROM checked GROUP BY ALL"""
COUNT_BY_KEY = """
SELECT key_id, sum(n), coalesce(sum(n) FILTER (WHERE bad), 0) FROM grouped GROUP BY key_id"""

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

POINTS_UP_TO = """
SELECT series_id, ts, value FROM points
WHERE ts <= ? AND series_id IN (SELECT unnest(?::INTEGER[]))
ORDER BY series_id, ts"""

# Reads name a series by its unique_id, from view series_named (migration 8).
SERIES = """
SELECT series_id, unique_id, service, metric, unit, kind
FROM series_named ORDER BY service, metric"""

HISTORY = """
SELECT s.unique_id, p.ts AS ds, p.value AS y
FROM points p JOIN series_named s USING (series_id)
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

