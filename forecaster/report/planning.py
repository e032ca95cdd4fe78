"""Capacity planning per service: the load-to-latency curves learned from the service's own
history, the effective capacity they give, demand forecast through it (saturation dates and
act-by) and what-ifs. Frames in, records out; the maths is :mod:`forecaster.engine.capacity`.

For each service with a demand series (``requests_per_s``, else ``tokens_per_s``), every metric
with an ``above`` policy that load drives (latency percentiles, time to first token, the error
rate) gets a curve and the load at which it would cross its limit. The lowest of those medians is
the service's *effective capacity* (the binding limit); a policy on the demand series itself is the
*stated* capacity, shown beside it, never mixed in. Demand sample paths (trend, weekly profile,
resampled days: :func:`forecaster.engine.capacity.demand_paths`) through the capacity draws give
the saturation dates; ``act_by`` is their p10 minus the demand policy's lead time (one day without
one), the same rule as every other answer. :func:`scaled` gives a plan as if demand were higher,
for the same charts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import polars as pl

from forecaster.engine import capacity as cap
from forecaster.engine.intervention import path_seed
from forecaster.errors import InputError
from forecaster.kinds import MetricKind, metric_kind
from forecaster.policies import Policy, policy_for

LOAD_METRICS = ("requests_per_s", "tokens_per_s")
STEP = timedelta(hours=1)
DEFAULT_LEAD = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Limited:
    """One metric of a service that load drives, with its policy, curve and capacity.

    Attributes:
        metric: The metric (``latency_p95_ms``).
        unit: Its unit.
        limit: Its policy's limit.
        capacity: The load at which the curve reaches the limit; None when no curve could be fitted.
        problem: Why there is no capacity (too little data), else None.
        curve: The fitted curve (for the chart).
        load: Load samples the curve was fitted on (for the chart).
        values: The metric's matching samples.
    """

    metric: str
    unit: str
    limit: float
    capacity: cap.Capacity | None
    problem: str | None
    curve: cap.LoadCurve | None = field(default=None, compare=False, repr=False)
    load: np.ndarray = field(default_factory=lambda: np.empty(0), compare=False, repr=False)
    values: np.ndarray = field(default_factory=lambda: np.empty(0), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """A service's capacity figures.

    Attributes:
        service: The service.
        load_metric: The demand series used (``requests_per_s`` or ``tokens_per_s``).
        load_unit: Its unit.
        stated_capacity: The limit of a policy on the demand series, if any.
        lead_time: How long scaling out takes (the demand policy's lead time; a day without one).
        limited: Every load-driven metric with a limit, and what it allows.
        binding: The metric whose capacity is lowest (p50), None when none gives a number.
        headroom: Current and peak load, headroom, growth, runway (None without a capacity).
        saturation: When demand exceeds the binding capacity (None without one).
        what_if: Demand scaled by each factor.
        problem: Why the service has no figures at all (no demand series), else None.
        ds: Step starts of the demand paths (for the chart).
        paths: The demand paths (for the chart).
        factor: The demand multiplier the figures are for: 1, or a :func:`scaled` what-if (for
            the charts; not among the report's figures, which are always the plain ones).
    """

    service: str
    load_metric: str | None
    load_unit: str
    stated_capacity: float | None
    lead_time: timedelta
    limited: tuple[Limited, ...]
    binding: str | None
    headroom: cap.Headroom | None
    saturation: cap.Saturation | None
    what_if: tuple[cap.WhatIf, ...]
    problem: str | None
    ds: np.ndarray = field(default_factory=lambda: np.empty(0), compare=False, repr=False)
    paths: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), compare=False,
                              repr=False)
    factor: float = field(default=1.0, repr=False)

    @property
    def capacity(self) -> cap.Capacity | None:
        """The binding (lowest) learned capacity."""
        for one in self.limited:
            if one.metric == self.binding:
                return one.capacity
        return None


def samples(history: pl.DataFrame, uid: str) -> pl.DataFrame:
    """One series' samples (ds, y) of a long history frame, sorted by time."""
    return history.filter(pl.col("unique_id") == uid).select("ds", "y").sort("ds")


def _step(ds: np.ndarray) -> timedelta:
    """The series' usual sampling interval (the median spacing), whole seconds, at least 1 s."""
    if ds.size < 2:
        return STEP
    spacing = np.median(np.diff(ds)).astype("timedelta64[s]").astype(int)
    return timedelta(seconds=max(int(spacing), 1))


def _is_load_driven(metric: str) -> bool:
    return metric_kind(metric) in (MetricKind.LATENCY, MetricKind.RATIO) and (
        metric not in ("negative_feedback_rate",))


def _limits(service: str, metrics: set[str], load_metric: str, policies: Sequence[Policy]
            ) -> list[tuple[str, Policy]]:
    """Each load-driven metric (sorted) with the ``above`` policy that gives it a capacity."""
    out = []
    for metric in sorted(metrics - {load_metric}):
        policy = policy_for(tuple(policies), service, metric)
        if _is_load_driven(metric) and policy is not None and policy.direction == "above":
            out.append((metric, policy))
    return out


def planned_metrics(service: str, metrics: Iterable[str], policies: Sequence[Policy]
                    ) -> tuple[str, ...]:
    """The metrics of ``service`` that :func:`plan_service` reads, so a store of only these
    gives the same figures as one of every metric: the demand series first (``requests_per_s``,
    else ``tokens_per_s``), then each load-driven metric with an ``above`` policy, sorted.

    Args:
        service: The service.
        metrics: The metrics it has.
        policies: The policies in force.

    Returns:
        The metrics; empty when the service has no demand series (it gets no figures).
    """
    present = set(metrics)
    load_metric = next((m for m in LOAD_METRICS if m in present), None)
    if load_metric is None:
        return ()
    return (load_metric, *(metric for metric, _ in _limits(service, present, load_metric,
                                                             policies)))


def plan_service(service: str, history: pl.DataFrame, units: dict[str, str],
                 policies: Sequence[Policy], factors: Sequence[float], horizon: timedelta,
                 seed: int, n_paths: int = 500) -> ServicePlan:
    """Capacity figures of one service from its history.

    Args:
        service: The service.
        history: Its points in long format (unique_id, ds, y), at least the last 30 days.
        units: Unit per metric.
        policies: The policies in force.
        factors: What-if demand multipliers (1 is always added first).
        horizon: How far ahead demand is forecast.
        seed: Seed of the bootstrap and the demand paths (with the service's name).
        n_paths: Demand paths drawn.
    """
    metrics = {uid.split(":", 1)[1] for uid in history["unique_id"].unique().to_list()}
    load_metric = next((m for m in LOAD_METRICS if m in metrics), None)
    if load_metric is None:
        return ServicePlan(service, None, "", None, DEFAULT_LEAD, (), None, None, None, (),
                           problem=f"no demand series ({' or '.join(LOAD_METRICS)})")
    load_policy = policy_for(tuple(policies), service, load_metric)
    stated = load_policy.limit if load_policy and load_policy.direction == "above" else None
    lead = load_policy.lead_time if load_policy else DEFAULT_LEAD
    load = samples(history, f"{service}:{load_metric}")
    rng = np.random.default_rng(path_seed(seed, f"{service}:capacity"))
    limited: list[Limited] = []
    for metric, policy in _limits(service, metrics, load_metric, policies):
        # nearest sample within half a step: separate exporters rarely share exact timestamps
        joined = load.join_asof(samples(history, f"{service}:{metric}").rename({"y": "y_m"}),
                                on="ds", strategy="nearest",
                                tolerance=timedelta(seconds=_step(
                                    load["ds"].to_numpy().astype("datetime64[us]"))
                                    .total_seconds() / 2)).drop_nulls("y_m")
        ts = joined["ds"].to_numpy().astype("datetime64[us]")
        x, y = joined["y"].to_numpy(), joined["y_m"].to_numpy()
        try:
            curve = cap.fit_curve(ts, x, y, rng)
            capacity = cap.effective_capacity(curve, policy.limit)
        except InputError as exc:
            limited.append(Limited(metric, units.get(metric, ""), policy.limit, None, str(exc)))
            continue
        limited.append(Limited(metric, units.get(metric, ""), policy.limit, capacity, None,
                               curve, x, y))
    medians = {one.metric: one.capacity.p50 for one in limited
               if one.capacity is not None and one.capacity.p50 is not None}
    binding = min(medians, key=lambda metric: medians[metric]) if medians else None
    ts = load["ds"].to_numpy().astype("datetime64[us]")
    values = load["y"].to_numpy()
    chosen = next((one.capacity for one in limited if one.metric == binding), None)
    step = _step(ts)
    try:
        ds, paths = cap.demand_paths(ts, values, step, int(horizon / step), n_paths, rng)
    except InputError as exc:
        return ServicePlan(service, load_metric, units.get(load_metric, ""), stated, lead,
                           tuple(limited), binding, None, None, (), problem=str(exc))
    if chosen is None:
        return ServicePlan(service, load_metric, units.get(load_metric, ""), stated, lead,
                           tuple(limited), None, None, None, (), None, ds, paths)
    room = cap.headroom(ts, values, chosen)
    sat = cap.saturation(paths, ds, step, chosen, lead)
    scaled = cap.what_if(paths, ds, step, chosen, room.current_load, room.peak_load,
                         [1.0, *[f for f in factors if f != 1.0]], lead)
    return ServicePlan(service, load_metric, units.get(load_metric, ""), stated, lead,
                       tuple(limited), binding, room, sat, scaled, None, ds, paths)


def plan_fleet(history: pl.DataFrame, series: pl.DataFrame, policies: Sequence[Policy],
               factors: Sequence[float], horizon: timedelta, seed: int) -> list[ServicePlan]:
    """:func:`plan_service` for every service of ``series`` (service, metric, unit)."""
    plans = []
    for (service,), block in series.group_by(["service"], maintain_order=True):
        units = dict(zip(block["metric"].to_list(), block["unit"].fill_null("").to_list(),
                         strict=True))
        own = history.filter(pl.col("unique_id").str.starts_with(f"{service}:"))
        plans.append(plan_service(str(service), own, units, policies, factors, horizon, seed))
    return sorted(plans, key=lambda p: p.service)


def _runway(capacity: float | None, peak: float, growth_per_week: float) -> float | None:
    """Weeks until ``peak``, growing at ``growth_per_week``, reaches ``capacity``: 0 when already
    past, None without growth or capacity (the rule of :func:`forecaster.engine.capacity.headroom`).
    """
    slope = math.log1p(growth_per_week)
    if capacity is None or slope <= 0:
        return None
    if capacity <= peak:
        return 0.0
    return math.log(capacity / peak) / slope


def scaled(plan: ServicePlan, factor: float) -> ServicePlan:
    """The plan as if demand were ``factor`` times higher, for the same tables and charts.

    The demand paths, the current and peak load, the headroom, the runway and the saturation
    are those of the scaled demand (:func:`forecaster.engine.capacity.what_if`: at a factor of
    the plan's what-ifs they are that what-if's); the capacities, the growth rate and the lead
    time stay. A plan without capacity figures keeps None for them. The scaled plan has no
    what-ifs of its own.

    Args:
        plan: A plain plan (factor 1) from :func:`plan_service`.
        factor: The demand multiplier, a positive number (1.3: 30% more demand).

    Raises:
        InputError: ``factor`` is not a positive finite number, or ``plan`` is already scaled.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise InputError(f"what-if factor {factor!r} must be a positive finite number, for "
                         "example 1.3 for 30% more demand")
    if plan.factor != 1.0:
        raise InputError(f"{plan.service}: the plan is already scaled by {plan.factor:g}; scale "
                         "the plain plan (factor 1)")
    room, capacity = plan.headroom, plan.capacity
    paths = plan.paths * factor
    if room is None or capacity is None or plan.saturation is None:
        return dataclasses.replace(plan, what_if=(), paths=paths, factor=float(factor))
    [what] = cap.what_if(plan.paths, plan.ds, _step(plan.ds), capacity, room.current_load,
                         room.peak_load, [factor], plan.lead_time,
                         plan.saturation.act_quantile)
    peak = factor * room.peak_load
    runway = tuple(_runway(c, peak, room.growth_per_week)
                   for c in (capacity.p10, capacity.p50, capacity.p90))
    grown = dataclasses.replace(
        room, current_load=factor * room.current_load, peak_load=peak,
        headroom_current=what.headroom_current, headroom_peak=what.headroom_peak,
        runway_weeks=(runway[0], runway[1], runway[2]))
    return dataclasses.replace(plan, headroom=grown, saturation=what.saturation, what_if=(),
                               paths=paths, factor=float(factor))
