"""The same data gives the same answers: sample paths are seeded by what names a series (not a
storage id), and Monte Carlo noise does not decide (more paths near a threshold)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest

from forecaster.config import Settings
from forecaster.engine.intervention import (
    DecisionSettings,
    ForecastDist,
    Observation,
    path_seed,
    time_to_intervention,
)
from forecaster.engine.scales import Transform
from forecaster.pipeline import run_once
from forecaster.policies import DEFAULT_POLICIES, Policy
from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store

NOW = datetime(2026, 11, 26, 12, 0)
METRICS = ("latency_p95_ms", "ttft_p95_ms", "error_rate", "quality_score",
           "negative_feedback_rate")
COLUMNS = ["decision", "p_breach", "p_breach_raw", "eta_p10", "eta_p50", "eta_p90", "act_by",
           "reason", "model"]


def fleet(seed: int = 11) -> list[pl.DataFrame]:
    """40 series (8 services x 5 metrics), hourly for 10 days; trends of every size, so that
    some answers fall between the thresholds."""
    rng = np.random.default_rng(seed)
    n = 24 * 10
    ts = [NOW - timedelta(hours=n - 1 - i) for i in range(n)]
    t = np.arange(n) / 24
    day = np.sin(2 * np.pi * np.arange(n) / 24)
    frames = []
    for k in range(8):
        growth = 0.02 * k  # per day
        values = {
            "latency_p95_ms": 900 * np.exp(growth * t) * (1 + 0.05 * day)
            * rng.lognormal(0, 0.04, n),
            "ttft_p95_ms": 500 * np.exp(growth * t) * rng.lognormal(0, 0.05, n),
            "error_rate": np.clip(0.01 + 0.001 * k * t + rng.normal(0, 0.002, n), 0, 1),
            "quality_score": np.clip(0.9 - 0.002 * k * t + rng.normal(0, 0.01, n), 0, 1),
            "negative_feedback_rate": np.clip(0.05 + 0.001 * k * t
                                              + rng.normal(0, 0.005, n), 0, 1),
        }
        for metric in METRICS:
            frames.append(pl.DataFrame({"ts": ts, "service": f"svc-{k}", "metric": metric,
                                        "value": values[metric]}))
    return frames


def answers_of(path: Path, frames: list[pl.DataFrame]) -> tuple[pl.DataFrame, dict[str, int]]:
    with Store.open(path, now=NOW) as store:
        for frame in frames:  # one series at a time: ids follow this order
            assert ingest_points_frame(store, frame, NOW).rejected == 0
        result = run_once(store, Settings(), DEFAULT_POLICIES, NOW)
        assert result.status == "published" and result.failed == 0
        ids = dict(store.series().select("unique_id", "series_id").iter_rows())
        return store.interventions().sort("unique_id").select("unique_id", *COLUMNS), ids


def test_the_same_series_in_another_order_give_the_same_answers(tmp_path: Path) -> None:
    frames = fleet()
    first, first_ids = answers_of(tmp_path / "a.duckdb", frames)
    second, second_ids = answers_of(tmp_path / "b.duckdb", frames[::-1])
    assert first.height == 40
    # the storage ids differ (the order they arrived in) ...
    assert sum(first_ids[u] != second_ids[u] for u in first_ids) >= 38
    # ... the answers do not (one machine: the same inputs and seed give the same numbers)
    assert first.to_dicts() == second.to_dicts()
    # and they are not all alike: the comparison covers answers between the thresholds
    assert first["decision"].n_unique() >= 3
    assert first.filter(pl.col("p_breach").is_between(0.05, 0.95)).height >= 1


def test_the_seed_comes_from_the_name() -> None:
    assert path_seed(0, "chat:error_rate") == path_seed(0, "chat:error_rate")
    assert path_seed(0, "chat:error_rate") != path_seed(0, "chat:latency_p95_ms")
    assert path_seed(1, "chat:error_rate") != path_seed(0, "chat:error_rate")
    # the same in another process, whatever its hash salt (Python's hash() is salted)
    code = ("from forecaster.engine.intervention import path_seed; "
            "print(path_seed(0, 'chat:error_rate'))")
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=120, env={**os.environ, "PYTHONHASHSEED": salt}
                           ).stdout.strip() for salt in ("1", "2")}
    assert seen == {str(path_seed(0, "chat:error_rate"))}


def one_step(p_cross: float) -> ForecastDist:
    """One step of N(m, 1) with P(N(m, 1) > 0) = p_cross: a known crossing probability."""
    m = NormalDist().inv_cdf(p_cross)
    return ForecastDist(ds=np.array([np.datetime64(NOW, "us")]), mean=np.array([m]),
                        sd=np.array([1.0]), transform=Transform.IDENTITY,
                        step=timedelta(hours=1))


POLICY = Policy("queue_depth", 0.0, "above", "scale_out", timedelta(hours=6))
OBS = Observation(last_ts=NOW - timedelta(hours=1), last_value=-5.0)


def decide(dist: ForecastDist, seed: int, settings: DecisionSettings):
    return time_to_intervention("svc:queue_depth", dist, POLICY, OBS, NOW, settings,
                                np.random.default_rng(seed))


def test_a_p_breach_near_a_threshold_draws_more_paths_and_decides_more_stably() -> None:
    adaptive = DecisionSettings(n_paths=2000, rounds=8)
    fixed = replace(adaptive, rounds=1)
    near = one_step(0.515)  # 1.4 standard errors of 2,000 paths above p_schedule 0.5
    seeds = range(120)
    at_2000 = [decide(near, s, fixed) for s in seeds]
    more = [decide(near, s, adaptive) for s in seeds]
    assert all(a.paths == 2000 for a in at_2000)
    assert np.mean([a.paths for a in more]) > 4 * 2000  # most needed several rounds
    assert all(a.p_breach == pytest.approx(0.515, abs=0.035) for a in more)
    # the right decision is act_now (p > 0.5, crossing within the lead time)
    wrong_fixed = sum(a.decision != "act_now" for a in at_2000)
    wrong_more = sum(a.decision != "act_now" for a in more)
    assert wrong_more < wrong_fixed and wrong_more <= 2
    # far from every threshold, 2,000 paths settle it
    assert decide(one_step(0.9), 0, adaptive).paths == 2000
    assert decide(one_step(0.3), 0, adaptive).paths == 2000


def test_an_answer_that_stays_close_says_its_error() -> None:
    a = decide(one_step(0.5), 3, DecisionSettings(n_paths=2000, rounds=8))
    assert a.paths == 16000
    se = (0.25 / 16000) ** 0.5
    assert f"p={a.p_breach:.3f} +- {se:.3f} (16,000 paths): too close to 0.50" in a.reason
    clear = decide(one_step(0.9), 3, DecisionSettings())
    assert "+-" not in clear.reason
