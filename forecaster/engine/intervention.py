"""Time to intervention: from a forecast distribution and a policy, when and how surely a series
crosses its limit, and by when to act. Pure: no database, no clock (``now`` is a parameter).

Method (sample paths). The forecast gives, per future step, a mean and a standard deviation on the
model scale (log for latencies, logit for rates; see :mod:`forecaster.engine.scales`), read from
the model's 80% prediction interval under a Gaussian assumption. ``n_paths`` paths are drawn with a
realistic dependence over time: the smallest step variance is observation noise, independent from
step to step; the rest grows as a random walk (independent increments), the part of the uncertainty
that persists, such as the level and the trend. The noise is drawn from the model's own in-sample
residuals at the same time of day when there are enough of them (a daily spike the model smooths
over, or noisier peak hours, come back in the paths as they were seen; a single extreme among a
week or more of an hour's residuals, an incident, is cut back to the next), else from the Gaussian.
For each path the *first* step past the limit, compared on the metric's own scale, is its
first-passage time; ``eta_p10/p50/p90`` come from the quantiles of those times over all paths (a
path that never crosses counts as beyond the horizon, so a quantile is absent when fewer paths than
it crossed): ``eta_p50`` is the middle of its step, and the 80% interval spans whole steps, from
the start of ``eta_p10``'s step to the end of ``eta_p90``'s, never before now. ``p_breach`` is the
share of paths that cross within the horizon. First passage of a path happens at or before any
later crossing, so the raw ``eta_p50`` is never later than where the median forecast crosses.

Recalibration. When the fleet's scored estimates have shown how far these raw probabilities are
off, a monotone map ``g`` learned from them (:mod:`forecaster.engine.calibration`) is applied:
``p_breach = g(raw share)`` and ``eta_pQ`` is the first-passage quantile at the raw level
``g^-1(Q)``. The order of the quantiles and ``p_breach`` in [0, 1] hold either way; the point
crossing bound holds for the raw distribution (the map may move ``eta_p50`` by what the record
showed). Every answer keeps its raw ``p_breach`` and raw quantiles at ``calibration.LEVELS``, which
later score it.

Monte Carlo error. ``p_breach`` from ``n`` paths has a standard error of about
``sqrt(p (1 - p) / n)`` (0.011 at 2,000 paths and p = 0.5). When the thresholds of the decision
(``p_schedule``, ``p_watch``) lie within 3 standard errors of it, noise rather than the data
would decide, so more paths are drawn from the same random stream, ``n_paths`` at a time, until
they do not or ``rounds`` batches were drawn; an answer that stays that close says its error in
the reason. The random stream of a series is seeded by the settings' seed and a stable hash of
the series' name (:func:`path_seed`), so the same data gives the same answer in any database.

Stale data. A series whose points stopped arriving (:func:`freshness`) is answered ``stale``
(:func:`stale_intervention`): no eta, no ``act_by`` and no ``p_breach``, since extrapolating past
the last point would answer a monitoring problem with a forecast.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist

import numpy as np

from forecaster.config import default
from forecaster.engine.calibration import LEVELS, PassageCalibration
from forecaster.engine.scales import Transform, inverse
from forecaster.policies import Policy, steps_per_day
from forecaster.types import DECISIONS
from forecaster.wording import (
    breached_reason,
    forecast_reason,
    stale_breached_reason,
    stale_reason,
    trend_phrase,
)

MIN_RESIDUALS = 48  # in-sample residuals a series needs for its noise to be drawn from them
MIN_PER_PHASE = 3  # residuals at a time of day needed to draw from that time of day alone
ONE_OFF_AFTER = 7  # days of residuals at a time of day from which a single extreme is cut back
Z80 = 1.2815515655446004  # standard normal quantile of 0.9: the 80% interval is mean +- Z80 sd
CLEAR_SE = 3.0  # a decision is clear when its thresholds are this many standard errors away
RECENT_POINTS = 50  # points whose median spacing is a series' usual sampling interval


@dataclass(frozen=True, slots=True)
class ForecastDist:
    """A forecast on the model scale.

    Attributes:
        ds: Start of each future step (numpy datetime64[us]), ascending, evenly spaced.
        mean: Mean per step, on the model scale.
        sd: Standard deviation per step, on the model scale (>= 0).
        transform: The model scale.
        step: The spacing of ``ds``.
        residuals: The model's in-sample residuals (model scale), if known: the noise of the
            sample paths is drawn from them.
        residual_ds: The time of each residual (for drawing by time of day).
    """

    ds: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    transform: Transform
    step: timedelta
    residuals: np.ndarray | None = None
    residual_ds: np.ndarray | None = None

    def quantile(self, q: float) -> np.ndarray:
        """The ``q`` quantile per step, on the metric's own scale."""
        z = NormalDist().inv_cdf(q)
        return inverse(self.mean + z * self.sd, self.transform)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the recent history says.

    Attributes:
        last_ts: Start of the latest observed bucket.
        last_value: Its value, aggregated as the policy reads it (max for ``above``).
        trend_per_day: Change of the daily mean per day over the last week, metric scale.
        level: Mean over the last day, metric scale.
    """

    last_ts: datetime
    last_value: float
    trend_per_day: float = 0.0
    level: float = 0.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """A precursor anomaly that raises urgency."""

    ts: datetime
    score: float
    detail: str


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    """Thresholds of the decision.

    Attributes:
        p_schedule: ``p_breach`` from which an action is scheduled (or due now).
        p_watch: ``p_breach`` from which a series is watched.
        n_paths: Sample paths drawn per round.
        refresh_every: How often new data and a new answer arrive.
        rounds: At most this many rounds of ``n_paths`` are drawn while a threshold is within
            ``CLEAR_SE`` standard errors of ``p_breach`` (1: never more than ``n_paths``).
        stale_intervals: A series is stale after this many of its usual sampling intervals
            without a point ...
        stale_min: ... and never before this long (a policy's ``stale_after`` wins over both).
    """

    # Defaults from the one table of settings (forecaster.config.SETTINGS).
    p_schedule: float = default("p_schedule")
    p_watch: float = default("p_watch")
    n_paths: int = default("sample_paths")
    refresh_every: timedelta = default("refresh_every")
    rounds: int = default("sample_rounds")
    stale_intervals: int = default("stale_intervals")
    stale_min: timedelta = default("stale_min")


@dataclass(frozen=True, slots=True)
class Intervention:
    """The answer for one series.

    ``p_raw`` and ``passage`` are the sample paths' own ``p_breach`` and first-passage quantiles
    at ``calibration.LEVELS`` (seconds after ``now``, None beyond the horizon), before any
    recalibration; absent when already breached or stale. ``p_breach`` is None when the series
    is ``stale`` (no forecast is made from a feed that stopped). ``paths`` is how many sample
    paths were drawn (0 when none were).
    """

    unique_id: str
    limit: float
    direction: str
    action: str
    lead_time: timedelta
    eta_p10: datetime | None
    eta_p50: datetime | None
    eta_p90: datetime | None
    p_breach: float | None
    act_by: datetime | None
    decision: str
    next_check_at: datetime
    reason: str
    last_value: float
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)
    p_raw: float | None = None
    passage: tuple[float | None, ...] = ()
    paths: int = 0


@dataclass(frozen=True, slots=True)
class Freshness:
    """How fresh a series' data is.

    Attributes:
        last_point: Time of its latest point.
        interval: Its usual sampling interval (median spacing of its last ``RECENT_POINTS``
            points); None with a single point.
        stale_after: How long without a point makes it stale.
        by_policy: Whether ``stale_after`` is the policy's own (else from the settings).
        age: Time from the latest point to ``now``.
    """

    last_point: datetime
    interval: timedelta | None
    stale_after: timedelta
    by_policy: bool
    age: timedelta

    @property
    def stale(self) -> bool:
        """Whether no point arrived for longer than ``stale_after``."""
        return self.age > self.stale_after


def freshness(ts: np.ndarray, policy: Policy, now: datetime,
              settings: DecisionSettings) -> Freshness:
    """Judge a series' freshness against its own sampling interval.

    Args:
        ts: Its point times up to ``now`` (numpy datetime64), ascending, at least one.
        policy: Its policy; ``stale_after``, when set, is the limit.
        now: The current time (UTC, naive).
        settings: ``stale_intervals`` and ``stale_min``, used without a policy limit.

    Returns:
        The latest point, the usual interval, the limit and the age.
    """
    recent = ts[-(RECENT_POINTS + 1):].astype("datetime64[us]")
    last = recent[-1].item()
    interval = (timedelta(microseconds=int(np.median(np.diff(recent).astype(np.int64))))
                if recent.size > 1 else None)
    if policy.stale_after is not None:
        limit, by_policy = policy.stale_after, True
    else:
        limit = max(settings.stale_min, settings.stale_intervals * interval
                    if interval is not None else settings.stale_min)
        by_policy = False
    return Freshness(last_point=last, interval=interval, stale_after=limit,
                     by_policy=by_policy, age=now - last)


def path_seed(seed: int, unique_id: str) -> list[int]:
    """Entropy of a series' sample paths: the settings' ``seed`` and a stable hash of the
    series' name, so the same data answers the same in any database and process (Python's
    ``hash`` is salted per process; a storage id depends on the order series arrived)."""
    digest = hashlib.blake2b(unique_id.encode("utf-8"), digest_size=8).digest()
    return [seed, int.from_bytes(digest, "big")]


def sample_paths(dist: ForecastDist, n_paths: int, rng: np.random.Generator) -> np.ndarray:
    """Paths on the model scale, shape (n_paths, steps): the forecast's mean, a random walk for
    the uncertainty that persists, and noise (from the residuals when there are enough; with the
    Gaussian noise the marginals are exactly those of ``dist``)."""
    var = np.square(np.nan_to_num(dist.sd, nan=0.0))
    noise = float(var.min()) if var.size else 0.0
    # The persistent part may only grow (a random walk); a later step whose variance is smaller
    # than an earlier one's keeps the earlier value, a slight overstatement of uncertainty.
    persistent = np.maximum.accumulate(var - noise)
    increments = np.sqrt(np.diff(persistent, prepend=0.0))
    walk = np.cumsum(rng.standard_normal((n_paths, var.size)) * increments, axis=1)
    if dist.residuals is not None and dist.residuals.size >= MIN_RESIDUALS:
        draws = _residual_draws(dist, n_paths, rng)
    else:
        draws = rng.standard_normal((n_paths, var.size)) * math.sqrt(noise)
    return dist.mean + walk + draws


def _residual_draws(dist: ForecastDist, n_paths: int, rng: np.random.Generator) -> np.ndarray:
    """Noise for each step drawn from the in-sample residuals at the same time of day (all
    residuals, centred, when that hour has fewer than ``MIN_PER_PHASE``)."""
    assert dist.residuals is not None and dist.residual_ds is not None
    step = np.timedelta64(int(dist.step.total_seconds() * 1e6), "us")
    season = steps_per_day(dist.step)
    epoch = np.datetime64(0, "us")
    past = ((dist.residual_ds - epoch) // step) % season
    future = ((dist.ds - epoch) // step) % season
    pooled = dist.residuals - dist.residuals.mean()
    draws = np.empty((n_paths, dist.ds.size))
    for phase in np.unique(future):
        columns = future == phase
        pool = dist.residuals[past == phase]
        if pool.size >= ONE_OFF_AFTER:
            # One day's extreme at this hour is a one-off (an incident), not this hour's noise:
            # it is cut back to the next most extreme; a spike seen on two days stays.
            low, high = np.sort(pool)[[1, -2]]
            pool = np.clip(pool, low, high)
        draws[:, columns] = rng.choice(pool if pool.size >= MIN_PER_PHASE else pooled,
                                       size=(n_paths, int(columns.sum())))
    return draws


def first_passage_steps(paths: np.ndarray, limit: float, direction: str) -> np.ndarray:
    """Per path, the index of the first step past ``limit`` (model scale); inf when none."""
    crossed = paths > limit if direction == "above" else paths < limit
    first = np.argmax(crossed, axis=1).astype(float)
    first[~crossed.any(axis=1)] = np.inf
    return first


def _quantile_times(steps: np.ndarray, levels: Sequence[float | None], dist: ForecastDist,
                    within: Sequence[float]) -> list[datetime | None]:
    """Per level, a time inside the step of the first-passage quantile at that level (``within``
    0 is its start, 0.5 its middle, 1 its end); None for a level that is None or that fewer
    paths than it crossed. One quantile call for all levels."""
    known = [level for level in levels if level is not None]
    ks = iter(np.quantile(steps, known, method="inverted_cdf") if known else ())
    out: list[datetime | None] = []
    for level, w in zip(levels, within, strict=True):
        k = next(ks) if level is not None else np.inf
        out.append(dist.ds[int(k)].astype("datetime64[us]").item() + dist.step * w
                   if np.isfinite(k) else None)
    return out


def is_past(value: float | np.ndarray, policy: Policy) -> bool | np.ndarray:
    """Whether a value (or, elementwise, an array of them) is past the policy's limit."""
    return value > policy.limit if policy.direction == "above" else value < policy.limit


