"""Self-scoring: published estimates scored once their horizon has passed, on a hand-made case
with hand-computed figures, and the record the recalibration map is fitted on."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from forecaster.engine.calibration import LEVELS, Scored, pit
from forecaster.engine.reliability import interval_credit
from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store

T0 = datetime(2026, 11, 1)
H = timedelta(hours=1)


def publish(store: Store, as_of_h: int, p: float, decision: str,
            etas: tuple[int | None, int | None, int | None],
            raw: tuple[float, list[float | None]] | None = None) -> int:
    as_of = T0 + as_of_h * H
    run_id = store.start_run(as_of, as_of, "test")
    [sid] = store.series()["series_id"].to_list()
    row = {"run_id": run_id, "series_id": sid, "service": "svc", "metric": "queue_depth",
           "limit_value": 100.0, "direction": "above", "action": "scale_out",
           "lead_time_s": 7200.0, "p_breach": p, "decision": decision, "reason": "test",
           "horizon_s": timedelta(days=2).total_seconds(),
           "p_breach_raw": raw[0] if raw else None, "passage": raw[1] if raw else None}
    for name, hours in zip(("eta_p10", "eta_p50", "eta_p90"), etas, strict=True):
        row[name] = T0 + hours * H if hours is not None else None
    frame = pl.DataFrame([row], schema_overrides={
        **{k: pl.Datetime("us") for k in ("eta_p10", "eta_p50", "eta_p90")},
        "p_breach_raw": pl.Float64, "passage": pl.List(pl.Float64)})
    store.publish_run(run_id, as_of, run_series=pl.DataFrame(), forecasts=pl.DataFrame(),
                      interventions=frame, choices=pl.DataFrame(), detail="{}")
    return run_id


def test_published_estimates_are_scored_once_with_hand_computed_figures(tmp_path: Path) -> None:
    hours = np.arange(240)
    values = np.where(np.isin(hours, (30, 80)), 120.0, 50.0)  # past 100 at 30 h and at 80 h
    with Store.open(tmp_path / "s.duckdb", now=T0) as store:
        ingest_points_frame(store, pl.DataFrame({
            "ts": [T0 + int(h) * H for h in hours], "service": "svc", "metric": "queue_depth",
            "value": values}), now=T0)
        publish(store, 0, 0.7, "schedule", (20, 25, 40))  # covered, 5 h off (25 vs 30)
        publish(store, 10, 0.6, "watch", (35, 40, 45))    # not covered, 10 h off, a miss
        publish(store, 40, 0.3, "ok", (70, None, None))   # covered (p90 beyond), 88 - 80 = 8 h
        publish(store, 100, 0.2, "act_now", (110, 120, 130))  # nothing crosses: false alarm
        publish(store, 200, 0.5, "watch", (210, 220, 230))  # its horizon has not passed yet
        now = T0 + 239 * H
        assert store.score_estimates(now) == 4
        assert store.score_estimates(now) == 0  # once each
        per_series, overall = store.reliability()
    assert overall["scored"] == 4 and overall["crossings"] == 3
    # two of three crossings covered; the quiet estimate (p 0.2) counts (0.9 - 0.2) / 0.8,
    # as interval_credit does in the backtest
    assert overall["coverage_crossed"] == pytest.approx(2 / 3)
    assert overall["coverage"] == pytest.approx((1 + 0 + 1 + 0.7 / 0.8) / 4)
    assert interval_credit(0.2, False, False) == pytest.approx(0.7 / 0.8)
    assert overall["eta_mae_h"] == pytest.approx((5 + 10 + 8) / 3)
    assert overall["brier"] == pytest.approx((0.3 ** 2 + 0.4 ** 2 + 0.7 ** 2 + 0.2 ** 2) / 4)
    assert overall["false_alarms"] == 1 and overall["missed"] == 2
    [row] = per_series.to_dicts()
    assert row["unique_id"] == "svc:queue_depth" and row["coverage_crossed"] == pytest.approx(2 / 3)
    assert row["coverage"] == pytest.approx(overall["coverage"])


def test_scored_estimates_with_their_raw_distribution_form_the_calibration_record(
        tmp_path: Path) -> None:
    hours = np.arange(120)
    values = np.where(hours == 30, 120.0, 50.0)  # past 100 at 30 h only
    # raw first-passage quantiles: level 0.05 k at 2 k hours (as far as the raw p reaches)
    passage = [2.0 * 3600 * k if level <= 0.8 else None for k, level in enumerate(LEVELS, 1)]
    with Store.open(tmp_path / "s.duckdb", now=T0) as store:
        ingest_points_frame(store, pl.DataFrame({
            "ts": [T0 + int(h) * H for h in hours], "service": "svc", "metric": "queue_depth",
            "value": values}), now=T0)
        publish(store, 0, 0.7, "schedule", (20, 25, 40), raw=(0.8, passage))  # crossing at 30 h
        publish(store, 40, 0.3, "ok", (70, None, None), raw=(0.4, passage))  # none
        publish(store, 45, 0.3, "ok", (70, None, None))  # kept no raw distribution: left out
        assert store.score_estimates(T0 + 119 * H) == 3
        record = [Scored(**row) for row in
                  store.calibration_record(T0).iter_rows(named=True)]
    assert [r.as_of for r in record] == [T0, T0 + 40 * H]
    first, second = record
    assert first.crossing_s == 30 * 3600 and first.p_raw == 0.8
    assert first.horizon_s == 48 * 3600 and list(first.passage) == passage
    assert second.crossing_s is None
    # 30 h lies between the quantiles at 0.75 (30 h) and 0.80 (32 h): u = 0.75
    assert pit(first.passage, first.p_raw, first.horizon_s, first.crossing_s) == (
        pytest.approx(0.75), False)
    assert pit(second.passage, second.p_raw, second.horizon_s, None) == (0.4, True)
