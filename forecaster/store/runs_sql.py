"""SQL of runs and what they publish: run_series, forecasts, interventions, anomalies, and the
model choices kept between runs."""

from __future__ import annotations

from forecaster.types import DECISIONS

# Runs: written by the pipeline only; readers see published runs only. Reads take the run id as
# a parameter: which run a read defaults to is decided once, by
# forecaster.store.reads.run_or_latest over LATEST_PUBLISHED_RUN.

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

# A run left `running` by a process that stopped (only a process that holds the file writable
# runs this, so none can still be running): failed, with why; `finished_at` stays unknown.
FAIL_INTERRUPTED_RUNS = """
UPDATE runs SET status = 'failed', error = ?, detail = ? WHERE status = 'running'
RETURNING run_id"""

SAVE_CHOICES = """
INSERT OR REPLACE INTO model_choices BY NAME SELECT * FROM new_choices"""
MODEL_CHOICES = "SELECT series_id, model, chosen_at FROM model_choices"

LATEST_PUBLISHED_RUN = """
SELECT run_id FROM runs WHERE status = 'published' ORDER BY run_id DESC LIMIT 1"""
RUN = """
SELECT run_id, started_at, finished_at, as_of, status, trigger, error, detail
FROM runs WHERE run_id = ?"""
RUNS = """
SELECT run_id, started_at, finished_at, as_of, status, trigger, error, detail
FROM runs ORDER BY run_id DESC LIMIT ?"""

# The latest published run whose as-of time is before parameter 1 (a week's last run).
RUN_BEFORE = """
SELECT run_id, started_at, finished_at, as_of, status, trigger, error, detail
FROM runs WHERE status = 'published' AND as_of < ?
ORDER BY as_of DESC, run_id DESC LIMIT 1"""

# An anomaly row keeps the service and metric it was found under (a series of a watched
# service), so its unique_id is built from those, not looked up (a constant fragment of SQL text).
_ANOMALY_UID = "a.service || ':' || a.metric"

# Every anomaly published runs found in [start, end), once per series and time (refreshes every
# few minutes find the same onset again): the latest run's row of each.
ANOMALIES_BETWEEN = """
SELECT a.run_id, {anomaly_uid} AS unique_id, a.service, a.metric, a.ts, a.score,
       a.precursor, a.corroborated_by, a.detail, a.detector
FROM anomalies a JOIN runs r ON r.run_id = a.run_id AND r.status = 'published'
WHERE a.is_anomaly AND a.ts >= ? AND a.ts < ?
QUALIFY row_number() OVER (PARTITION BY a.service, a.metric, a.ts ORDER BY a.run_id DESC) = 1
ORDER BY a.precursor DESC NULLS LAST, a.ts DESC, a.score DESC, unique_id""".replace(
    "{anomaly_uid}", _ANOMALY_UID)
ANOMALIES = """
SELECT a.run_id, {anomaly_uid} AS unique_id, a.service, a.metric, a.ts, a.score,
       a.precursor, a.corroborated_by, a.detail, a.detector, a.features
FROM anomalies a
WHERE a.run_id = ? AND a.is_anomaly
  AND (?::TIMESTAMP IS NULL OR a.ts >= ?)
  AND (?::VARCHAR IS NULL OR a.service = ?)
ORDER BY a.ts DESC, a.score DESC, unique_id""".replace("{anomaly_uid}", _ANOMALY_UID)

# The rank of a decision, from forecaster.types.DECISIONS (package constants, not input values).
_URGENCY = "CASE i.decision " + " ".join(
    f"WHEN '{d}' THEN {rank}" for rank, d in enumerate(DECISIONS)) + f" ELSE {len(DECISIONS)} END"
INTERVENTIONS = """
SELECT i.run_id, s.unique_id, i.service, i.metric, i.decision,
       i.p_breach, i.p_breach_raw, i.eta_p10, i.eta_p50, i.eta_p90, i.act_by, i.action,
       i.lead_time_s, i.limit_value, i.direction, i.last_value, i.next_check_at, i.reason,
       i.precursor_score, i.precursors, i.reliability,
       r.model, r.train_start, r.train_end, r.last_point, r.freshness_s, r.flags
FROM interventions i
JOIN series_named s USING (series_id)
JOIN run_series r ON r.run_id = i.run_id AND r.series_id = i.series_id
WHERE i.run_id = ?
ORDER BY {urgency}, i.precursor_score DESC NULLS LAST, i.act_by NULLS LAST, i.p_breach DESC,
         unique_id""".replace(
    "{urgency}", _URGENCY)
FORECASTS = """
SELECT s.unique_id, f.ds, f.mean, f.q05, f.q10, f.q25, f.q50, f.q75, f.q90, f.q95
FROM forecasts f JOIN series_named s USING (series_id)
WHERE f.run_id = ? AND (?::VARCHAR IS NULL OR s.unique_id = ?)
ORDER BY unique_id, f.ds"""
RUN_SERIES = """
SELECT s.unique_id, r.status, r.model, r.transform,
       r.train_start, r.train_end, r.n_train, r.last_point, r.freshness_s, r.flags, r.error
FROM run_series r JOIN series_named s USING (series_id)
WHERE r.run_id = ? ORDER BY unique_id"""
