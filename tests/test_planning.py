"""Capacity plans per service (forecaster.report.planning): which metrics a plan reads, the same
figures from a store of only those, and a plan as if demand were higher (the what-if charts)."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from conftest import ROOT
from matplotlib.figure import Figure

from forecaster.errors import InputError
from forecaster.policies import DEFAULT_POLICIES, Policy, load_policies
from forecaster.report import pictures
from forecaster.report.planning import ServicePlan, plan_service, planned_metrics, scaled

FLEET = ROOT / "data" / "fleet"
POLICIES = load_policies(ROOT / "data" / "policies.toml")
FACTORS = (1.3, 1.5)
HORIZON = timedelta(days=14)
EVERY = ("error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
         "negative_feedback_rate", "quality_score", "requests_per_s", "tokens_per_s",
         "ttft_p95_ms")


def test_a_plan_reads_its_demand_then_each_load_driven_metric_with_an_upper_limit() -> None:
    assert planned_metrics("embed-batch", EVERY, POLICIES) == (
        "requests_per_s", "error_rate", "latency_p95_ms", "latency_p99_ms", "ttft_p95_ms")
    # tokens are the demand without requests; a metric without a policy is not read
    assert planned_metrics("x", ["tokens_per_s", "latency_p50_ms", "latency_p95_ms"],
                           DEFAULT_POLICIES) == ("tokens_per_s", "latency_p95_ms")
    # a service's own policy decides: a lower limit gives no capacity
    own = (Policy("latency_p95_ms", 100.0, "below", "investigate", timedelta(hours=1),
                  service="x"), *DEFAULT_POLICIES)
    assert planned_metrics("x", ["requests_per_s", "latency_p95_ms"], own) == ("requests_per_s",)
    assert planned_metrics("y", ["requests_per_s", "latency_p95_ms"], own) == (
        "requests_per_s", "latency_p95_ms")
    assert planned_metrics("x", ["latency_p95_ms", "error_rate"], DEFAULT_POLICIES) == ()


@pytest.fixture(scope="module")
def embed_history() -> pl.DataFrame:
    """embed-batch's every series of the sample fleet, in long format."""
    return (pl.read_parquet(FLEET / "points.parquet")
            .filter(pl.col("service") == "embed-batch")
            .select((pl.col("service") + ":" + pl.col("metric")).alias("unique_id"),
                    pl.col("ts").alias("ds"), pl.col("value").alias("y")))


def _plan(history: pl.DataFrame) -> ServicePlan:
    units = {"requests_per_s": "1/s", "latency_p95_ms": "ms"}
    return plan_service("embed-batch", history, units, POLICIES, FACTORS, HORIZON, seed=0)


@pytest.fixture(scope="module")
def plan(embed_history: pl.DataFrame) -> ServicePlan:
    return _plan(embed_history)


def test_a_store_of_only_the_planned_metrics_gives_the_same_figures(
        embed_history: pl.DataFrame, plan: ServicePlan) -> None:
    """What the capacity notebook relies on to show the weekly report's figures from a small
    store: the metrics a plan does not read change none of them."""
    wanted = [f"embed-batch:{m}" for m in planned_metrics("embed-batch", EVERY, POLICIES)]
    only = _plan(embed_history.filter(pl.col("unique_id").is_in(wanted)))
    assert plan.binding == only.binding == "latency_p95_ms"
    assert [one.metric for one in plan.limited] == [one.metric for one in only.limited]
    for mine, theirs in zip(only.limited, plan.limited, strict=True):
        assert mine.capacity is not None and theirs.capacity is not None
        np.testing.assert_allclose(mine.capacity.draws, theirs.capacity.draws, rtol=1e-9)
    assert only.headroom is not None and plan.headroom is not None
    assert only.headroom.runway_weeks == pytest.approx(plan.headroom.runway_weeks, rel=1e-9)
    np.testing.assert_allclose(only.paths, plan.paths, rtol=1e-9)
    assert only.saturation == plan.saturation  # times on the paths' 5-minute grid
    assert [w.saturation for w in only.what_if] == [w.saturation for w in plan.what_if]


