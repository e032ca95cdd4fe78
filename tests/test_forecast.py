"""Preparation and forecasting with real statsforecast models."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from forecaster.engine.forecast import (
    POOL,
    ForecastSettings,
    _interval_score,
    forecast,
    prepare,
    select_models,
)
from forecaster.engine.intervention import DecisionSettings, time_to_intervention
from forecaster.engine.scales import Transform
from forecaster.policies import Policy

T0 = datetime(2026, 11, 1)
FS = ForecastSettings()


def five_minutes(n: int, start: datetime = T0) -> np.ndarray:
    return np.datetime64(start, "us") + np.arange(n) * np.timedelta64(300, "s")


def test_buckets_take_the_max_for_above_and_the_min_for_below() -> None:
    ds = five_minutes(24 * 12)
    y = np.tile(np.arange(12, dtype=float), 24)  # 0..11 in every hour
    now = T0 + timedelta(days=2)
    above = prepare("s:queue", ds, y, kind="gauge", step=timedelta(hours=1), direction="above",
                    now=now, event_at=None, settings=FS)
    below = prepare("s:queue", ds, y, kind="gauge", step=timedelta(hours=1), direction="below",
                    now=now, event_at=None, settings=FS)
    assert above is not None and below is not None
    assert set(above.y.tolist()) == {11.0} and set(below.y.tolist()) == {0.0}
    assert above.y.size == 24 and above.transform is Transform.IDENTITY


def test_points_after_now_are_not_read_and_gaps_are_flagged() -> None:
    ds = five_minutes(12 * 24 * 4)
    y = np.arange(ds.size, dtype=float)
    keep = (np.arange(ds.size) // 12) % 2 == 0  # every other hour missing
    item = prepare("s:latency_p95_ms", ds[keep], y[keep] + 1, kind="latency",
                   step=timedelta(hours=1), direction="above",
                   now=T0 + timedelta(days=3), event_at=None, settings=FS)
    assert item is not None and item.transform is Transform.LOG
    assert item.observation.last_ts <= T0 + timedelta(days=3)
    assert "gaps_filled" in item.flags and "gappy" in item.flags and item.degenerate
    assert np.all(np.isfinite(item.y))


def test_training_starts_at_the_latest_event_when_enough_follows() -> None:
    ds = five_minutes(12 * 24 * 10)
    y = np.ones(ds.size)
    kwargs = dict(kind="gauge", step=timedelta(hours=1), direction="above",
                  now=T0 + timedelta(days=10), settings=FS)
    late = prepare("s:m", ds, y, event_at=T0 + timedelta(days=9), **kwargs)  # type: ignore[arg-type]
    early = prepare("s:m", ds, y, event_at=T0 + timedelta(days=4), **kwargs)  # type: ignore[arg-type]
    assert late is not None and late.train_start == T0 and "since_event" not in late.flags
    assert early is not None and early.train_start == T0 + timedelta(days=4)
    assert "since_event" in early.flags


def test_degenerate_series_are_flagged_and_still_forecast() -> None:
    short = prepare("s:a", five_minutes(5), np.arange(5.0), kind="gauge",
                    step=timedelta(hours=1), direction="above", now=T0 + timedelta(days=1),
                    event_at=None, settings=FS)
    flat = prepare("s:b", five_minutes(12 * 24 * 7), np.full(12 * 24 * 7, 3.0), kind="gauge",
                   step=timedelta(hours=1), direction="above", now=T0 + timedelta(days=8),
                   event_at=None, settings=FS)
    assert short is not None and "too_short" in short.flags
    assert flat is not None and "constant" in flat.flags
    choices = select_models([short, flat], FS)
    assert {c.model for c in choices.values()} == {"RWD"}
    dists = forecast([short, flat], {k: v.model for k, v in choices.items()},
                     {"s:a": 48, "s:b": 48}, FS)
    assert set(dists) == {"s:a", "s:b"}
    assert np.all(np.isfinite(dists["s:b"][0].mean)) and np.allclose(dists["s:b"][0].mean, 3.0)


def test_the_bucket_still_filling_is_not_trained_on_but_observed() -> None:
    ds = five_minutes(12 * 24 * 4)
    y = np.arange(ds.size, dtype=float)
    kwargs = dict(kind="gauge", step=timedelta(hours=1), direction="above", event_at=None,
                  settings=FS)
    # 10:20: the 10:00 bucket holds 10:00, 10:05, ..., 10:20 and expects more points
    now = T0 + timedelta(days=2, hours=10, minutes=20)
    filling = prepare("s:m", ds, y, now=now, **kwargs)  # type: ignore[arg-type]
    assert filling is not None
    assert filling.ds[-1] == np.datetime64(T0 + timedelta(days=2, hours=9), "us")
    assert filling.y[-1] == y[ds <= np.datetime64(T0 + timedelta(days=2, hours=9, minutes=55))
                              ][-1]
    assert filling.observation.last_ts == T0 + timedelta(days=2, hours=10)
    assert filling.observation.last_value == y[ds <= np.datetime64(now, "us")][-1]
    # 10:55: the last 5-minute point of the bucket is in, so the bucket is complete
    full = prepare("s:m", ds, y, now=now + timedelta(minutes=35), **kwargs)  # type: ignore[arg-type]
    assert full is not None and full.ds[-1] == np.datetime64(T0 + timedelta(days=2, hours=10),
                                                             "us")


def test_days_after_an_event_are_scored_on_shorter_windows() -> None:
    rng = np.random.default_rng(3)
    ds = five_minutes(12 * 24 * 10)
    hours = np.arange(ds.size) / 12
    y = 100 + 20 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 2, ds.size)
    item = prepare("s:m", ds, y, kind="gauge", step=timedelta(hours=1), direction="above",
                   now=T0 + timedelta(days=10), event_at=T0 + timedelta(days=6), settings=FS)
    assert item is not None and "since_event" in item.flags and item.y.size == 4 * 24
    # four days: too few for 2 x 72 steps of cross-validation after two seasons, so two windows
    # of (96 - 48) / 2 = 24 steps; a random walk cannot follow the daily cycle
    choice = select_models([item], FS)[item.unique_id]
    assert set(choice.scores) == set(POOL) and choice.score == min(choice.scores.values())
    assert choice.model in ("MSTL", "SeasonalNaive", "AutoTheta")
    assert choice.scores["Drift"] > 2 * choice.score
    dist, model = forecast([item], {item.unique_id: choice.model}, {item.unique_id: 48},
                           FS)[item.unique_id]
    assert model == choice.model and dist.residuals is not None
    assert dist.residual_ds is not None
    assert dist.residuals.size == dist.residual_ds.size > 48
    assert np.all(np.isfinite(dist.residuals)) and np.std(dist.residuals) < 5  # noise sd 2


def test_the_interval_score_of_a_hand_made_case() -> None:
    # width 2; a value 1 outside adds 2 / 0.2 = 10 times 1 (Gneiting and Raftery 2007, 6.2)
    frame = pl.DataFrame({"y": [2.0, 4.0, 0.0, 3.0], "M-lo-80": [1.0] * 4, "M-hi-80": [3.0] * 4})
    assert frame.select(_interval_score("M")).to_series().to_list() == [2.0, 12.0, 12.0, 2.0]


def test_a_linear_trend_with_noise_crosses_at_its_known_time() -> None:
    """Known answer: a line rising 0.1 an hour from 100 with N(0, 2) noise every 5 minutes.

    The true first-passage time of 150 after day 14 is read from 2,000 simulated continuations
    of that same process (its median is about 116 h after the cut-off); the engine sees only the
    14 observed days.
    """
    rng = np.random.default_rng(42)
    days = 14
    n, m = 12 * 24 * days, 12 * 24 * 14
    hours = np.arange(n + m) / 12
    limit = 150.0
    y = 100 + 0.1 * hours[:n] + rng.normal(0, 2.0, n)
    futures = 100 + 0.1 * hours[n:] + rng.normal(0, 2.0, (2000, m))
    passage_h = np.argmax(futures > limit, axis=1) / 12
    true_p10, true_p50, true_p90 = np.percentile(passage_h, [10, 50, 90])
    assert 100 < true_p50 < 130  # the process is what this test says it is
    now = T0 + timedelta(days=days)
    policy = Policy("queue_depth", limit, "above", "scale_out", timedelta(hours=6))
    item = prepare("svc:queue_depth", five_minutes(n), y, kind="gauge", step=policy.freq,
                   direction="above", now=now, event_at=None, settings=FS)
    assert item is not None
    choices = select_models([item], FS)
    dist, model = forecast([item], {item.unique_id: choices[item.unique_id].model},
                           {item.unique_id: policy.steps}, FS)[item.unique_id]
    answer = time_to_intervention(item.unique_id, dist, policy, item.observation, now,
                                  DecisionSettings(), np.random.default_rng(0))
    assert answer.eta_p10 is not None and answer.eta_p50 is not None
    assert answer.eta_p90 is not None

    def hours_after(ts: datetime) -> float:
        return (ts - now).total_seconds() / 3600

    detail = (model, answer.reason, (true_p10, true_p50, true_p90))
    assert hours_after(answer.eta_p10) <= true_p50 <= hours_after(answer.eta_p90), detail
    assert abs(hours_after(answer.eta_p50) - true_p50) <= 12, detail
    assert answer.decision == "schedule" and answer.p_breach == pytest.approx(1.0, abs=0.05)
