"""Which chart shows what: a series from a published run, a service's demand against its
capacity, a load curve. Shared by the report, the API's ``chart.svg`` and the notebooks; the
drawing itself is :mod:`forecaster.report.charts`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from forecaster.kinds import MetricKind, metric_kind
from forecaster.report import charts
from forecaster.wording import metric_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from forecaster.engine.capacity import Capacity
    from forecaster.report.planning import Limited, ServicePlan


# History points per chart: eight weeks at one pair (min, max) per ~2 pixel columns keeps every
# spike visible and a page of forty charts a few megabytes.
REPORT_POINTS = 500


def _interval(low: Any, mid: Any, high: Any) -> charts.Interval[Any] | None:
    if low is None and mid is None and high is None:
        return None
    return charts.Interval(low, mid, high)


def series_figure(uid: str, unit: str, history: pl.DataFrame, forecast: pl.DataFrame,
                  answer: dict[str, Any] | None, now: datetime | None) -> Figure:
    """One series: its history, the run's forecast fan, its limit and the crossing interval.

    Args:
        uid: ``service:metric``.
        unit: The series' unit.
        history: Its points (ds, y).
        forecast: The run's forecast of it (ds, q10, q25, q50, q75, q90); may be empty.
        answer: The run's answer for it (limit_value, direction, eta_p10/50/90), if any.
        now: The run's as-of time.
    """
    metric = uid.split(":", 1)[1]
    band = None
    if not forecast.is_empty():
        band = charts.ForecastBand(forecast["ds"].to_numpy(), forecast["q50"].to_numpy(),
                                   forecast["q10"].to_numpy(), forecast["q90"].to_numpy(),
                                   forecast["q25"].to_numpy(), forecast["q75"].to_numpy())
    crossing = None
    if answer is not None:
        crossing = _interval(answer.get("eta_p10"), answer.get("eta_p50"), answer.get("eta_p90"))
    return charts.fan_chart(
        history["ds"].to_numpy(), history["y"].to_numpy(), title=uid.replace(":", " · "),
        unit=unit, quantity=metric_name(metric), forecast=band,
        limit=None if answer is None else answer["limit_value"],
        direction="above" if answer is None else answer["direction"],
        crossing=crossing, now=now,
        log_scale=metric_kind(metric) is MetricKind.LATENCY, max_points=REPORT_POINTS)


def _capacity_interval(capacity: Capacity | None) -> charts.Interval[float] | None:
    if capacity is None:
        return None
    return _interval(capacity.p10, capacity.p50, capacity.p90)


def _times(factor: float) -> str:
    """`` × 1.3`` for a what-if plan (:func:`forecaster.report.planning.scaled`), else nothing."""
    return "" if factor == 1.0 else f" × {factor:g}"


def demand_figure(plan: ServicePlan, history: pl.DataFrame, now: datetime | None) -> Figure:
    """A service's demand: history, the forecast paths' fan, learned and stated capacity, and the
    saturation interval. For a what-if plan the history is scaled like its paths (as if demand
    had always been that much higher) and the title says by how much."""
    band = None
    if plan.paths.size:
        # The fan at most every ~hour of a two-week horizon: finer steps add bytes, not detail.
        every = max(1, plan.ds.size // (REPORT_POINTS // 1.5))
        ds, paths = plan.ds[::int(every)], plan.paths[:, ::int(every)]
        q = np.quantile(paths, [0.1, 0.25, 0.5, 0.75, 0.9], axis=0)
        band = charts.ForecastBand(ds, q[2], q[0], q[4], q[1], q[3])
    sat = plan.saturation
    saturation = None if sat is None else _interval(sat.eta_p10, sat.eta_p50, sat.eta_p90)
    return charts.demand_chart(
        history["ds"].to_numpy(), history["y"].to_numpy() * plan.factor,
        title=f"{plan.service} · demand ({plan.load_metric or 'load'}){_times(plan.factor)}",
        unit=plan.load_unit or "1/s", forecast=band, capacity=_capacity_interval(plan.capacity),
        stated_capacity=plan.stated_capacity, saturation=saturation, now=now,
        max_points=REPORT_POINTS)


def curve_figure(service: str, load_metric: str, load_unit: str, one: Limited) -> Figure:
    """Load against one metric: the samples, the fitted curve with its band, the limit and the
    effective capacity."""
    curve = None
    if one.curve is not None:
        cap_top = 0.0 if one.capacity is None else max(
            q for q in (one.capacity.p90, one.capacity.p50, 0.0) if q is not None)
        top = max(one.curve.load_max * 1.25, cap_top * 1.05)
        grid = np.linspace(max(one.curve.load_min * 0.9, 0.0), min(top, one.curve.reach), 120)
        low, _, high = one.curve.band(grid)
        curve = charts.LoadCurve(grid, one.curve.latency(grid), low, high)
    return charts.load_curve_chart(
        one.load, one.values, title=f"{service} · load against {metric_name(one.metric)}",
        load_unit=load_unit or "1/s", latency_unit=one.unit or "1",
        load_name=metric_name(load_metric), latency_name=metric_name(one.metric), curve=curve,
        limit=one.limit, capacity=_capacity_interval(one.capacity),
        log_scale=metric_kind(one.metric) is MetricKind.LATENCY)


def headroom_figure(plans: list[ServicePlan], decisions: dict[str, str],
                    horizon_weeks: float) -> Figure:
    """Weeks of runway per service (p10-p50-p90), coloured by the service's decision; of the
    what-if when every plan is scaled by the same factor (the title says which)."""
    rows = []
    for plan in plans:
        room = plan.headroom
        runway = None
        pct = None
        if room is not None:
            low, mid, high = room.runway_weeks
            runway = _interval(low, mid, high)
            pct = None if room.headroom_peak[1] is None else 100.0 * room.headroom_peak[1]
        rows.append(charts.ServiceHeadroom(plan.service, pct, runway,
                                           decisions.get(plan.service)))  # type: ignore[arg-type]
    factors = {plan.factor for plan in plans}
    times = _times(factors.pop()) if len(factors) == 1 else ""
    return charts.headroom_chart(rows, title="Weeks of runway until demand meets capacity"
                                 + (f" (demand{times})" if times else ""),
                                 measure="runway", horizon_weeks=horizon_weeks)
