"""Time to intervention on forecast distributions with known answers (pure, no models)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest

from forecaster.engine.calibration import LEVELS, PassageCalibration
from forecaster.engine.intervention import (
    DecisionSettings,
    Evidence,
    ForecastDist,
    Observation,
    first_passage_steps,
    sample_paths,
    time_to_intervention,
    urgency_key,
)
from forecaster.engine.scales import Transform, forward, inverse
from forecaster.policies import Policy

NOW = datetime(2026, 11, 26, 0, 0)
STEP = timedelta(hours=1)
SETTINGS = DecisionSettings(n_paths=4000)


def dist(mean: np.ndarray, sd: np.ndarray | float,
         transform: Transform = Transform.IDENTITY) -> ForecastDist:
    ds = np.datetime64(NOW, "us") + np.arange(mean.size) * np.timedelta64(1, "h")
    return ForecastDist(ds=ds, mean=mean, sd=np.broadcast_to(np.asarray(sd, float), mean.shape),
                        transform=transform, step=STEP)


def policy(limit: float, direction: str = "above", lead: timedelta = timedelta(hours=6),
           metric: str = "queue_depth") -> Policy:
    return Policy(metric=metric, limit=limit, direction=direction, action="scale_out",
                  lead_time=lead)


def answer(d: ForecastDist, p: Policy, last: float = 0.0, seed: int = 1,
           calibration: PassageCalibration | None = None, settings: DecisionSettings = SETTINGS):
    obs = Observation(last_ts=NOW - STEP, last_value=last, trend_per_day=0.0, level=last)
    return time_to_intervention("svc:queue_depth", d, p, obs, NOW, settings,
                                np.random.default_rng(seed), calibration=calibration)


def test_a_certain_linear_rise_crosses_where_the_line_does() -> None:
    # mean = step index; limit 100.5 is passed at step 101, with next to no noise.
    a = answer(dist(np.arange(336, dtype=float), 1e-6), policy(100.5))
    crossing_step = NOW + 101 * STEP
    # eta_p50 is the midpoint of the step that crosses; the 80% interval spans that step
    assert a.eta_p50 == crossing_step + STEP / 2
    assert a.eta_p10 == crossing_step and a.eta_p90 == crossing_step + STEP
    assert a.p_breach == 1.0
    assert a.act_by == crossing_step - timedelta(hours=6)
    assert a.decision == "schedule" and a.next_check_at == NOW + SETTINGS.refresh_every


def test_a_flat_healthy_series_is_ok() -> None:
    a = answer(dist(np.full(336, 10.0), 1.0), policy(100.0), last=10.0)
    assert a.decision == "ok" and a.p_breach == 0.0
    assert a.eta_p10 is None and a.eta_p50 is None and a.eta_p90 is None and a.act_by is None
    assert "stays below" in a.reason


def test_a_series_past_its_limit_is_breached() -> None:
    a = answer(dist(np.full(336, 120.0), 1.0), policy(100.0), last=120.0)
    assert a.decision == "breached" and a.p_breach == 1.0 and a.act_by == NOW
    assert "past its limit" in a.reason


def test_below_limits_cross_downwards() -> None:
    # A score falling 0.01 a step from 0.9, on the logit scale: below 0.505 first at step 40.
    p_metric = np.clip(0.9 - 0.01 * np.arange(336), 0.01, 0.99)
    mean = np.log(p_metric / (1 - p_metric))
    a = answer(dist(mean, 1e-6, Transform.LOGIT), policy(0.505, "below", metric="quality_score"),
               last=0.9)
    assert a.eta_p50 == NOW + 40 * STEP + STEP / 2
    assert a.decision == "schedule"
    assert answer(dist(mean, 1e-6, Transform.LOGIT), policy(0.5, "above"), last=0.9).decision \
        == "breached"


def test_lead_time_longer_than_the_earliest_crossing_means_act_now() -> None:
    a = answer(dist(np.arange(336, dtype=float), 1e-6), policy(10.5, lead=timedelta(days=1)))
    assert a.act_by is not None and a.act_by < NOW
    assert a.decision == "act_now" and "act now" in a.reason


def test_an_uncertain_crossing_is_watched_with_the_probability_it_has() -> None:
    # Level 0 with sd 1: the first-passage probability over 336 steps of iid noise above 3.2 sd
    # is 1 - (1 - P(Z > 3.2))^336 = 1 - (1 - 6.87e-4)^336 = 0.206.
    a = answer(dist(np.zeros(336), 1.0), policy(3.2))
    assert a.p_breach == pytest.approx(0.206, abs=0.03)
    assert a.decision == "watch" and a.eta_p10 is not None and a.eta_p50 is None


def test_a_recalibrated_answer_reads_the_raw_distribution_through_the_map() -> None:
    grid = np.linspace(0.0, 1.0, 201)
    halve = PassageCalibration(grid=grid, values=grid / 2, weight=100.0)  # every chance said twice
    d, p = dist(np.zeros(336), 1.0), policy(3.2)
    one_round = replace(SETTINGS, rounds=1)
    raw, fixed = answer(d, p, settings=one_round), answer(d, p, calibration=halve,
                                                          settings=one_round)
    assert raw.p_raw == raw.p_breach == fixed.p_raw  # same paths; the raw share is kept
    assert fixed.p_breach == pytest.approx(raw.p_breach / 2)
    assert fixed.passage == raw.passage and len(raw.passage) == len(LEVELS)
    known = [s for s in raw.passage if s is not None]
    assert known == sorted(known)
    # eta_p10 is now the raw 0.2 quantile: the start of the step whose middle `passage` holds
    at_02 = raw.passage[LEVELS.index(0.2)]
    assert at_02 is not None and fixed.eta_p10 == NOW + timedelta(seconds=at_02) - STEP / 2
    assert raw.eta_p10 is not None and fixed.eta_p10 > raw.eta_p10
    assert fixed.eta_p50 is None and fixed.decision == "watch"  # 0.103 >= p_watch 0.1
    # with more rounds allowed, a calibrated p_breach that close to p_watch draws more paths:
    # the band of 3 standard errors is read through the map
    assert answer(d, p, calibration=halve).paths > answer(d, p).paths == SETTINGS.n_paths
    # answers past their limit keep no raw distribution (they are not scored)
    breached = answer(d, p, last=5.0, calibration=halve)
    assert breached.decision == "breached" and breached.p_raw is None and breached.passage == ()


@pytest.mark.parametrize("seed", range(20))
def test_invariants_on_random_distributions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    steps = int(rng.integers(24, 400))
    mean = np.cumsum(rng.normal(rng.normal(0, 0.05), 0.2, steps))
    sd = np.abs(rng.normal(0.5, 0.3)) * np.sqrt(1 + np.arange(steps) * rng.uniform(0, 0.1))
    limit = float(rng.normal(2, 2))
    a = answer(dist(mean, sd), policy(limit, "above" if seed % 2 else "below"),
               last=float(mean[0]) - (1 if seed % 2 else -1) * 50, seed=seed)
    assert 0.0 <= a.p_breach <= 1.0
    etas = [e for e in (a.eta_p10, a.eta_p50, a.eta_p90) if e is not None]
    assert etas == sorted(etas)
    # the same with a random monotone recalibration map
    grid = np.linspace(0.0, 1.0, 201)
    values = np.concatenate([[0.0], np.cumsum(rng.uniform(0, 1, 200))])
    cal = PassageCalibration(grid=grid, values=values / values[-1] * rng.uniform(0.5, 1.0),
                             weight=50)
    b = answer(dist(mean, sd), policy(limit, "above" if seed % 2 else "below"),
               last=float(mean[0]) - (1 if seed % 2 else -1) * 50, seed=seed, calibration=cal)
    assert 0.0 <= b.p_breach <= 1.0 and b.p_breach == pytest.approx(cal.level(a.p_breach))
    calibrated = [e for e in (b.eta_p10, b.eta_p50, b.eta_p90) if e is not None]
    assert calibrated == sorted(calibrated) and all(e >= NOW for e in calibrated)
    assert all(e >= NOW for e in etas)
    if a.eta_p10 is not None:
        assert a.act_by == a.eta_p10 - timedelta(hours=6) and a.act_by < a.eta_p10
    if a.eta_p50 is not None:
        # First passage is at or before the point where the median forecast crosses.
        crossed = mean > limit if seed % 2 else mean < limit
        if crossed.any():
            assert a.eta_p50 <= NOW + int(np.argmax(crossed)) * STEP + STEP / 2
    if a.eta_p90 is not None:
        assert a.eta_p50 is not None and a.eta_p10 is not None


def test_sample_paths_match_the_forecast_marginals() -> None:
    sd = np.linspace(1.0, 3.0, 48)
    paths = sample_paths(dist(np.full(48, 5.0), sd), 20000, np.random.default_rng(3))
    assert paths.mean(axis=0) == pytest.approx(np.full(48, 5.0), abs=0.06)
    assert paths.std(axis=0) == pytest.approx(sd, rel=0.03)
    # errors persist: neighbouring late steps are strongly correlated, the first is not
    late = np.corrcoef(paths[:, 40], paths[:, 41])[0, 1]
    assert late > 0.8


def test_noise_is_drawn_from_the_residuals_at_the_same_time_of_day() -> None:
    # four days of hourly residuals: +10 at 03:00 every day, 0 otherwise; no persistent part
    past = np.datetime64(NOW, "us") - np.arange(96, 0, -1) * np.timedelta64(1, "h")
    hours = (past - np.datetime64(NOW, "us")) // np.timedelta64(1, "h") % 24
    residuals = np.where(hours == 3, 10.0, 0.0)
    d = replace(dist(np.zeros(48), 0.0), residuals=residuals, residual_ds=past)
    paths = sample_paths(d, 500, np.random.default_rng(1))
    at_three = ((d.ds - np.datetime64(NOW, "us")) // np.timedelta64(1, "h")) % 24 == 3
    assert np.all(paths[:, at_three] == 10.0) and np.all(paths[:, ~at_three] == 0.0)
    # the daily spike the model smoothed over crosses a limit of 5 at 03:00 on the first day
    a = answer(d, policy(5.0))
    assert a.p_breach == 1.0 and a.eta_p50 == NOW + 3 * STEP + STEP / 2
    # too few residuals: the Gaussian noise of the forecast instead
    short = replace(dist(np.zeros(48), 1.0), residuals=residuals[:10], residual_ds=past[:10])
    assert sample_paths(short, 4000, np.random.default_rng(1)).std() == pytest.approx(1.0,
                                                                                     rel=0.05)


def test_a_one_off_extreme_is_not_replayed_as_noise_but_a_recurring_one_is() -> None:
    # ten days of hourly residuals, 0 except at 08:00: +9 on one day (an incident), and at
    # 14:00: +9 on two days (a recurring spike)
    past = np.datetime64(NOW, "us") - np.arange(240, 0, -1) * np.timedelta64(1, "h")
    hours = (past - np.datetime64(NOW, "us")) // np.timedelta64(1, "h") % 24
    day = (past - past[0]) // np.timedelta64(1, "D")
    residuals = np.where((hours == 8) & (day == 3), 9.0, 0.0)
    residuals[(hours == 14) & np.isin(day, (2, 6))] = 9.0
    d = replace(dist(np.zeros(48), 0.0), residuals=residuals, residual_ds=past)
    paths = sample_paths(d, 2000, np.random.default_rng(2))
    hour = ((d.ds - np.datetime64(NOW, "us")) // np.timedelta64(1, "h")) % 24
    assert paths[:, hour == 8].max() == 0.0  # the one-off is cut back to the next extreme
    share = (paths[:, hour == 14] == 9.0).mean()
    assert share == pytest.approx(0.2, abs=0.02)  # two days in ten


def test_a_percentage_never_passes_100() -> None:
    # a utilisation at 99.9% with a wide forecast on the percent-logit scale
    d = dist(np.full(336, float(forward(99.9, Transform.PERCENT_LOGIT))), 3.0,
             Transform.PERCENT_LOGIT)
    a = answer(d, policy(100.0, metric="gpu_utilization"), last=99.9)
    assert a.p_breach == 0.0 and a.decision == "ok"
    assert answer(d, policy(99.95, metric="gpu_utilization"), last=99.9).p_breach > 0.5
    values = np.array([0.5, 50.0, 99.0])
    assert inverse(forward(values, Transform.PERCENT_LOGIT), Transform.PERCENT_LOGIT) == \
        pytest.approx(values)


def test_first_passage_counts_the_first_step_only() -> None:
    paths = np.array([[0, 2, 0, 2], [0, 0, 0, 0], [3, 3, 3, 3]], dtype=float)
    steps = first_passage_steps(paths, 1.0, "above")
    assert steps.tolist() == [1.0, float("inf"), 0.0]
    assert first_passage_steps(paths, 1.0, "below").tolist() == [0.0, 0.0, float("inf")]


def test_fresh_precursor_evidence_makes_ok_a_watch_and_is_listed() -> None:
    flat = dist(np.full(336, 10.0), 1.0)
    evidence = (Evidence(NOW - timedelta(hours=1), 0.99, "error-rate burst"),)
    obs = Observation(last_ts=NOW - STEP, last_value=10.0)
    a = time_to_intervention("svc:queue_depth", flat, policy(100.0), obs, NOW, SETTINGS,
                             np.random.default_rng(1), evidence)
    assert a.decision == "watch" and a.p_breach == 0.0
    assert "Precursor anomalies: error-rate burst at Wed 25 Nov 23:00 UTC." in a.reason
    # probabilities are untouched: the same answer without evidence differs only in decision
    plain = time_to_intervention("svc:queue_depth", flat, policy(100.0), obs, NOW, SETTINGS,
                                 np.random.default_rng(1))
    assert plain.decision == "ok" and plain.p_breach == a.p_breach


def test_a_precursor_ranks_first_among_equal_decisions() -> None:
    flat = dist(np.full(336, 10.0), 1.0)
    obs = Observation(last_ts=NOW - STEP, last_value=10.0)
    drift = dist(np.linspace(10.0, 60.0, 336), 15.0)  # p_breach between watch and schedule

    def make(d: ForecastDist, evidence: tuple[Evidence, ...] = ()):
        return time_to_intervention("svc:queue_depth", d, policy(100.0), obs, NOW, SETTINGS,
                                    np.random.default_rng(1), evidence)

    weak = (Evidence(NOW - timedelta(hours=2), 0.986, "latency wobble"),)
    strong = (Evidence(NOW - timedelta(hours=1), 0.995, "error burst"),)
    watched, quiet, loud = make(drift), make(flat, weak), make(flat, strong)
    assert {watched.decision, quiet.decision, loud.decision} == {"watch"}
    assert 0.1 <= watched.p_breach < 0.5
    ranked = sorted([watched, quiet, loud], key=urgency_key)
    assert ranked == [loud, quiet, watched]
