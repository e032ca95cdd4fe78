"""The weekly capacity-planning report as data: what it is about, every figure it shows, and the
JSON the HTML is drawn from. Gathering reads a store (local or remote) once; building is pure."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from forecaster.clock import json_default
from forecaster.policies import Policy
from forecaster.report import figures, planning
from forecaster.report.week import Week

# Eight weeks of history in the charts; the capacity figures need the last 30 days of it.
HISTORY = timedelta(weeks=8)
# How far back "how right were we" looks: the estimates scored over the last four weeks.
SCORING_WINDOW = timedelta(weeks=4)
# How far ahead demand is forecast through the capacity (the policies' usual horizon).
HORIZON = timedelta(days=14)
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything a report is made from, read from the store once.

    Attributes:
        week: The week reported on.
        run: The published run the report reads (the latest of the week).
        interventions: Its answers.
        forecasts: Its forecast quantiles (unique_id, ds, q10, q50, q90, ...).
        previous_run: The latest run at least a week older, if any.
        previous: Its answers.
        series: Every series (unique_id, service, metric, unit, kind).
        history: Points of the last ``HISTORY`` before the run's as-of time (unique_id, ds, y).
        anomalies: The anomalies found in the week (any run), one row per series and time.
        events: Events recorded in the week.
        scoring: Self-scoring per series over ``SCORING_WINDOW`` (``Store.reliability``).
        scoring_overall: The same over all series.
        policies: The policies in force.
    """

    week: Week
    run: dict[str, Any]
    interventions: pl.DataFrame
    forecasts: pl.DataFrame
    previous_run: dict[str, Any] | None
    previous: pl.DataFrame | None
    series: pl.DataFrame
    history: pl.DataFrame
    anomalies: pl.DataFrame
    events: pl.DataFrame
    scoring: pl.DataFrame
    scoring_overall: dict[str, Any]
    policies: tuple[Policy, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """The report's figures.

    Attributes:
        week: ``YYYY-Www``.
        start: Monday 00:00 UTC of the week.
        end: The next Monday.
        made_at: When it was made.
        run_id: The run it reads.
        as_of: That run's as-of time.
        risks: Top risks, the ones that must start first first.
        changes: What changed since the run a week before.
        plans: Capacity figures per service.
        factors: The what-if demand multipliers.
        scoring: Self-scoring overall, and per series with scored estimates.
        anomalies: The week's anomalies (precursors first).
        events: The week's events.
        policies: The policies in force (for the method note).
    """

    week: str
    start: datetime
    end: datetime
    made_at: datetime
    run_id: int
    as_of: datetime
    risks: list[figures.Risk]
    changes: figures.Changes
    plans: list[planning.ServicePlan]
    factors: tuple[float, ...]
    scoring: dict[str, Any]
    anomalies: list[dict[str, Any]]
    events: list[dict[str, Any]]
    policies: list[dict[str, Any]] = field(default_factory=list)


def build(inputs: Inputs, made_at: datetime, factors: Sequence[float] = (1.3,),
          seed: int = 0, horizon: timedelta = HORIZON) -> Report:
    """The report's figures from what was gathered.

    Args:
        inputs: See :class:`Inputs`.
        made_at: When the report is made (a parameter: nothing here reads the clock).
        factors: What-if demand multipliers.
        seed: Seed of the capacity bootstrap and demand paths.
        horizon: How far ahead demand is forecast.
    """
    as_of = inputs.run["as_of"]
    plans = [_unless_stale(plan, inputs, as_of)
             for plan in planning.plan_fleet(inputs.history, inputs.series, inputs.policies,
                                             factors, horizon, seed)]
    scored = inputs.scoring.filter(pl.col("scored") > 0) if "scored" in inputs.scoring.columns \
        else inputs.scoring
    return Report(
        week=inputs.week.label, start=inputs.week.start, end=inputs.week.end, made_at=made_at,
        run_id=int(inputs.run["run_id"]), as_of=as_of,
        risks=figures.top_risks(inputs.interventions),
        changes=figures.changes(inputs.interventions, inputs.previous,
                                None if inputs.previous_run is None
                                else int(inputs.previous_run["run_id"]), as_of),
        plans=plans, factors=tuple(factors),
        scoring={"overall": inputs.scoring_overall, "per_series": scored.to_dicts()},
        anomalies=inputs.anomalies.to_dicts(), events=inputs.events.to_dicts(),
        policies=[_policy(p) for p in inputs.policies])


# Demand older than this at the run's as-of time gives no capacity figures (when the run gave
# the demand series no answer of its own to say it is stale).
STALE_DEMAND = timedelta(days=1)


def _unless_stale(plan: planning.ServicePlan, inputs: Inputs,
                  as_of: datetime) -> planning.ServicePlan:
    """The plan, or, when its demand data stopped before the run, the plan without figures: dates
    forecast from where the data stopped would lie before the run and read as due."""
    if plan.load_metric is None:
        return plan
    uid = f"{plan.service}:{plan.load_metric}"
    answer = inputs.interventions.filter(pl.col("unique_id") == uid)
    found = inputs.history.filter(pl.col("unique_id") == uid)["ds"].max()
    last = found if isinstance(found, datetime) else None
    stale = (answer.height > 0 and answer["decision"][0] == "stale") or (
        answer.height == 0 and (last is None or last < as_of - STALE_DEMAND))
    if not stale:
        return plan
    since = "ever" if last is None else f"{last:%a %d %b %H:%M} UTC"
    return dataclasses.replace(
        plan, headroom=None, saturation=None, what_if=(), ds=np.empty(0),
        paths=np.empty((0, 0)),
        problem=f"no demand data since {since} (stale): no capacity figures until it returns")


def _policy(policy: Policy) -> dict[str, Any]:
    return {"metric": policy.metric, "service": policy.service, "limit": policy.limit,
            "direction": policy.direction, "action": policy.action,
            "lead_time_s": policy.lead_time.total_seconds(),
            "horizon_s": policy.horizon.total_seconds()}


def _plain(value: Any) -> Any:
    """JSON-ready: records to dicts, arrays dropped (charts only), NaN/inf to None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.repr and f.name != "draws"}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def to_json(report: Report) -> str:
    """The report's figures as JSON (times ISO 8601 UTC with ``Z``, durations in seconds)."""
    body = _plain(report)
    for plan in body["plans"]:
        plan["capacity"] = next((one["capacity"] for one in plan["limited"]
                                 if one["metric"] == plan["binding"]), None)
    return json.dumps({"format": FORMAT_VERSION, **body}, default=json_default, indent=1,
                      ensure_ascii=False)
