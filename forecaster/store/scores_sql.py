"""SQL of the self-scoring: estimate_scores, written once per published estimate whose horizon
has passed, and the figures and record read from it."""

from __future__ import annotations

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
SELECT s.series_id, s.unique_id,
       {_RELIABILITY_FIGURES}
FROM estimate_scores e JOIN series_named s USING (series_id)
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