def time_to_intervention(
    unique_id: str,
    dist: ForecastDist,
    policy: Policy,
    observation: Observation,
    now: datetime,
    settings: DecisionSettings,
    rng: np.random.Generator,
    evidence: tuple[Evidence, ...] = (),
    calibration: PassageCalibration | None = None,
) -> Intervention:
    """Compute the answer for one series.

    Args:
        unique_id: ``service:metric``.
        dist: The forecast, starting after the last observed bucket.
        policy: The limit, action and lead time.
        observation: The latest observed value and the recent trend.
        now: The current time (UTC, naive); crossings before it are counted at ``now``.
        settings: Decision thresholds and the number of paths (``n_paths``, and up to
            ``rounds`` times as many while a threshold is within the Monte Carlo error).
        rng: The random source of the paths (seed it for reproducible answers, with
            :func:`path_seed`).
        evidence: Fresh precursor anomalies of the series (see forecaster.engine.precursors). They
            raise urgency without touching the probabilities: an ``ok`` becomes a ``watch``,
            the reason lists them, and among answers of the same decision those with
            precursors rank first, strongest first (``urgency_key``).
        calibration: The map learned from the scored estimates, if any (see the module
            docstring); None answers with the raw distribution.

    Returns:
        The intervention, with ``eta_p10 <= eta_p50 <= eta_p90`` where present, ``p_breach`` in
        [0, 1], and ``act_by = eta_p10 - lead_time``.
    """
    metric = unique_id.partition(":")[2]
    trend = trend_phrase(metric, observation.trend_per_day, observation.level,
                         log_scale=dist.transform is Transform.LOG)
    step = dist.step
    eta10: datetime | None
    eta50: datetime | None
    eta90: datetime | None
    act_by: datetime | None
    p_raw: float | None = None
    passage: tuple[float | None, ...] = ()
    paths = 0

    if is_past(observation.last_value, policy):
        decision = "breached"
        eta10 = eta50 = eta90 = max(observation.last_ts, now - step)
        p_breach, act_by = 1.0, now
        reason = breached_reason(metric, trend, policy, observation.last_value,
                                 observation.last_ts, evidence)
    else:
        steps = _passage_steps(dist, policy, settings.n_paths, rng)
        # More paths, from the same stream, while a threshold is within reach of the noise.
        # (With precursor evidence an `ok` is a `watch` anyway: only p_schedule matters.)
        thresholds = ((settings.p_schedule,) if evidence
                      else (settings.p_schedule, settings.p_watch))
        for _ in range(settings.rounds - 1):
            if _close_threshold(steps, thresholds, calibration) is None:
                break
            steps = np.concatenate([steps, _passage_steps(dist, policy, settings.n_paths, rng)])
        paths = int(steps.size)
        close = _close_threshold(steps, thresholds, calibration)
        p_raw = float(np.isfinite(steps).mean())
        p_breach = calibration.level(p_raw) if calibration is not None else p_raw
        passage = tuple(None if t is None else max(0.0, (t - now).total_seconds())
                        for t in _quantile_times(steps, LEVELS, dist, (0.5,) * len(LEVELS)))
        # A crossing somewhere inside step k: eta_p50 is the step's midpoint, and the interval
        # spans whole steps, from the start of eta_p10's to the end of eta_p90's; never before
        # now.
        levels = [calibration.raw_level(q) if calibration is not None else q
                  for q in (0.1, 0.5, 0.9)]
        etas = [None if t is None else max(t, now)
                for t in _quantile_times(steps, levels, dist, (0.0, 0.5, 1.0))]
        eta10, eta50, eta90 = etas
        act_by = eta10 - policy.lead_time if eta10 is not None else None
        if p_breach >= settings.p_schedule and act_by is not None:
            decision = "act_now" if act_by <= now else "schedule"
        elif p_breach >= settings.p_watch or evidence:
            decision = "watch"
        else:
            decision = "ok"
        reason = forecast_reason(
            metric, trend, policy, now=now,
            horizon=dist.ds[-1].astype("datetime64[us]").item() + step - now, eta_p10=eta10,
            eta_p50=eta50, eta_p90=eta90, p_breach=p_breach, decision=decision, act_by=act_by,
            close=close, paths=paths, evidence=evidence)
    next_check = now + settings.refresh_every
    if decision == "schedule" and act_by is not None:
        next_check = min(next_check, act_by)
    return Intervention(
        unique_id=unique_id, limit=policy.limit, direction=policy.direction,
        action=policy.action, lead_time=policy.lead_time, eta_p10=eta10, eta_p50=eta50,
        eta_p90=eta90, p_breach=p_breach, act_by=act_by, decision=decision,
        next_check_at=next_check, reason=reason, last_value=observation.last_value,
        evidence=evidence, p_raw=p_raw, passage=passage, paths=paths)


