"""Recalibration of the first-passage distribution: the PIT of a crossing, weights, and the
Kaplan-Meier map on seeded data with a known answer."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from forecaster.engine.calibration import LEVELS, Scored, day_weights, fit, fit_record, pit
from forecaster.engine.reliability import interval_credit

H = 3600.0


def test_pit_interpolates_the_raw_quantiles_and_censors_without_a_crossing() -> None:
    # raw p 0.5; quantiles at 1 h per 0.05 up to 0.5 (10 h), none beyond
    passage = [H * k if level <= 0.5 else None for k, level in enumerate(LEVELS, 1)]
    assert pit(passage, 0.5, 48 * H, 4.5 * H) == (pytest.approx(0.225), False)
    assert pit(passage, 0.5, 48 * H, 0.5 * H) == (pytest.approx(0.025), False)  # from 0 at 0
    # between the last quantile (10 h, 0.5) and the horizon's end (48 h, p 0.5): flat
    assert pit(passage, 0.5, 48 * H, 30 * H) == (pytest.approx(0.5), False)
    assert pit(passage, 0.5, 48 * H, None) == (0.5, True)
    # several levels in one step: a crossing there gets the middle of the jump
    jump = [5 * H] * 19
    assert pit(jump, 1.0, 48 * H, 5 * H)[0] == pytest.approx((0.05 + 0.95) / 2)


def test_estimates_of_one_series_on_one_day_weigh_one_together() -> None:
    day = datetime(2026, 11, 1)
    w = day_weights([1, 1, 1, 1, 2, 1], [day + timedelta(hours=h) for h in (0, 6, 12, 18, 0)]
                    + [day + timedelta(days=1)])
    assert w.tolist() == [0.25, 0.25, 0.25, 0.25, 1.0, 1.0]


def _exponential_record(rng: np.random.Generator, n: int, true_rate: float, said_rate: float,
                        horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """PIT values of a forecaster that says T ~ Exp(said_rate) when T ~ Exp(true_rate),
    censored at the horizon."""
    t = rng.exponential(1.0 / true_rate, n)
    crossed = t <= horizon
    u = 1.0 - np.exp(-said_rate * np.minimum(t, horizon))
    return u, ~crossed


def test_the_map_recovers_a_known_miscalibration() -> None:
    # Said rate 3x the true one: U = 1 - exp(-3 r T) with T ~ Exp(r), so
    # P(U <= u) = 1 - (1 - u)^(1/3) (derived by hand); observable up to the horizon's level.
    rng = np.random.default_rng(7)
    u, censored = _exponential_record(rng, 20_000, true_rate=0.02, said_rate=0.06, horizon=48)
    cal = fit(u, censored, np.ones(u.size), prior=0, min_weight=1)
    assert cal is not None
    p_raw = 1 - np.exp(-0.06 * 48)  # 0.944
    for level in (0.1, 0.3, 0.5, 0.7, 0.9):
        assert level < p_raw
        assert cal.level(level) == pytest.approx(1 - (1 - level) ** (1 / 3), abs=0.015)
    assert cal.level(0.0) == 0.0
    # the calibrated p_breach is the true chance of a crossing within 48 h: 1 - exp(-0.96)
    assert cal.level(p_raw) == pytest.approx(1 - np.exp(-0.02 * 48), abs=0.015)


def test_a_calibrated_forecaster_keeps_the_identity() -> None:
    rng = np.random.default_rng(11)
    u, censored = _exponential_record(rng, 20_000, true_rate=0.02, said_rate=0.02, horizon=48)
    cal = fit(u, censored, np.ones(u.size), prior=0, min_weight=1)
    assert cal is not None
    for level in (0.05, 0.2, 0.4, 0.6):
        assert cal.level(level) == pytest.approx(level, abs=0.015)


def test_raw_level_inverts_the_map_and_small_records_lean_on_the_identity() -> None:
    rng = np.random.default_rng(3)
    u, censored = _exponential_record(rng, 400, true_rate=0.02, said_rate=0.06, horizon=48)
    strong = fit(u, censored, np.ones(u.size), prior=0, min_weight=1)
    mixed = fit(u, censored, np.ones(u.size), prior=400, min_weight=1)
    assert strong is not None and mixed is not None
    for q in (0.1, 0.5):
        raw = strong.raw_level(q)
        assert raw is not None and strong.level(raw) == pytest.approx(q, abs=1e-9)
    # equal weight of record and identity: halfway between the two
    assert mixed.level(0.5) == pytest.approx((strong.level(0.5) + 0.5) / 2, abs=1e-9)
    assert strong.raw_level(0.99) is None  # never reached within the horizon
    assert np.all(np.diff(strong.values) >= 0) and 0 <= strong.values[-1] <= 1
    assert fit(u, censored, np.ones(u.size), prior=0, min_weight=401) is None  # too little
    assert fit_record([], prior=30, min_weight=0) is None


def test_recalibrated_intervals_cover_eighty_percent_where_the_raw_ones_did_not() -> None:
    # The same overconfident forecaster (rate 3x too high), its answers re-read through the map
    # fitted on an earlier record: censored coverage moves from well below 0.8 to 0.8.
    rng = np.random.default_rng(5)
    horizon, said, true = 48.0, 0.06, 0.02
    u, censored = _exponential_record(rng, 20_000, true, said, horizon)
    cal = fit(u, censored, np.ones(u.size), prior=30, min_weight=20)
    assert cal is not None
    t = rng.exponential(1 / true, 20_000)

    def said_quantile(level: float | None) -> float:  # Exp(said) quantile; inf beyond
        if level is None or level >= 1 - np.exp(-said * horizon):
            return np.inf
        return -np.log(1 - level) / said

    def coverage(p: float, low: float, high: float) -> float:
        crossed = t <= horizon
        inside = (t >= low) & (t <= high)
        return float(np.mean([interval_credit(p, bool(c), bool(i))
                              for c, i in zip(crossed, inside, strict=True)]))

    p_raw = 1 - np.exp(-said * horizon)
    raw = coverage(p_raw, said_quantile(0.1), said_quantile(0.9))
    fixed = coverage(cal.level(p_raw), said_quantile(cal.raw_level(0.1)),
                     said_quantile(cal.raw_level(0.9)))
    assert raw < 0.6
    assert fixed == pytest.approx(0.8, abs=0.03)


def test_fit_record_reads_pits_and_weights_from_scored_estimates() -> None:
    day = datetime(2026, 11, 1)
    passage = [H * k for k in range(1, 20)]  # level 0.05 k at k hours
    record = [Scored(1, day + timedelta(hours=h), passage, 0.95, 48 * H,
                     None if h % 2 else 10 * H) for h in range(40)]  # 2 days x 20 estimates
    cal = fit_record(record, prior=0, min_weight=2)
    assert cal is not None and cal.weight == pytest.approx(2.0)
    # half cross at PIT 0.5, half are censored at 0.95: Kaplan-Meier puts 0.5 at 0.5
    assert cal.level(0.5) == pytest.approx(0.5)
    assert fit_record(record, prior=0, min_weight=3) is None