def test_a_plan_scaled_by_one_of_its_what_ifs_has_that_what_if_s_figures(
        plan: ServicePlan) -> None:
    room, capacity = plan.headroom, plan.capacity
    assert room is not None and capacity is not None and plan.saturation is not None
    slope = math.log1p(room.growth_per_week)
    for what in plan.what_if:
        more = scaled(plan, what.factor)
        assert more.factor == what.factor and more.what_if == ()
        assert more.saturation == what.saturation
        assert more.headroom is not None
        assert more.headroom.headroom_peak == what.headroom_peak
        assert more.headroom.headroom_current == what.headroom_current
        assert more.headroom.peak_load == pytest.approx(what.factor * room.peak_load)
        assert more.capacity == capacity and more.limited == plan.limited
        np.testing.assert_allclose(more.paths, what.factor * plan.paths)
        # the runway of the peak, grown at the same rate, to the same capacity
        for plain, grown in zip(room.runway_weeks, more.headroom.runway_weeks, strict=True):
            assert plain is not None and grown is not None
            assert grown == pytest.approx(max(0.0, plain - math.log(what.factor) / slope),
                                          abs=1e-9)
    same = scaled(plan, 1.0)
    assert same.saturation == plan.saturation
    assert same.headroom is not None
    assert same.headroom.runway_weeks == pytest.approx(room.runway_weeks, rel=1e-9)
    past = scaled(plan, 3.0)  # three times the demand is past the capacity at the peak
    assert past.headroom is not None and past.headroom.runway_weeks == (0.0, 0.0, 0.0)
    assert past.headroom.headroom_peak[1] is not None and past.headroom.headroom_peak[1] < 0


def test_scaling_names_a_bad_factor_and_keeps_missing_figures_missing(
        plan: ServicePlan) -> None:
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InputError, match="what-if factor .* must be a positive finite"):
            scaled(plan, bad)
    with pytest.raises(InputError, match="embed-batch: the plan is already scaled by 1.3"):
        scaled(scaled(plan, 1.3), 1.5)
    bare = ServicePlan("x", None, "", None, timedelta(days=1), (), None, None, None, (),
                       "no demand series")
    assert scaled(bare, 2.0) == ServicePlan("x", None, "", None, timedelta(days=1), (), None,
                                            None, None, (), "no demand series", factor=2.0)


def test_the_charts_of_a_scaled_plan_say_the_factor_and_scale_the_history(
        embed_history: pl.DataFrame, plan: ServicePlan) -> None:
    demand = (embed_history.filter(pl.col("unique_id") == "embed-batch:requests_per_s")
              .select("ds", "y").sort("ds"))
    plain = pictures.demand_figure(plan, demand, None)
    more = pictures.demand_figure(scaled(plan, 1.5), demand, None)
    assert plain.axes[0].get_title(loc="left") == "embed-batch · demand (requests_per_s)"
    assert more.axes[0].get_title(loc="left") == "embed-batch · demand (requests_per_s) × 1.5"

    def highest(fig: Figure) -> float:
        lines = [x for x in fig.axes[0].lines if x.get_gid() == "history"]
        return max(float(np.nanmax(np.asarray(x.get_ydata(), dtype=float))) for x in lines)

    assert highest(more) == pytest.approx(1.5 * highest(plain))
    assert highest(plain) == pytest.approx(float(demand["y"].to_numpy().max()))
    runway = pictures.headroom_figure([plan], {}, 2.0).axes[0].get_title(loc="left")
    assert runway == "Weeks of runway until demand meets capacity"
    assert pictures.headroom_figure([scaled(plan, 1.5)], {}, 2.0).axes[0].get_title(loc="left") == (
        runway + " (demand × 1.5)")
