"""Rolling-origin backtest of time to intervention, against the baselines teams use today.

At each cut-off ``c`` every method answers from the points up to ``c`` only, and the answer is
compared with what happened after ``c``: the first point past the limit within the policy's
horizon, or none. A series is scored at a cut-off only when its data cover the horizon after it
(an unobserved future is not "no crossing") and it is not already past its limit there (the
answer would trivially be "now").

Methods:

- ``forecaster``: exactly what a refresh at ``c`` would have published (:func:`pipeline.compute`
  on the points, events and model choices as they were at ``c``, scanning every series of the
  answered series' services for precursors as a refresh does; a model choice is re-made when
  a day old, as in production), with the recalibration map fitted, as in production, on its own
  earlier estimates of the last ``reliability_window`` whose horizon had passed by ``c`` (all
  series together; see :mod:`forecaster.engine.calibration`; production reads at most one
  estimate per series in 6 hours, which cut-offs 6 hours or more apart already are).
- ``predict_linear_6h``, ``predict_linear_24h``: Prometheus' ``predict_linear``: a least-squares
  line through the raw points of the last 6 h (24 h), extrapolated to the limit.
- ``timeleft_7d``: Zabbix's ``timeleft`` with its default linear fit, over the last 7 days.
- ``seasonal_naive``: the policy-frequency series (bucket max for ``above``, min for ``below``)
  of the last day repeated; the first repeated bucket past the limit.

The baselines give a point estimate: their ``p_breach`` is 1 when it falls within the horizon
and 0 otherwise, and their interval is that point. Their decision follows ours from there:
``act_now`` when ``eta - lead_time`` has passed, ``schedule`` otherwise, ``ok`` when no crossing.

Figures (:func:`score`), per method (a ``stale`` answer, whose data had stopped by the cut-off,
is no forecast: it is counted in ``stale`` and left out of the other figures):

- ``eta_mae_h``: mean absolute error of ``eta_p50`` in hours, over cut-offs followed by a
  crossing (an absent ``eta_p50`` counts as the horizon's end);
- ``coverage``: how often ``[eta_p10, eta_p90]`` held the first-passage time, over all cut-offs,
  with a cut-off without a crossing counted by :func:`forecaster.engine.reliability.interval_credit`
  (the forecast's own chance that its interval holds a time known only to lie beyond the
  horizon). 0.8 for a calibrated forecaster. Only for methods with a distribution; the
  baselines' point answers have none;
- ``coverage_crossed``: share of the crossings inside ``[eta_p10, eta_p90]`` (an absent
  ``eta_p90`` is "beyond the horizon", an absent ``eta_p10`` an empty interval: fewer than 10% of
  the paths crossed, so a crossing was not expected); below 0.8 even for a calibrated forecaster
  whenever some crossings were rightly called unlikely; ``coverage_given_interval``: the same
  over the cut-offs whose answer had an ``eta_p10`` (when the answer gave a window, how often the
  crossing fell in it);
- ``brier``: mean of ``(p_breach - crossed)^2`` over all cut-offs;
- ``false_alarms``: ``schedule``/``act_now`` with no crossing within the horizon (count and share
  of the cut-offs without one); ``missed``: crossings within the horizon whose cut-off said
  neither (count and share);
- ``lead_h``: per crossing, how long before it the first cut-off said ``schedule``/``act_now``
  (median over crossings that were warned of).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from forecaster.config import Settings
from forecaster.engine.calibration import PassageCalibration, Scored, fit_record
from forecaster.engine.intervention import is_past
from forecaster.engine.reliability import interval_credit
from forecaster.pipeline import Inputs, Target, compute, series_spans
from forecaster.policies import Policy, policy_for, steps_per_day
from forecaster.store import Store

WARNINGS = ("schedule", "act_now")
BASELINES = ("predict_linear_6h", "predict_linear_24h", "timeleft_7d", "seasonal_naive")


@dataclass(frozen=True, slots=True)
class Scanned:
    """A series scanned for precursor anomalies, with all its points (policy or not)."""

    series_id: int
    service: str
    metric: str
    kind: str
    ts: np.ndarray  # datetime64[us], sorted
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class Series:
    """One series with a policy and all its points (the backtest cuts them).

    ``service_series`` are every stored series of its service (itself included, policy or
    not): a refresh scans them all for precursors, since a precursor needs the service's other
    metrics. Empty: only the series itself is scanned.
    """

    series_id: int
    service: str
    metric: str
    kind: str
    policy: Policy
    ts: np.ndarray  # datetime64[us], sorted
    values: np.ndarray
    service_series: tuple[Scanned, ...] = ()

    @property
    def unique_id(self) -> str:
        """``service:metric``."""
        return f"{self.service}:{self.metric}"


@dataclass(frozen=True, slots=True)
class Estimate:
    """One method's answer for one series at one cut-off."""

    method: str
    unique_id: str
    cutoff: datetime
    eta_p10: datetime | None
    eta_p50: datetime | None
    eta_p90: datetime | None
    p_breach: float | None  # None when stale
    decision: str
    p_raw: float | None = None
    passage: tuple[float | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened after a cut-off: the first point past the limit within the horizon."""

    unique_id: str
    cutoff: datetime
    horizon_end: datetime
    crossing: datetime | None
    past_at_cutoff: bool


@dataclass(slots=True)
class Result:
    """Every estimate and outcome of a backtest."""

    estimates: list[Estimate] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


def outcome(series: Series, cutoff: datetime) -> Outcome:
    """The first point past the limit in ``(cutoff, cutoff + horizon]``."""
    c64 = np.datetime64(cutoff, "us")
    end = cutoff + series.policy.horizon
    before = series.ts <= c64
    last = series.values[before][-1:] if before.any() else np.array([])
    window = (series.ts > c64) & (series.ts <= np.datetime64(end, "us"))
    hits = np.flatnonzero(window & is_past(series.values, series.policy))
    crossing = series.ts[hits[0]].astype("datetime64[us]").item() if hits.size else None
    return Outcome(series.unique_id, cutoff, end, crossing,
                   bool(last.size and is_past(last[0], series.policy)))


def _decide(eta: datetime | None, cutoff: datetime, policy: Policy) -> str:
    if eta is None or eta > cutoff + policy.horizon:
        return "ok"
    return "act_now" if eta - policy.lead_time <= cutoff else "schedule"


def _point(method: str, series: Series, cutoff: datetime, eta: datetime | None) -> Estimate:
    if eta is not None and eta > cutoff + series.policy.horizon:
        eta = None
    return Estimate(method, series.unique_id, cutoff, eta, eta, eta,
                    1.0 if eta is not None else 0.0, _decide(eta, cutoff, series.policy))


def linear_eta(ts: np.ndarray, values: np.ndarray, cutoff: datetime, window: timedelta,
               policy: Policy) -> datetime | None:
    """When a least-squares line through the points of ``(cutoff - window, cutoff]`` reaches
    the limit (None when it moves away from it or there are fewer than two points)."""
    c64 = np.datetime64(cutoff, "us")
    keep = (ts > np.datetime64(cutoff - window, "us")) & (ts <= c64)
    if keep.sum() < 2:
        return None
    x = (ts[keep] - c64).astype("timedelta64[us]").astype(np.float64) / 1e6
    y = values[keep].astype(float)
    if np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    gap = policy.limit - intercept  # the line's value at the cut-off is the intercept
    toward = slope > 0 if policy.direction == "above" else slope < 0
    if gap == 0:
        return cutoff
    if not toward or (gap > 0) != (slope > 0):
        return None
    return cutoff + timedelta(seconds=float(gap / slope))


def seasonal_naive_eta(ts: np.ndarray, values: np.ndarray, cutoff: datetime,
                       policy: Policy) -> datetime | None:
    """The last day's policy-frequency buckets repeated; the first bucket past the limit."""
    step = policy.freq
    season = steps_per_day(step)
    c64 = np.datetime64(cutoff, "us")
    step64 = np.timedelta64(int(step.total_seconds() * 1e6), "us")
    keep = (ts <= c64) & (ts > c64 - season * step64)
    if not keep.any():
        return None
    idx = ((ts[keep] - (c64 - season * step64)) // step64).astype(int)
    idx = np.clip(idx, 0, season - 1)
    reduce = np.fmax if policy.direction == "above" else np.fmin
    day = np.full(season, np.nan)
    reduce.at(day, idx, values[keep].astype(float))
    if np.isnan(day).all():
        return None
    day = np.where(np.isnan(day), np.nanmean(day), day)
    steps = int(policy.horizon / step)
    path = np.resize(day, steps)
    hits = np.flatnonzero(is_past(path, policy))
    if not hits.size:
        return None
    return cutoff + step * (int(hits[0]) + 0.5)


def baselines(series: Series, cutoff: datetime) -> list[Estimate]:
    """Every baseline's answer at ``cutoff`` (from the points up to it only)."""
    p = series.policy
    return [
        _point("predict_linear_6h", series, cutoff,
               linear_eta(series.ts, series.values, cutoff, timedelta(hours=6), p)),
        _point("predict_linear_24h", series, cutoff,
               linear_eta(series.ts, series.values, cutoff, timedelta(hours=24), p)),
        _point("timeleft_7d", series, cutoff,
               linear_eta(series.ts, series.values, cutoff, timedelta(days=7), p)),
        _point("seasonal_naive", series, cutoff,
               seasonal_naive_eta(series.ts, series.values, cutoff, p)),
    ]


def ours(series: Sequence[Series], cutoff: datetime, settings: Settings,
         events: dict[str, list[datetime]],
         choices: dict[int, tuple[str, datetime]],
         calibration: PassageCalibration | None = None) -> list[Estimate]:
    """What a refresh at ``cutoff`` would have published, from the points up to it.

    ``choices`` carries model choices from one cut-off to the next and is updated in place;
    a choice older than ``selection_max_age`` is re-made from the data up to the cut-off.
    ``calibration`` is the map learned from the estimates scored by then.
    """
    c64 = np.datetime64(cutoff, "us")
    # What a refresh scans: the answered series and every series of their services, once each,
    # in series order (compute reads its points sorted by series, as the store returns them)
    scanned: dict[int, Scanned] = {}
    for s in series:
        scanned[s.series_id] = Scanned(s.series_id, s.service, s.metric, s.kind, s.ts, s.values)
    for s in series:
        for other in s.service_series:
            scanned.setdefault(other.series_id, other)
    parts = [(x, x.ts <= c64) for _, x in sorted(scanned.items())]
    inputs = Inputs(
        targets=[Target(s.series_id, s.unique_id, s.service, s.metric, s.kind, s.policy)
                 for s in series],
        scanned=[(x.series_id, x.service, x.metric, x.kind) for x, _ in parts],
        sids=np.concatenate([np.full(int(k.sum()), x.series_id, dtype=np.int32)
                             for x, k in parts]),
        ts=np.concatenate([x.ts[k] for x, k in parts]),
        values=np.concatenate([x.values[k] for x, k in parts]),
        events={svc: max(t for t in times if t <= cutoff)
                for svc, times in events.items() if any(t <= cutoff for t in times)},
        choices={sid: c for sid, c in choices.items()
                 if cutoff - c[1] < settings.selection_max_age},
        calibration=calibration,
    )
    computed = compute(inputs, settings, cutoff, run_id=0, reselect=False)
    new = computed.frames["choices"]
    for row in new.iter_rows(named=True):
        choices[int(row["series_id"])] = (row["model"], row["chosen_at"])
    out = []
    for item in computed.result.interventions:
        out.append(Estimate("forecaster", item.unique_id, cutoff, item.eta_p10, item.eta_p50,
                            item.eta_p90, item.p_breach, item.decision, item.p_raw,
                            item.passage))
    return out


def series_of(store: Store, policies: tuple[Policy, ...]) -> tuple[list[Series],
                                                                    dict[str, list[datetime]]]:
    """Every stored series with a policy, with all its points and every series of its service
    (scanned for precursors as a refresh scans them), and the events by service."""
    series = []
    meta = store.series()
    points = store.points_up_to(meta["series_id"].to_list(), datetime(2200, 1, 1))  # all
    sids = points.column("series_id").to_numpy()
    ts = points.column("ts").to_numpy().astype("datetime64[us]")
    values = points.column("value").to_numpy()
    spans = series_spans(sids)
    rows = [row for row in meta.iter_rows(named=True) if row["series_id"] in spans]
    by_service: dict[str, list[Scanned]] = {}
    for row in rows:
        mine = slice(*spans[row["series_id"]])
        by_service.setdefault(row["service"], []).append(Scanned(
            row["series_id"], row["service"], row["metric"], row["kind"], ts[mine],
            values[mine]))
    for row in rows:
        policy = policy_for(policies, row["service"], row["metric"])
        if policy is not None:
            mine = slice(*spans[row["series_id"]])
            series.append(Series(row["series_id"], row["service"], row["metric"], row["kind"],
                                 policy, ts[mine], values[mine],
                                 tuple(by_service[row["service"]])))
    events: dict[str, list[datetime]] = {}
    for row in store.events().iter_rows(named=True):
        events.setdefault(row["service"], []).append(row["ts"])
    return series, events


def run(series: Sequence[Series], cutoffs: Iterable[datetime], settings: Settings,
        events: dict[str, list[datetime]] | None = None,
        methods: Sequence[str] = ("forecaster", *BASELINES),
        only: Mapping[int, set[datetime]] | None = None) -> Result:
    """Every method at every cut-off, and what happened after each.

    Args:
        series: The series, each with its policy and all its points.
        cutoffs: The cut-off times, in order.
        settings: The engine's settings (seed, paths, selection age, recalibration).
        events: Event times per service (training starts after the latest before a cut-off).
        methods: Which methods to run.
        only: Per series id, the cut-offs at which it is scored (default: all).
    """
    result = Result()
    choices: dict[int, tuple[str, datetime]] = {}
    made: list[tuple[Estimate, Outcome, Series]] = []  # ours, for the recalibration record
    by_uid = {s.unique_id: s for s in series}
    for cutoff in cutoffs:
        mine = [s for s in series if only is None or cutoff in only.get(s.series_id, ())]
        outcomes = {s.unique_id: outcome(s, cutoff) for s in mine}
        # scored only where the horizon after the cut-off has been observed, and the series is
        # not already past its limit
        live = [s for s in mine if not outcomes[s.unique_id].past_at_cutoff
                and (s.ts <= np.datetime64(cutoff, "us")).any()
                and s.ts[-1] >= np.datetime64(cutoff + s.policy.horizon - s.policy.freq, "us")]
        result.outcomes.extend(outcomes[s.unique_id] for s in live)
        if "forecaster" in methods and live:
            # as a refresh would: the estimates of the last reliability_window whose horizon
            # has passed
            since = cutoff - settings.reliability_window
            calibration = fit_record(
                [_scored(e, o, s) for e, o, s in made
                 if o.horizon_end <= cutoff and e.cutoff >= since],
                settings.calibration_prior, settings.calibration_min_weight)
            answers = ours(live, cutoff, settings, events or {}, choices, calibration)
            result.estimates.extend(answers)
            made.extend((e, outcomes[e.unique_id], by_uid[e.unique_id]) for e in answers
                        if e.p_raw is not None)
        for s in live:
            result.estimates.extend(e for e in baselines(s, cutoff) if e.method in methods)
    return result


def _scored(e: Estimate, o: Outcome, s: Series) -> Scored:
    crossing_s = (o.crossing - e.cutoff).total_seconds() if o.crossing is not None else None
    return Scored(s.series_id, e.cutoff, e.passage, float(e.p_raw or 0.0),
                  s.policy.horizon.total_seconds(), crossing_s)


def score(result: Result) -> dict[str, dict[str, float | int | None]]:
    """The figures of each method (see the module docstring)."""
    truth = {(o.unique_id, o.cutoff): o for o in result.outcomes}
    methods = sorted({e.method for e in result.estimates})
    figures: dict[str, dict[str, float | int | None]] = {}
    for method in methods:
        answered = [e for e in result.estimates if e.method == method]
        mine = [e for e in answered if e.p_breach is not None]  # a stale answer is no forecast
        errors, covered, covered_given, brier, credit = [], [], [], [], []
        false_alarms = quiet = missed = crossings = 0
        first_warning: dict[tuple[str, datetime], datetime] = {}
        crossing_events: set[tuple[str, datetime]] = set()
        for e in sorted(mine, key=lambda e: e.cutoff):
            assert e.p_breach is not None
            o = truth[(e.unique_id, e.cutoff)]
            crossed = o.crossing is not None
            brier.append((e.p_breach - float(crossed)) ** 2)
            warned = e.decision in WARNINGS
            if not crossed:
                credit.append(interval_credit(e.p_breach, False, False))
                quiet += 1
                false_alarms += warned
                continue
            assert o.crossing is not None
            crossings += 1
            crossing_events.add((e.unique_id, o.crossing))
            missed += not warned
            if warned:
                first_warning.setdefault((e.unique_id, o.crossing), e.cutoff)
            estimate = e.eta_p50 or o.horizon_end
            errors.append(abs((estimate - o.crossing).total_seconds()) / 3600.0)
            low, high = e.eta_p10, e.eta_p90
            inside = low is not None and low <= o.crossing and (high is None
                                                                 or o.crossing <= high)
            covered.append(inside)
            credit.append(interval_credit(e.p_breach, True, inside))
            if low is not None:
                covered_given.append(inside)
        leads = [(x - first_warning[(uid, x)]).total_seconds() / 3600.0
                 for uid, x in crossing_events if (uid, x) in first_warning]
        figures[method] = {
            "cutoffs": len(mine), "stale": len(answered) - len(mine),
            "with_crossing": crossings,
            "eta_mae_h": _mean(errors),
            "coverage": None if method in BASELINES else _mean(credit),
            "coverage_crossed": _mean([float(c) for c in covered]),
            "coverage_given_interval": _mean([float(c) for c in covered_given]),
            "with_interval": len(covered_given),
            "brier": _mean(brier),
            "false_alarms": false_alarms,
            "false_alarm_rate": false_alarms / quiet if quiet else None,
            "missed": missed, "miss_rate": missed / crossings if crossings else None,
            "crossing_events": len(crossing_events),
            "warned_events": len(leads),
            "lead_h_median": float(np.median(leads)) if leads else None,
        }
    return figures


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def round_figures(figures: dict[str, dict[str, float | int | None]],
                  digits: int = 3) -> dict[str, dict[str, float | int | None]]:
    """The same figures rounded for printing."""
    return {m: {k: (round(v, digits) if isinstance(v, float) and math.isfinite(v) else v)
                for k, v in f.items()} for m, f in figures.items()}


__all__ = ["BASELINES", "Estimate", "Outcome", "Result", "Scanned", "Series", "baselines",
           "linear_eta", "ours", "outcome", "round_figures", "run", "score",
           "seasonal_naive_eta", "series_of"]