def _passage_steps(dist: ForecastDist, policy: Policy, n_paths: int,
                   rng: np.random.Generator) -> np.ndarray:
    """First-passage steps of ``n_paths`` new sample paths (inf for a path that never
    crosses)."""
    paths = sample_paths(dist, n_paths, rng)
    # Compared on the metric's own scale: the model scale clips at the domain's ends, and a
    # limit at an end (a CPU above 100%) can never be passed.
    with np.errstate(over="ignore"):  # a path far out maps to an end of the domain
        on_metric_scale = inverse(paths, dist.transform)
    return first_passage_steps(on_metric_scale, policy.limit, policy.direction)


def _close_threshold(steps: np.ndarray, thresholds: Sequence[float],
                     calibration: PassageCalibration | None) -> tuple[float, float] | None:
    """The first of ``thresholds`` within ``CLEAR_SE`` standard errors of ``p_breach``, with
    that standard error (on the calibrated scale when a map applies); None when all are
    clear."""
    n = steps.size
    p = float(np.isfinite(steps).mean())
    se = math.sqrt(p * (1.0 - p) / n)
    low, high = max(0.0, p - CLEAR_SE * se), min(1.0, p + CLEAR_SE * se)
    if calibration is not None:
        # g is monotone: the band maps to a band; its standard error, read the same way
        low, high = calibration.level(low), calibration.level(high)
        se = (calibration.level(min(1.0, p + se)) - calibration.level(max(0.0, p - se))) / 2
    for threshold in thresholds:
        if low < threshold <= high:
            return threshold, se
    return None


