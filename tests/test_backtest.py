"""The rolling-origin backtest: baselines on lines with known crossings, hand-computed scores,
and no data past a cut-off in any answer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import run_cli

from forecaster.backtest import (
    Estimate,
    Outcome,
    Result,
    Series,
    linear_eta,
    ours,
    outcome,
    run,
    score,
    seasonal_naive_eta,
    series_of,
)
from forecaster.config import Settings
from forecaster.engine.reliability import interval_credit
from forecaster.pipeline import run_once
from forecaster.policies import Policy
from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store

T0 = datetime(2026, 11, 1)
STEP = timedelta(minutes=5)
POLICY = Policy("queue_depth", 100.0, "above", "scale_out", timedelta(hours=2),
                horizon=timedelta(days=2))


def line(n: int, start: float, per_hour: float, noise: float = 0.0, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    ts = np.datetime64(T0, "us") + np.arange(n) * np.timedelta64(5, "m")
    hours = np.arange(n) / 12.0
    values = start + per_hour * hours + rng.normal(0, noise, n)
    return Series(1, "svc", "queue_depth", "gauge", POLICY, ts, values)


def test_predict_linear_finds_where_a_line_meets_the_limit() -> None:
    s = line(24 * 12, 10.0, 1.0)  # 10 + t hours: the limit 100 is reached at t = 90 h
    cutoff = T0 + STEP * (s.ts.size - 1)  # t = 23.92 h, value 33.92
    eta = linear_eta(s.ts, s.values, cutoff, timedelta(hours=6), POLICY)
    assert eta == pytest.approx(T0 + timedelta(hours=90), abs=timedelta(seconds=1))
    falling = line(24 * 12, 50.0, -1.0)
    assert linear_eta(falling.ts, falling.values, cutoff, timedelta(hours=6), POLICY) is None
    below = Policy("quality_score", 0.8, "below", "retrain", timedelta(days=1))
    # 50 - t reaches 0.8 at t = 49.2 h
    assert linear_eta(falling.ts, falling.values, cutoff, timedelta(hours=6), below) == \
        pytest.approx(T0 + timedelta(hours=49.2), abs=timedelta(seconds=1))
    assert linear_eta(s.ts, s.values, cutoff, timedelta(hours=6), below) is None


def test_seasonal_naive_repeats_the_last_day() -> None:
    n = 3 * 288
    ts = np.datetime64(T0, "us") + np.arange(n) * np.timedelta64(5, "m")
    hour = (np.arange(n) // 12) % 24
    values = np.where(hour == 15, 120.0, 50.0)  # every day at 15:00 the limit is passed
    cutoff = T0 + timedelta(days=2, hours=23, minutes=55)
    eta = seasonal_naive_eta(ts, values, cutoff, POLICY)
    # the repeated day starts at the cut-off; its 16th hourly bucket is 15:00-16:00 a day ago
    assert eta == cutoff + timedelta(hours=15.5)


def test_outcome_is_the_first_point_past_the_limit_within_the_horizon() -> None:
    s = line(60 * 12, 10.0, 2.0)  # 100 is passed after t = 45 h: first point at 45:05
    o = outcome(s, T0 + timedelta(hours=10))
    assert o.crossing == T0 + timedelta(hours=45, minutes=5) and not o.past_at_cutoff
    slow = line(72 * 12, 10.0, 1.0)  # passes 100 only after 90 h: beyond 10 h + 2 days
    assert outcome(slow, T0 + timedelta(hours=10)).crossing is None
    assert outcome(s, T0 + timedelta(hours=50)).past_at_cutoff
    short = line(40 * 12, 10.0, 2.0)  # the data end before the crossing
    assert outcome(short, T0 + timedelta(hours=10)).crossing is None


def test_scores_of_a_hand_made_case() -> None:
    c1, c2, c3 = (T0 + timedelta(hours=h) for h in (0, 10, 20))
    x = T0 + timedelta(hours=30)
    end = timedelta(days=2)
    outcomes = [Outcome("a:m", c1, c1 + end, x, False), Outcome("a:m", c2, c2 + end, x, False),
                Outcome("a:m", c3, c3 + end, None, False)]
    h = timedelta(hours=1)
    estimates = [
        # 10 h late, interval [20 h, 40 h] holds 30 h; warned: lead 30 h
        Estimate("m", "a:m", c1, T0 + 20 * h, T0 + 40 * h, T0 + 40 * h, 0.6, "schedule"),
        # 4 h early, interval [24 h, 28 h] misses 30 h; not warned: a miss
        Estimate("m", "a:m", c2, T0 + 24 * h, T0 + 26 * h, T0 + 28 * h, 0.4, "watch"),
        # no crossing follows, but it said act_now: a false alarm
        Estimate("m", "a:m", c3, None, None, None, 0.9, "act_now"),
    ]
    [figures] = score(Result(estimates, outcomes)).values()
    assert figures["eta_mae_h"] == pytest.approx((10 + 4) / 2)
    # covered, missed, and no crossing after p = 0.9: interval_credit(0.9) = 0 / 0.1 = 0
    assert figures["coverage"] == pytest.approx(1 / 3)
    assert figures["coverage_crossed"] == pytest.approx(0.5)
    assert figures["coverage_given_interval"] == pytest.approx(0.5)  # both gave an interval
    assert figures["brier"] == pytest.approx(((0.6 - 1) ** 2 + (0.4 - 1) ** 2 + 0.9 ** 2) / 3)
    assert figures["false_alarms"] == 1 and figures["false_alarm_rate"] == 1.0
    assert figures["missed"] == 1 and figures["miss_rate"] == 0.5
    assert figures["lead_h_median"] == pytest.approx(30.0)


def test_interval_credit_of_a_cutoff_without_crossing() -> None:
    # (0.9 - max(p, 0.1)) / (1 - p): the forecast's own chance that T, known only to lie beyond
    # the horizon, is inside [eta_p10, eta_p90]
    assert interval_credit(0.3, False, False) == pytest.approx(0.6 / 0.7)
    assert interval_credit(0.05, False, False) == pytest.approx(0.8 / 0.95)
    assert interval_credit(0.0, False, False) == pytest.approx(0.8)
    assert interval_credit(0.95, False, False) == 0.0 and interval_credit(1.0, False, False) == 0
    assert interval_credit(0.5, True, True) == 1.0 and interval_credit(0.5, True, False) == 0.0


def exponential_forecasts(n: int, scale: float, seed: int,
                          rates_between: tuple[float, float] = (0.05, 5.0)) -> Result:
    """Cut-offs whose first-passage time is exponential with a known rate (log-uniform in
    ``rates_between``, per horizon); each answer's quantiles are of a rate ``scale`` times the
    true one (``scale`` 1: a calibrated forecaster)."""
    rng = np.random.default_rng(seed)
    horizon = timedelta(days=2)
    low, high = rates_between
    rates = np.exp(rng.uniform(np.log(low), np.log(high), n))  # per horizon
    times = rng.exponential(1.0 / rates)  # in horizons
    result = Result()
    for i, (rate, t) in enumerate(zip(rates * scale, times, strict=True)):
        cutoff = T0 + timedelta(days=3 * i)
        p = 1.0 - np.exp(-rate)
        etas = [cutoff + horizon * (-np.log(1 - q) / rate) if -np.log(1 - q) / rate <= 1 else None
                for q in (0.1, 0.5, 0.9)]
        result.estimates.append(Estimate("m", "a:m", cutoff, *etas, float(p), "watch"))
        result.outcomes.append(Outcome("a:m", cutoff, cutoff + horizon,
                                       cutoff + horizon * t if t <= 1 else None, False))
    return result


def test_a_calibrated_forecaster_covers_eighty_percent() -> None:
    """Known answer: exact quantiles of the true first-passage distribution cover 80% by
    ``coverage`` whether crossings are common or rare; over crossings alone they cover far less
    when crossings are rare (many come after a rightly low ``p_breach``, with no interval)."""
    [common] = score(exponential_forecasts(4000, 1.0, seed=11)).values()
    [rare] = score(exponential_forecasts(4000, 1.0, seed=12, rates_between=(0.01, 0.5))).values()
    assert common["coverage"] == pytest.approx(0.8, abs=0.02)  # 4000 draws: sd about 0.006
    assert rare["coverage"] == pytest.approx(0.8, abs=0.02)
    assert rare["coverage_crossed"] < 0.5
    [overconfident] = score(exponential_forecasts(4000, 3.0, seed=11)).values()
    [late] = score(exponential_forecasts(4000, 1 / 3, seed=11)).values()
    # a rate off by 3x either way: 0.67 and 0.71 (seed 11), clear of 0.8 +- 0.02
    assert overconfident["coverage"] < 0.75 and late["coverage"] < 0.75
    assert common["brier"] < min(overconfident["brier"], late["brier"])


def test_no_answer_uses_data_past_its_cutoff() -> None:
    s = line(8 * 288, 20.0, 0.5, noise=2.0, seed=4)  # passes 100 at 160 h
    cutoffs = [T0 + timedelta(days=3), T0 + timedelta(days=5), T0 + timedelta(days=5, hours=12)]
    # the day-3 estimate is scored by day 5 and recalibrates the later ones
    settings = Settings(sample_paths=500, calibration_min_weight=1)
    before = run([s], cutoffs, settings)
    wild = s.values.copy()
    last = np.datetime64(cutoffs[-1], "us")
    wild[s.ts > last] = 1e6  # a future that would change every answer that peeked at it
    after = run([Series(1, "svc", "queue_depth", "gauge", POLICY, s.ts, wild)], cutoffs,
                settings)
    assert {e.method for e in before.estimates} == {"forecaster", "predict_linear_6h",
                                                     "predict_linear_24h", "timeleft_7d",
                                                     "seasonal_naive"}
    assert before.estimates == after.estimates
    assert before.outcomes != after.outcomes  # the future itself did change
    ours = sorted((e for e in before.estimates if e.method == "forecaster"),
                  key=lambda e: e.cutoff)
    assert ours[0].p_breach == ours[0].p_raw  # nothing scored yet
    # The record by day 5: the day-3 estimate, no crossing by day 5 (the line is at 80), a
    # censored value only, so Kaplan-Meier sees no event and the map is the identity weighed
    # 30 against 1 for a zero CDF: g(u) = 30 u / 31.
    assert outcome(s, cutoffs[0]).crossing is None
    for e in ours[1:]:
        assert e.p_raw == 1.0 and e.p_breach == pytest.approx(30 / 31)
    figures = score(before)
    for method in figures.values():
        assert method["brier"] is None or 0.0 <= method["brier"] <= 1.0
        assert method["coverage"] is None or 0.0 <= method["coverage"] <= 1.0


def test_the_backtest_command_over_a_stored_history(tmp_path: Path) -> None:
    s = line(12 * 288, 20.0, 0.35, noise=2.0, seed=5)  # passes 100 after about 9.5 days
    db = tmp_path / "b.duckdb"
    with Store.open(db, now=T0) as store:
        ingest_points_frame(store, pl.DataFrame({
            "ts": s.ts, "service": "svc", "metric": "queue_depth", "value": s.values}), now=T0)
    policies = tmp_path / "p.toml"
    policies.write_text('[[policy]]\nmetric = "queue_depth"\nlimit = 100\ndirection = "above"\n'
                        'action = "scale_out"\nlead_time = "2h"\nhorizon = "2d"\n')
    result = run_cli("--db", str(db), "backtest", "--policies", str(policies), "--every", "1d",
                     "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) == {"forecaster", "predict_linear_6h", "predict_linear_24h",
                            "timeleft_7d", "seasonal_naive"}
    # cut-offs a day apart from day 7 to the last point (day 12 - 5 min) minus the horizon
    assert figures["forecaster"]["cutoffs"] == 3  # days 7, 8 and 9
    assert figures["forecaster"]["with_crossing"] >= 1
    text = run_cli("--db", str(db), "backtest", "--policies", str(policies), "--every", "1d")
    assert "3 cut-offs" in text.stdout and "predict_linear_6h" in text.stdout


def test_a_history_too_short_to_backtest_is_refused_clearly(tmp_path: Path) -> None:
    s = line(3 * 288, 20.0, 0.35)
    db = tmp_path / "short.duckdb"
    with Store.open(db, now=T0) as store:
        ingest_points_frame(store, pl.DataFrame({
            "ts": s.ts, "service": "svc", "metric": "latency_p95_ms", "value": s.values}),
            now=T0)
    result = run_cli("--db", str(db), "backtest")
    assert result.returncode == 2
    assert "no cut-off fits" in result.stderr and "7 days plus a horizon" in result.stderr
    with Store.open(db, now=T0) as store:  # nothing stored was touched
        assert store.counts()["points"] == 3 * 288


def test_the_backtest_scans_for_precursors_what_a_refresh_scans(tmp_path: Path) -> None:
    # One service: its p95 latency (with a policy, far below its limit) and its queue depth
    # (no policy) jump together 100 minutes before the cut-off. Alone, the latency's jump is no
    # precursor; the queue depth, of another kind, corroborates it, but only when it is scanned.
    rng = np.random.default_rng(2)
    n = 5000
    ts = np.datetime64(T0, "us") + np.arange(n) * np.timedelta64(5, "m")
    daily = np.sin(2 * np.pi * np.arange(n) / 288)
    latency = 600 + 60 * daily + rng.normal(0, 6, n)
    depth = 100 + 10 * daily + rng.normal(0, 1, n)
    latency[n - 20:n - 17] += 150
    depth[n - 20:n - 17] += 25
    cutoff = ts[-1].astype("datetime64[us]").item()
    policies = (Policy("latency_p95_ms", 1500.0, "above", "scale_out", timedelta(hours=2),
                       horizon=timedelta(days=2)),)
    settings = Settings(sample_paths=500)
    with Store.open(tmp_path / "p.duckdb", now=cutoff) as store:
        for metric, values in (("latency_p95_ms", latency), ("queue_depth", depth)):
            ingest_points_frame(store, pl.DataFrame({"ts": ts, "service": "svc",
                                                     "metric": metric, "value": values}),
                                now=cutoff)
        refresh = run_once(store, settings, policies, cutoff)
        series, events = series_of(store, policies)
    assert refresh.status == "published" and refresh.precursors >= 2
    [published] = refresh.interventions
    assert published.evidence and published.decision == "watch"  # p_breach alone says ok
    [target] = series
    assert {s.metric for s in target.service_series} == {"latency_p95_ms", "queue_depth"}
    [estimate] = ours(series, cutoff, settings, events, {})
    assert (estimate.decision, estimate.p_breach, estimate.eta_p10) == (
        published.decision, published.p_breach, published.eta_p10)
    # without the service's other series, the same cut-off misses the precursor
    alone = [Series(target.series_id, target.service, target.metric, target.kind,
                    target.policy, target.ts, target.values)]
    assert ours(alone, cutoff, settings, events, {})[0].decision == "ok"


def test_a_stale_answer_is_counted_apart_from_the_forecasts() -> None:
    stale = Estimate("forecaster", "svc:queue_depth", T0, None, None, None, None, "stale")
    fresh = Estimate("forecaster", "svc:queue_depth", T0 + timedelta(days=1), None, None, None,
                     0.0, "ok")
    outcomes = [Outcome("svc:queue_depth", e.cutoff, e.cutoff + POLICY.horizon, None, False)
                for e in (stale, fresh)]
    [figures] = score(Result([stale, fresh], outcomes)).values()
    assert figures["stale"] == 1 and figures["cutoffs"] == 1 and figures["brier"] == 0.0
