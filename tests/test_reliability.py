"""Self-scoring: published estimates scored once their horizon has passed, on a hand-made case
with hand-computed figures, and the widening rule."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from forecaster.ingest import ingest_points_frame
from forecaster.intervention import Z80
from forecaster.reliability import MAX_FACTOR, interval_credit, widen_factor
from forecaster.store import Store

T0 = datetime(2026, 11, 1)
H = timedelta(hours=1)


def publish(store: Store, as_of_h: int, p: float, decision: str,
            etas: tuple[int | None, int | None, int | None]) -> int:
    as_of = T0 + as_of_h * H
    run_id = store.start_run(as_of, as_of, "test")
    [sid] = store.series()["series_id"].to_list()
    row = {"run_id": run_id, "series_id": sid, "service": "svc", "metric": "queue_depth",
           "limit_value": 100.0, "direction": "above", "action": "scale_out",
           "lead_time_s": 7200.0, "p_breach": p, "decision": decision, "reason": "test",
           "horizon_s": timedelta(days=2).total_seconds()}
    for name, hours in zip(("eta_p10", "eta_p50", "eta_p90"), etas, strict=True):
        row[name] = T0 + hours * H if hours is not None else None
    frame = pl.DataFrame([row], schema_overrides={k: pl.Datetime("us") for k in
                                                  ("eta_p10", "eta_p50", "eta_p90")})
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


def test_intervals_are_widened_only_when_they_proved_too_narrow() -> None:
    # covering half of the crossings: a Gaussian interval of +-0.674 sd, widened to +-1.28 sd
    assert widen_factor(0.5, crossings=10, min_crossings=10) == pytest.approx(Z80 / 0.6745,
                                                                              rel=1e-3)
    assert widen_factor(0.9, crossings=50, min_crossings=10) == 1.0  # too wide: left alone
    assert widen_factor(0.5, crossings=9, min_crossings=10) == 1.0  # too little evidence
    assert widen_factor(None, crossings=0, min_crossings=10) == 1.0
    assert widen_factor(0.0, crossings=30, min_crossings=10) == MAX_FACTOR
    factors = [widen_factor(c, 20, 10) for c in (0.1, 0.3, 0.5, 0.7, 0.79)]
    assert factors == sorted(factors, reverse=True) and all(f >= 1.0 for f in factors)