def stale_intervention(unique_id: str, policy: Policy, observation: Observation,
                       fresh: Freshness, now: datetime, settings: DecisionSettings,
                       evidence: tuple[Evidence, ...] = ()) -> Intervention:
    """The answer for a series whose data stopped: ``stale``, with no eta, ``act_by`` or
    ``p_breach`` (a forecast from a feed that stopped would answer a monitoring problem with an
    extrapolation), and a reason that says since when and what the last value was; but
    ``breached`` when that last value was already past the limit (observed, not extrapolated),
    its reason saying the feed stopped too.

    Args:
        unique_id: ``service:metric``.
        policy: Its limit and action.
        observation: The latest observed value.
        fresh: Its freshness (stale).
        now: The current time (UTC, naive).
        settings: ``refresh_every`` sets when to look again.
        evidence: Precursor anomalies of the series, listed in the reason.
    """
    metric = unique_id.partition(":")[2]
    if is_past(observation.last_value, policy):
        # A breach seen at the last point is an observation, not an extrapolation: a service
        # that fell over often stops reporting too, and must not rank below the schedules.
        reason = stale_breached_reason(metric, policy, observation.last_value,
                                       observation.last_ts, fresh, evidence)
        return Intervention(
            unique_id=unique_id, limit=policy.limit, direction=policy.direction,
            action=policy.action, lead_time=policy.lead_time, eta_p10=observation.last_ts,
            eta_p50=observation.last_ts, eta_p90=observation.last_ts, p_breach=1.0,
            act_by=now, decision="breached", next_check_at=now + settings.refresh_every,
            reason=reason, last_value=observation.last_value, evidence=evidence)
    reason = stale_reason(metric, policy, observation.last_value, fresh, evidence)
    return Intervention(
        unique_id=unique_id, limit=policy.limit, direction=policy.direction,
        action=policy.action, lead_time=policy.lead_time, eta_p10=None, eta_p50=None,
        eta_p90=None, p_breach=None, act_by=None, decision="stale",
        next_check_at=now + settings.refresh_every, reason=reason,
        last_value=observation.last_value, evidence=evidence)


def urgency_key(item: Intervention) -> tuple[int, float, datetime, float]:
    """Sort key: most urgent first (decision, then the strongest fresh precursor, then act-by
    time, then probability)."""
    strongest = max((e.score for e in item.evidence), default=0.0)
    return (DECISIONS.index(item.decision), -strongest, item.act_by or datetime.max,
            -(item.p_breach or 0.0))
