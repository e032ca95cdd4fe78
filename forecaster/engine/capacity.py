"""Capacity from data: how much more load a service can take, and when it runs out. Pure: arrays
in, figures out; no database, no clock (the latest timestamp of the data is "now"), no settings
file (every parameter is an argument).

Load -> latency curve (:func:`fit_curve`). From one service's own recent history, aligned samples
of a load (requests/s, tokens/s) and a metric that rises with it (a latency percentile, the error
rate), over the last ``window``:

1. Samples are reduced to per-``bucket`` medians (hourly by default) of load and of the log of the
   metric. A monotone map sends the median of the loads to the median of their images, so the
   pairs of medians lie on the curve up to the metric's own noise, while single spikes (an
   incident, a slow request burst) carry no weight and the fit works on a few hundred points
   instead of thousands.
2. A queueing-shaped family is fitted on the log scale by robust nonlinear least squares (soft-L1
   loss scaled to the noise; a grid of starts, the best polished by
   ``scipy.optimize.least_squares``):

       log y = log base + drift * t + log(1 + a * u / (1 - u)),   u = x / c,

   with ``t`` in days before the end of the window (``base`` is the level *now*). ``u / (1 - u)``
   is the M/M/1 queueing delay: ``a`` is the share of the unloaded latency that queues, ``c`` the
   load at which the queue would grow without bound (kept above the highest load seen). ``a`` and
   ``c`` positive make the curve non-decreasing in load. The ``drift`` term (log-linear in time)
   takes up a slow creep of latency apart from load, so the curve is the one of the end of the
   window; a step (a deploy) is only partly taken up: ``window`` bounds how long an old level
   weighs. ``a`` is at least ``min_queue_share``: with it, a curve that stays flat
   over the loads seen cannot hide a wall just past the highest one (flat data then mean a
   capacity far away, not one at the edge of the data).
3. Uncertainty by a moving-block bootstrap over time: blocks of ``block`` consecutive buckets
   (latency is autocorrelated; resampling single points would understate the spread) are drawn
   with the seeded generator passed in, and the curve is refitted on each resample, all
   resamples at once (a vectorised Levenberg-Marquardt on the same robust loss, started at the
   fit on all the data).
4. Fallback: when the load barely varied (nothing to fit a shape to) or the queueing family fits
   clearly worse than a monotone curve with no shape at all (isotonic regression by
   pool-adjacent-violators, :func:`isotonic`), the isotonic curve is used, bootstrapped the same
   way, and it speaks only for the loads that were seen (it never extrapolates).

Effective capacity (:func:`effective_capacity`): the load at which a curve reaches a limit, per
bootstrap draw (closed form for the queueing curve: ``x = c * r / (a + r)`` with
``r = limit / base - 1``), summarised as p10/p50/p90. A draw whose crossing lies beyond the curve's
reach (``max_extrapolation`` times the highest load seen for the queueing curve, the highest load
seen for the isotonic one) is infinite: a quantile that falls on such draws is None, and the
result says ``beyond_range`` (for p50) instead of inventing a number.

The capacity is today's: the drift is not projected forward (a creep that will cross a limit on
its own is the latency forecast's to tell, :mod:`forecaster.engine.intervention`).

Saturation (:func:`saturation`): demand sample paths through the capacity draws. For every pair of
(path, capacity draw) the first step whose demand exceeds that capacity is its first-passage time
(from the running maximum of the path: the first passage is at or before any later crossing by
construction); the quantiles of all pairs give the saturation dates, the share of pairs that cross
within the horizon ``p_saturation``, and ``act_by`` is the saturation quantile ``act_quantile``
(p10 by default) minus the lead time. :func:`what_if` scales demand by factors (factor 1 is the
plain answer exactly); :func:`headroom` gives the per-service figures of the weekly report;
:func:`demand_paths` is a plain demand forecast (log-linear trend, weekly profile, resampled days
of residuals) for callers that have none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from scipy.optimize import least_squares

from forecaster.engine.intervention import ForecastDist, sample_paths
from forecaster.engine.scales import EPS, inverse
from forecaster.errors import ConfigError, InputError

QUANTILES = (0.1, 0.5, 0.9)
MAD_TO_SD = 1.4826  # a normal's standard deviation per median absolute deviation
MAX_DRIFT = 0.5  # bound of the level's drift, per day on the log scale (65 % a day)
MAX_QUEUE_SHARE = 50.0  # upper bound of ``a``
DAY = np.timedelta64(86_400_000_000, "us")
Method = Literal["queueing", "isotonic"]
Status = Literal["within", "extrapolated", "beyond_range", "over_limit"]


@dataclass(frozen=True, slots=True)
class CurveSettings:
    """How a load -> latency curve is fitted.

    Attributes:
        window: History used, counted back from the latest sample (older data describe an older
            service: other deploys, other hardware).
        bucket: Samples are reduced to medians per bucket of this length.
        block: Length of the bootstrap's blocks of consecutive buckets.
        n_boot: Bootstrap draws.
        min_buckets: Fewest buckets (with a load and a metric) a fit needs.
        min_load_spread: Fewest times the 90th percentile of bucket loads must exceed their
            10th for a shape to be fitted (below it, only the isotonic curve is used).
        min_queue_share: Lower bound of ``a``, the queueing share of the unloaded latency.
        max_extrapolation: The queueing curve speaks for loads up to this many times the highest
            bucket load seen.
        drift: Fit a drift of the level over time (a creep); the curve is then the one at the
            end of the window.
        fallback_ratio: The isotonic curve is used when the queueing fit's robust residual scale
            exceeds the isotonic one's (corrected for its degrees of freedom) by more than this
            factor.
    """

    window: timedelta = timedelta(days=14)
    bucket: timedelta = timedelta(hours=1)
    block: timedelta = timedelta(hours=12)
    n_boot: int = 200
    min_buckets: int = 24
    min_load_spread: float = 1.2
    min_queue_share: float = 0.05
    max_extrapolation: float = 3.0
    drift: bool = True
    fallback_ratio: float = 1.5

    def __post_init__(self) -> None:
        for name in ("window", "bucket", "block"):
            if getattr(self, name) <= timedelta(0):
                raise ConfigError(f"capacity {name} {getattr(self, name)} must be positive")
        if self.n_boot < 1 or self.min_buckets < 8:
            raise ConfigError(f"capacity n_boot {self.n_boot} must be at least 1 and "
                              f"min_buckets {self.min_buckets} at least 8")
        if not 0.0 < self.min_queue_share < MAX_QUEUE_SHARE:
            raise ConfigError(f"capacity min_queue_share {self.min_queue_share} must lie in "
                              f"(0, {MAX_QUEUE_SHARE})")
        if self.max_extrapolation < 1.0 or self.min_load_spread < 1.0 \
                or self.fallback_ratio < 1.0:
            raise ConfigError(
                f"capacity max_extrapolation {self.max_extrapolation}, min_load_spread "
                f"{self.min_load_spread} and fallback_ratio {self.fallback_ratio} must each be "
                "at least 1")


@dataclass(frozen=True, slots=True)
class LoadCurve:
    """A fitted monotone load -> metric curve with its bootstrap draws, as of ``end``.

    Attributes:
        method: ``queueing`` (the parametric family) or ``isotonic`` (the fallback).
        reason: Why this method, in words.
        end: Latest sample time used (UTC, naive); the curve is the one at that time.
        n_buckets: Buckets the fit used.
        load_min: Lowest bucket load seen.
        load_max: Highest bucket load seen.
        reach: Highest load the curve speaks for (crossings beyond it are "beyond range").
        noise: Robust standard deviation of the bucket medians about the curve (log scale).
        params: Queueing only: ``(base, a, c, drift_per_day)`` of the fit on all the data.
        param_draws: Queueing only: the same per bootstrap draw, shape ``(n_boot, 4)``.
        knots: Isotonic only: ``(x, log y)`` of the fit on all the data, x ascending.
        knot_draws: Isotonic only: the same per bootstrap draw.
    """

    method: Method
    reason: str
    end: datetime
    n_buckets: int
    load_min: float
    load_max: float
    reach: float
    noise: float
    params: tuple[float, float, float, float] | None = None
    param_draws: np.ndarray | None = field(default=None, compare=False, repr=False)
    knots: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)
    knot_draws: tuple[tuple[np.ndarray, np.ndarray], ...] = field(
        default=(), compare=False, repr=False)

    def latency(self, load: np.ndarray | float) -> np.ndarray:
        """The fitted (median) metric at each load, on the metric's own scale; NaN past
        ``reach``."""
        x = np.asarray(load, dtype=float)
        if self.params is not None:
            out = np.exp(_queueing_log(np.asarray(self.params)[None, :], x[..., None])[..., 0])
        else:
            assert self.knots is not None
            out = np.exp(_interp_knots(self.knots, x))
        return np.where(x <= self.reach, out, np.nan)

    def band(self, load: np.ndarray | float,
             quantiles: Sequence[float] = QUANTILES) -> np.ndarray:
        """Quantiles over the bootstrap draws of the metric at each load, shape
        ``(len(quantiles), *load.shape)``, metric scale; NaN past ``reach``."""
        x = np.asarray(load, dtype=float)
        if self.param_draws is not None:
            draws = np.exp(_queueing_log(self.param_draws, x[..., None]))
            draws = np.moveaxis(draws, -1, 0)
        else:
            draws = np.exp(np.stack([_interp_knots(k, x) for k in self.knot_draws]))
        # inverted_cdf picks draws (no interpolation): past a draw's wall its latency is inf.
        out = np.quantile(draws, list(quantiles), axis=0, method="inverted_cdf")
        return np.where(x <= self.reach, out, np.nan)


@dataclass(frozen=True, slots=True)
class Capacity:
    """The effective capacity for one limit: the load at which the curve reaches it.

    ``p10 <= p50 <= p90`` where present; a quantile is None when it falls on draws whose crossing
    lies beyond the curve's reach.

    Attributes:
        limit: The metric's limit.
        p10: 10% quantile of the capacity over the bootstrap draws (None: beyond range).
        p50: Median (None: beyond range).
        p90: 90% quantile (None: beyond range).
        status: ``within`` (p50 inside the loads seen), ``extrapolated`` (p50 above the highest
            load seen, within reach), ``beyond_range`` (p50 beyond reach: no number),
            ``over_limit`` (the metric is past the limit even at the lowest load).
        p_beyond: Share of draws whose crossing lies beyond reach.
        load_max: Highest bucket load seen.
        reach: Highest load the curve speaks for.
        method: The curve's method.
        reason: What the figures rest on, in words.
        draws: Capacity per bootstrap draw (inf beyond reach, 0 when past the limit at the
            lowest load).
    """

    limit: float
    p10: float | None
    p50: float | None
    p90: float | None
    status: Status
    p_beyond: float
    load_max: float
    reach: float
    method: Method
    reason: str
    draws: np.ndarray = field(compare=False, repr=False)

    @property
    def extrapolated(self) -> bool:
        """Whether the median capacity lies above the highest load seen (or beyond reach)."""
        return self.status in ("extrapolated", "beyond_range")

    @property
    def beyond_range(self) -> bool:
        """Whether the median capacity lies beyond the curve's reach (no number given)."""
        return self.status == "beyond_range"


@dataclass(frozen=True, slots=True)
class Saturation:
    """When demand exceeds capacity, over demand paths and capacity draws.

    Attributes:
        eta_p10: 10% quantile of the first time demand exceeds capacity (the start of the first
            step past it); None when fewer than 10% of the pairs cross within the horizon.
        eta_p50: Median, likewise.
        eta_p90: 90% quantile, likewise.
        p_saturation: Share of (path, capacity draw) pairs that cross within the horizon.
        act_quantile: The saturation quantile ``act_by`` is counted from.
        act_by: That quantile minus ``lead_time`` (None without it).
        lead_time: How long the fix takes.
        horizon_end: End of the last step of the paths.
    """

    eta_p10: datetime | None
    eta_p50: datetime | None
    eta_p90: datetime | None
    p_saturation: float
    act_quantile: float
    act_by: datetime | None
    lead_time: timedelta
    horizon_end: datetime


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Demand scaled by ``factor``: headroom and saturation.

    Attributes:
        factor: The demand multiplier.
        headroom_current: ``1 - factor * current / capacity`` at capacity p10, p50, p90 (None
            where the capacity is beyond range).
        headroom_peak: The same at the peak load.
        saturation: Saturation of the scaled demand paths.
    """

    factor: float
    headroom_current: tuple[float | None, float | None, float | None]
    headroom_peak: tuple[float | None, float | None, float | None]
    saturation: Saturation


@dataclass(frozen=True, slots=True)
class Headroom:
    """A service's headroom figures for the weekly report.

    Attributes:
        current_load: Median load over the last bucket.
        peak_load: Highest bucket median load over ``peak_window``.
        capacity: The learned capacity.
        headroom_current: ``1 - current / capacity`` at capacity p10, p50, p90 (None: beyond
            range).
        headroom_peak: ``1 - peak / capacity`` likewise.
        growth_per_week: Relative demand growth per week (0.19 = 19 %), robust slope of the log
            of daily mean demand compared between same weekdays.
        runway_weeks: Weeks until the peak, growing at that rate, reaches capacity p10, p50, p90
            (0 when already past; None when demand does not grow or the capacity is beyond
            range).
    """

    current_load: float
    peak_load: float
    capacity: Capacity
    headroom_current: tuple[float | None, float | None, float | None]
    headroom_peak: tuple[float | None, float | None, float | None]
    growth_per_week: float
    runway_weeks: tuple[float | None, float | None, float | None]


# ---- the curve ---------------------------------------------------------------------------------


def fit_curve(ts: np.ndarray, load: np.ndarray, metric: np.ndarray, rng: np.random.Generator,
              settings: CurveSettings = CurveSettings()) -> LoadCurve:
    """Fit a monotone load -> metric curve with its bootstrap draws (see the module docstring).

    Args:
        ts: Sample times (numpy datetime64), aligned with ``load`` and ``metric``, any order.
        load: Load per sample (requests/s, tokens/s), >= 0.
        metric: The metric per sample (latency in ms, error rate), > 0 (an error rate of 0 is
            read as ``scales.EPS``).
        rng: Random source of the bootstrap (seed it for reproducible figures).
        settings: Window, bucket, bootstrap and fit settings.

    Returns:
        The curve as of the latest sample.

    Raises:
        InputError: Arrays of different lengths, no valid sample, or fewer than
            ``settings.min_buckets`` buckets in the window.
    """
    t, x, y, end = _buckets(ts, load, metric, settings)
    n = x.size
    order = np.argsort(x, kind="stable")
    iso = isotonic(y[order])
    # The isotonic fit spends a degree of freedom per level it takes (Meyer and Woodroofe,
    # Ann. Statist. 28(4), 2000): without this correction its residuals look too quiet.
    levels = int(np.count_nonzero(np.diff(iso))) + 1
    iso_noise = _robust_sd(y[order] - iso) * math.sqrt(n / max(n - levels, 1))
    spread = (float(np.quantile(x, 0.9)) / max(float(np.quantile(x, 0.1)), 1e-12))
    x_min, x_max = float(x.min()), float(x.max())
    blocks = _block_resamples(n, settings, rng)
    if spread < settings.min_load_spread:
        reason = (f"the load barely varied (p90/p10 of bucket loads {spread:.2f} < "
                  f"{settings.min_load_spread}): no shape to fit; monotone curve over the loads "
                  "seen")
        return _isotonic_curve(t, x, y, end, reason, iso_noise, blocks)
    central = _fit_queueing(t, x, y, x_max, settings, iso_noise)
    resid = _residuals(central, t, x, y, x_max)
    noise = _robust_sd(resid)
    if noise > settings.fallback_ratio * max(iso_noise, 1e-9):
        reason = (f"the queueing curve fits poorly (residual sd {noise:.3f} vs {iso_noise:.3f} "
                  "for a monotone curve with no shape): monotone curve over the loads seen")
        return _isotonic_curve(t, x, y, end, reason, iso_noise, blocks)
    thetas = _fit_queueing_batch(t[blocks], x[blocks], y[blocks], x_max, settings, noise,
                                 central)
    draws = _natural(thetas, x_max)
    base, a, c, g = (float(v) for v in _natural(central, x_max))
    return LoadCurve(
        method="queueing",
        reason=(f"queueing curve over {n} buckets, loads {x_min:.3g} to {x_max:.3g}; "
                f"residual sd {noise:.3f} (log scale)"),
        end=_as_datetime(end), n_buckets=n, load_min=x_min, load_max=x_max,
        reach=settings.max_extrapolation * x_max, noise=noise, params=(base, a, c, g),
        param_draws=draws)


def isotonic(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Non-decreasing least-squares fit to ``y`` (in the given order), by pool-adjacent-violators.

    Args:
        y: Values, ordered by the variable the fit must be monotone in.
        weights: Positive weight per value (1 each by default).

    Returns:
        The fitted values, non-decreasing, same shape as ``y``.
    """
    values = np.asarray(y, dtype=float)
    w_in = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    means: list[float] = []
    wsum: list[float] = []
    sizes: list[int] = []
    for v, w in zip(values.tolist(), w_in.tolist(), strict=True):
        means.append(v)
        wsum.append(w)
        sizes.append(1)
        # Pool the last two blocks while they violate the order.
        while len(means) > 1 and means[-2] > means[-1]:
            w2 = wsum[-2] + wsum[-1]
            means[-2] = (means[-2] * wsum[-2] + means[-1] * wsum[-1]) / w2
            wsum[-2] = w2
            sizes[-2] += sizes[-1]
            del means[-1], wsum[-1], sizes[-1]
    return np.repeat(np.asarray(means), sizes)


def _buckets(ts: np.ndarray, load: np.ndarray, metric: np.ndarray, settings: CurveSettings
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.datetime64]:
    """Per-bucket medians in the window: (days before the end, load, log metric, end),
    in time order."""
    ts = np.asarray(ts).astype("datetime64[us]")
    x = np.asarray(load, dtype=float)
    y = np.asarray(metric, dtype=float)
    if not ts.shape == x.shape == y.shape or ts.ndim != 1:
        raise InputError(f"ts, load and metric must be 1-d arrays of one length; got shapes "
                         f"{ts.shape}, {x.shape}, {y.shape}")
    ok = ~np.isnat(ts) & np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0)
    if not ok.any():
        raise InputError(f"no usable sample among {ts.size}: a sample needs a time, a finite "
                         "load >= 0 and a finite metric >= 0")
    ts, x, y = ts[ok], x[ok], np.log(np.maximum(y[ok], EPS))
    end = ts.max()
    keep = ts > end - _us(settings.window)
    ts, x, y = ts[keep], x[keep], y[keep]
    bucket = _us(settings.bucket)
    group = (ts - np.datetime64(0, "us")) // bucket
    groups = np.unique(group)
    if groups.size < settings.min_buckets:
        raise InputError(
            f"{groups.size} buckets of {settings.bucket} with a load and a metric in the last "
            f"{settings.window} (from {ts.size} samples); a capacity curve needs at least "
            f"{settings.min_buckets}")
    t_mid = _group_median(group, (ts - end) / DAY)
    return t_mid, _group_median(group, x), _group_median(group, y), end


def _group_median(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Median of ``values`` per distinct ``group`` (groups in ascending order)."""
    order = np.lexsort((values, group))
    g, v = group[order], values[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.diff(np.r_[starts, g.size])
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    return (v[lo] + v[hi]) / 2.0


def _queueing_log(params: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log of ``base * (1 + a u / (1 - u))``, ``u = x / c``, at the end of the window (where the
    drift term is 0); params ``(..., 4)`` natural ``(base, a, c, drift)``; inf at and past
    ``c``."""
    base, a, c = (params[..., k] for k in range(3))
    u = x / c
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(u < 1.0, u / (1.0 - u), np.inf)
        return np.log(base) + np.log1p(a * v)


def _natural(theta: np.ndarray, x_max: float) -> np.ndarray:
    """Fit parameters ``(..., 4)``: ``(log base, log a, log(c / x_max - 1), drift)`` ->
    ``(base, a, c, drift)``."""
    return np.stack([np.exp(theta[..., 0]), np.exp(theta[..., 1]),
                     x_max * (1.0 + np.exp(theta[..., 2])), theta[..., 3]], axis=-1)


def _bounds(settings: CurveSettings) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the fit parameters ``(log base, log a, log(c / x_max - 1), drift)``."""
    g_bound = MAX_DRIFT if settings.drift else 0.0
    lower = np.array([-np.inf, math.log(settings.min_queue_share), math.log(1e-3), -g_bound])
    upper = np.array([np.inf, math.log(MAX_QUEUE_SHARE), math.log(1e3), g_bound])
    return lower, upper


def _residuals(theta: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray,
               x_max: float) -> np.ndarray:
    """Residuals of the log model (see :func:`_residuals_jacobian`)."""
    a = np.exp(theta[..., 1:2])
    u = x / (x_max * (1.0 + np.exp(theta[..., 2:3])))
    return theta[..., 0:1] + theta[..., 3:4] * t + np.log1p(a * u / (1.0 - u)) - y


def _residuals_jacobian(theta: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray,
                        x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Residuals of the log model and their Jacobian in the fit parameters; ``theta`` is
    ``(..., 4)``, the data ``(..., n)``; returns ``(..., n)`` and ``(..., n, 4)``."""
    a = np.exp(theta[..., 1:2])
    e = np.exp(theta[..., 2:3])
    c = x_max * (1.0 + e)
    u = x / c
    v = u / (1.0 - u)
    r = theta[..., 0:1] + theta[..., 3:4] * t + np.log1p(a * v) - y
    share = a * v / (1.0 + a * v)
    # d log(1 + a v) / d theta2, through c = x_max (1 + exp(theta2)); d u / d c = -u / c.
    d_c = -a / (1.0 + a * v) / (1.0 - u) ** 2 * u / c * x_max * e
    return r, np.stack([np.ones_like(r), share, d_c, np.broadcast_to(t, r.shape)], axis=-1)


def _fit_queueing(t: np.ndarray, x: np.ndarray, y: np.ndarray, x_max: float,
                  settings: CurveSettings, scale: float) -> np.ndarray:
    """Robust least squares (soft-L1 loss at ``scale``) of the queueing family on the log scale:
    the best of a small grid of starts (fitted together, :func:`_fit_queueing_batch`), polished
    by ``scipy.optimize.least_squares``. Returns the fit parameters (see :func:`_natural`)."""
    lower, upper = _bounds(settings)
    low = float(np.median(y[x <= np.quantile(x, 0.2)]))
    starts = np.array([[low, math.log(a0), math.log(e0), 0.0]
                       for a0 in (0.2, 1.0) for e0 in (0.05, 0.3, 1.0, 3.0)])
    k = starts.shape[0]
    fits = _fit_queueing_batch(np.broadcast_to(t, (k, t.size)), np.broadcast_to(x, (k, x.size)),
                               np.broadcast_to(y, (k, y.size)), x_max, settings, scale, starts)
    r = _residuals(fits, t, x, y, x_max)
    s2 = max(scale, 1e-3) ** 2
    best = fits[int(np.argmin(np.sum(np.sqrt(1.0 + r * r / s2), axis=-1)))]
    # Bounds must be strictly ordered for scipy: a held drift gets a sliver of room.
    upper = np.maximum(upper, lower + 1e-12)
    fit = least_squares(lambda th: _residuals(th, t, x, y, x_max),
                        np.clip(best, lower, upper),
                        jac=lambda th: _residuals_jacobian(th, t, x, y, x_max)[1],
                        bounds=(lower, upper), loss="soft_l1", f_scale=math.sqrt(s2),
                        x_scale="jac")
    return np.asarray(fit.x)


def _fit_queueing_batch(t: np.ndarray, x: np.ndarray, y: np.ndarray, x_max: float,
                        settings: CurveSettings, scale: float, start: np.ndarray,
                        max_iter: int = 100) -> np.ndarray:
    """The same fit on many resamples at once (data ``(B, n)``), started at ``start`` (``(4,)``
    or one per resample, ``(B, 4)``):
    Levenberg-Marquardt on the iteratively reweighted (soft-L1) least squares, a step kept only
    where it lowers the robust cost; a resample stops when a kept step gains almost nothing or
    no step can. Returns ``(B, 4)`` fit parameters."""
    lower, upper = _bounds(settings)
    s2 = max(scale, 1e-3) ** 2
    free = (upper > lower).astype(float)  # the drift is held at 0 when it is switched off
    fixed = np.diag(1.0 - free)

    def cost(theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
        r = _residuals(theta, t[rows], x[rows], y[rows], x_max)
        return np.sum(2.0 * s2 * (np.sqrt(1.0 + r * r / s2) - 1.0), axis=-1)

    n_draws = t.shape[0]
    theta = np.array(np.broadcast_to(np.clip(start, lower, upper), (n_draws, 4)))
    damping = np.full(n_draws, 1e-3)
    current = cost(theta, np.arange(n_draws))
    active = np.arange(n_draws)
    for _ in range(max_iter):
        if active.size == 0:
            break
        th = theta[active]
        r, jac = _residuals_jacobian(th, t[active], x[active], y[active], x_max)
        jac = jac * free
        wjac = jac * (1.0 / np.sqrt(1.0 + r * r / s2))[..., None]
        normal = np.matmul(wjac.transpose(0, 2, 1), jac)
        grad = np.matmul(wjac.transpose(0, 2, 1), r[..., None])
        diag = np.einsum("bii->bi", normal) + 1e-12
        lm = damping[active][:, None] * diag
        system = normal + lm[:, :, None] * np.eye(4) + fixed
        step = np.linalg.solve(system, -grad)[..., 0]
        trial = np.clip(th + step, lower, upper)
        trial_cost = cost(trial, active)
        better = trial_cost < current[active]
        gain = np.where(better, current[active] - trial_cost, 0.0)
        theta[active] = np.where(better[:, None], trial, th)
        current[active] = np.where(better, trial_cost, current[active])
        damping[active] = np.where(better, damping[active] / 3.0, damping[active] * 4.0)
        done = (better & (gain <= 1e-9 * (current[active] + s2))) | (damping[active] > 1e6)
        active = active[~done]
    return theta


def _isotonic_curve(t: np.ndarray, x: np.ndarray, y: np.ndarray, end: np.datetime64,
                    reason: str, noise: float, blocks: np.ndarray) -> LoadCurve:
    del t  # the isotonic curve has no drift term: it describes the whole window
    draws = tuple(_knots(x[idx], y[idx]) for idx in blocks)
    return LoadCurve(method="isotonic", reason=reason, end=_as_datetime(end), n_buckets=int(x.size),
                     load_min=float(x.min()), load_max=float(x.max()), reach=float(x.max()),
                     noise=noise, knots=_knots(x, y), knot_draws=draws)


def _knots(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x, kind="stable")
    return x[order], isotonic(y[order])


def _interp_knots(knots: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    kx, ky = knots
    return np.where(x <= kx[-1], np.interp(x, kx, ky), np.nan)


def _robust_sd(resid: np.ndarray) -> float:
    return float(MAD_TO_SD * np.median(np.abs(resid - np.median(resid))))


def _block_resamples(n: int, settings: CurveSettings, rng: np.random.Generator
                     ) -> np.ndarray:
    """Indices of ``n_boot`` moving-block resamples of ``n`` buckets (in time order), shape
    ``(n_boot, n)``."""
    length = max(1, min(n, round(settings.block / settings.bucket)))
    n_blocks = math.ceil(n / length)
    starts = rng.integers(0, n - length + 1, size=(settings.n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(length)).reshape(settings.n_boot, -1)[:, :n]
    return idx


# ---- effective capacity -------------------------------------------------------------------------


def effective_capacity(curve: LoadCurve, limit: float) -> Capacity:
    """The load at which ``curve`` reaches ``limit``, over its bootstrap draws.

    Args:
        curve: A fitted curve.
        limit: The metric's limit (an ``above`` limit: the metric rises with load), > 0.

    Returns:
        The capacity quantiles and its status (see :class:`Capacity`).

    Raises:
        InputError: A limit that is not a positive finite number.
    """
    if not (math.isfinite(limit) and limit > 0):
        raise InputError(f"limit {limit!r} is not a positive finite number")
    log_limit = math.log(limit)
    if curve.param_draws is not None:
        draws = _queueing_capacity(curve.param_draws, limit)
    else:
        draws = np.array([_knot_capacity(k, log_limit) for k in curve.knot_draws])
    draws = np.where(draws > curve.reach, np.inf, draws)
    p10, p50, p90 = (_finite_or_none(v) for v in
                     np.quantile(draws, QUANTILES, method="inverted_cdf"))
    status: Status
    if p50 is None:
        status = "beyond_range"
    elif p50 <= 0.0:
        status = "over_limit"
    elif p50 > curve.load_max:
        status = "extrapolated"
    else:
        status = "within"
    p_beyond = float(np.isinf(draws).mean())
    reach = (f"{curve.reach:.3g} ({curve.reach / curve.load_max:.3g}x the highest load seen)"
             if curve.method == "queueing" else f"{curve.reach:.3g} (the highest load seen)")
    reason = {
        "beyond_range": f"the curve stays below {limit:g} up to the load it speaks for, {reach}",
        "over_limit": f"the metric is past {limit:g} even at the lowest load seen",
        "extrapolated": (f"crossing of {limit:g} extrapolated above the highest load seen "
                         f"({curve.load_max:.3g})"),
        "within": f"crossing of {limit:g} within the loads seen",
    }[status] + f"; {curve.method} curve: {curve.reason}"
    return Capacity(limit=limit, p10=p10, p50=p50, p90=p90, status=status, p_beyond=p_beyond,
                    load_max=curve.load_max, reach=curve.reach, method=curve.method,
                    reason=reason, draws=draws)


def _queueing_capacity(params: np.ndarray, limit: float) -> np.ndarray:
    """Closed form: ``base (1 + a v) = limit`` with ``v = u / (1 - u)`` gives
    ``x = c r / (a + r)``, ``r = limit / base - 1`` (0 when the base is past the limit)."""
    base, a, c = params[:, 0], params[:, 1], params[:, 2]
    r = limit / base - 1.0
    return np.where(r > 0.0, c * np.maximum(r, 0.0) / (a + np.maximum(r, 0.0)), 0.0)


def _knot_capacity(knots: tuple[np.ndarray, np.ndarray], log_limit: float) -> float:
    """First load where the isotonic curve reaches the limit (linear between knots); 0 when it
    starts past it (past the limit at the lowest load seen); inf when it never reaches it."""
    kx, ky = knots
    above = np.flatnonzero(ky >= log_limit)
    if above.size == 0:
        return math.inf
    i = int(above[0])
    if i == 0:
        return 0.0
    x0, x1, y0, y1 = kx[i - 1], kx[i], ky[i - 1], ky[i]
    return float(x1 if y1 == y0 else x0 + (log_limit - y0) / (y1 - y0) * (x1 - x0))


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ---- demand through the curve -------------------------------------------------------------------


def saturation(paths: np.ndarray, ds: np.ndarray, step: timedelta, capacity: Capacity,
               lead_time: timedelta, act_quantile: float = 0.1) -> Saturation:
    """When demand exceeds capacity, over every pair of (demand path, capacity draw).

    Args:
        paths: Demand sample paths on the load's own scale, shape ``(n_paths, n_steps)``; NaN
            counts as not exceeding.
        ds: Start of each step (numpy datetime64), ascending, ``n_steps`` long.
        step: The spacing of ``ds``.
        capacity: The capacity draws to compare with.
        lead_time: How long the fix (scaling out) takes.
        act_quantile: The saturation quantile ``act_by`` is counted from (0.1: act so that the
            fix is in place before 10 % of the outcomes saturate).

    Returns:
        Saturation quantiles (ordered), ``p_saturation`` in [0, 1] and ``act_by``.

    Raises:
        InputError: Paths that are not 2-d, or whose step count differs from ``ds``, or an
            ``act_quantile`` outside (0, 1).
    """
    paths = np.asarray(paths, dtype=float)
    ds = np.asarray(ds).astype("datetime64[us]")
    if paths.ndim != 2 or paths.shape[1] != ds.size or ds.size == 0:
        raise InputError(f"paths must have shape (n_paths, {ds.size}) for {ds.size} steps; got "
                         f"{paths.shape}")
    if not 0.0 < act_quantile < 1.0:
        raise InputError(f"act_quantile {act_quantile!r} must lie strictly between 0 and 1")
    steps = first_passage(paths, capacity.draws)
    levels = sorted({*QUANTILES, act_quantile})
    ks = np.quantile(steps, levels, method="inverted_cdf")
    at = {q: (_as_datetime(ds[int(k)]) if math.isfinite(k) else None)
          for q, k in zip(levels, ks, strict=True)}
    act = at[act_quantile]
    return Saturation(
        eta_p10=at[0.1], eta_p50=at[0.5], eta_p90=at[0.9],
        p_saturation=float(np.isfinite(steps).mean()), act_quantile=act_quantile,
        act_by=None if act is None else act - lead_time, lead_time=lead_time,
        horizon_end=_as_datetime(ds[-1]) + step)


def first_passage(paths: np.ndarray, capacities: np.ndarray) -> np.ndarray:
    """First step at which each path exceeds each capacity, flattened over (path, capacity);
    inf when it never does. Read from the path's running maximum, so the first passage is at
    or before any later crossing."""
    running = np.maximum.accumulate(np.where(np.isnan(paths), -np.inf, paths), axis=1)
    caps = np.asarray(capacities, dtype=float)
    n_steps = paths.shape[1]
    out = np.empty((paths.shape[0], caps.size))
    for i, row in enumerate(running):
        out[i] = np.searchsorted(row, caps, side="right")
    return np.where(out >= n_steps, np.inf, out).ravel()


def what_if(paths: np.ndarray, ds: np.ndarray, step: timedelta, capacity: Capacity,
            current_load: float, peak_load: float, factors: Sequence[float],
            lead_time: timedelta, act_quantile: float = 0.1) -> tuple[WhatIf, ...]:
    """Demand times each factor: headroom at the current and peak load, saturation, act-by.

    Args:
        paths: Demand sample paths (see :func:`saturation`).
        ds: Their step starts.
        step: Their spacing.
        capacity: The learned capacity.
        current_load: The load now.
        peak_load: The peak load (30 days).
        factors: Demand multipliers, each > 0 (1 gives the plain answer exactly).
        lead_time: How long the fix takes.
        act_quantile: See :func:`saturation`.

    Raises:
        InputError: A factor that is not a positive finite number.
    """
    out = []
    for factor in factors:
        if not (math.isfinite(factor) and factor > 0):
            raise InputError(f"what-if factor {factor!r} is not a positive finite number")
        out.append(WhatIf(
            factor=factor,
            headroom_current=_headroom(factor * current_load, capacity),
            headroom_peak=_headroom(factor * peak_load, capacity),
            saturation=saturation(np.asarray(paths, dtype=float) * factor, ds, step, capacity,
                                  lead_time, act_quantile)))
    return tuple(out)


def _headroom(load: float, capacity: Capacity
              ) -> tuple[float | None, float | None, float | None]:
    def one(cap: float | None) -> float | None:
        if cap is None:
            return None
        return 1.0 - load / cap if cap > 0 else -math.inf
    return one(capacity.p10), one(capacity.p50), one(capacity.p90)


# ---- headroom figures ---------------------------------------------------------------------------


def headroom(ts: np.ndarray, load: np.ndarray, capacity: Capacity,
             bucket: timedelta = timedelta(hours=1), peak_window: timedelta = timedelta(days=30),
             growth_window: timedelta = timedelta(days=28)) -> Headroom:
    """A service's headroom figures (see :class:`Headroom`).

    Args:
        ts: Sample times of the load (numpy datetime64).
        load: Load per sample.
        capacity: The learned capacity.
        bucket: Loads are bucket medians of this length (a sustained load, not a spike).
        peak_window: The peak is taken over this long before the latest sample.
        growth_window: The growth is fitted over this long before the latest sample.

    Raises:
        InputError: Arrays of different lengths or no valid sample.
    """
    ts_ok, x = _valid_load(ts, load)
    end = ts_ok.max()
    group = (ts_ok - np.datetime64(0, "us")) // _us(bucket)
    medians = _group_median(group, x)
    last_groups = np.unique(group)
    recent = last_groups >= (end - _us(peak_window) - np.datetime64(0, "us")) // _us(bucket)
    current = float(medians[-1])
    peak = float(medians[recent].max())
    keep = ts_ok > end - _us(growth_window)
    slope = weekly_log_slope(ts_ok[keep], x[keep])
    growth = math.expm1(slope)
    runway: list[float | None] = []
    for cap in (capacity.p10, capacity.p50, capacity.p90):
        if cap is None or slope <= 0:
            runway.append(None)
        elif cap <= peak:
            runway.append(0.0)
        else:
            runway.append(math.log(cap / peak) / slope)
    return Headroom(current_load=current, peak_load=peak, capacity=capacity,
                    headroom_current=_headroom(current, capacity),
                    headroom_peak=_headroom(peak, capacity), growth_per_week=growth,
                    runway_weeks=(runway[0], runway[1], runway[2]))


def weekly_log_slope(ts: np.ndarray, load: np.ndarray) -> float:
    """Robust growth of the log of demand per week: the median, over pairs of days a whole
    number of weeks apart (same weekday, so the weekly cycle cancels), of the change in the
    log of the daily mean per week. With under two weeks of days, all pairs of days are used
    (a weekday effect then biases it).

    Raises:
        InputError: Fewer than two days with data.
    """
    day, z = _daily_log_means(ts, load)
    if day.size < 2:
        raise InputError(f"{day.size} day(s) of demand; a growth rate needs at least 2")
    i, j = np.triu_indices(day.size, k=1)
    lag = day[j] - day[i]
    weekly = lag % 7 == 0
    if weekly.any():
        i, j, lag = i[weekly], j[weekly], lag[weekly]
    return float(np.median((z[j] - z[i]) / lag)) * 7.0


def _daily_log_means(ts: np.ndarray, load: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whole days (days since the epoch) with their log mean load; days with under half the
    usual number of samples are dropped (a partial day misstates the level)."""
    ts_ok, x = _valid_load(ts, load)
    day = (ts_ok - np.datetime64(0, "us")) // DAY
    days, inverse_idx, counts = np.unique(day, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse_idx, weights=x)
    full = counts >= 0.5 * np.median(counts)
    return days[full].astype(np.int64), np.log(np.maximum(sums[full] / counts[full], EPS))


def _valid_load(ts: np.ndarray, load: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ts = np.asarray(ts).astype("datetime64[us]")
    x = np.asarray(load, dtype=float)
    if ts.shape != x.shape or ts.ndim != 1:
        raise InputError(f"ts and load must be 1-d arrays of one length; got shapes {ts.shape}, "
                         f"{x.shape}")
    ok = ~np.isnat(ts) & np.isfinite(x) & (x >= 0)
    if not ok.any():
        raise InputError(f"no usable load sample among {ts.size}: each needs a time and a "
                         "finite load >= 0")
    order = np.argsort(ts[ok], kind="stable")
    return ts[ok][order], x[ok][order]


# ---- demand paths -------------------------------------------------------------------------------


def paths_from_forecast(dist: ForecastDist, n_paths: int, rng: np.random.Generator
                        ) -> np.ndarray:
    """Demand paths on the load's own scale from a forecast distribution, drawn as the time to
    intervention draws them (:func:`forecaster.engine.intervention.sample_paths`)."""
    with np.errstate(over="ignore"):
        return inverse(sample_paths(dist, n_paths, rng), dist.transform)


def demand_paths(ts: np.ndarray, load: np.ndarray, step: timedelta, n_steps: int,
                 n_paths: int, rng: np.random.Generator,
                 growth_window: timedelta = timedelta(days=28),
                 smooth: timedelta = timedelta(hours=1)) -> tuple[np.ndarray, np.ndarray]:
    """A plain demand forecast as sample paths: log-linear trend, weekly profile, resampled days
    of residuals.

    On the log scale, demand is a trend (the robust weekly slope of :func:`weekly_log_slope`)
    plus a profile over the week (a daily one with under two weeks of data): per phase of the
    season, the median of the detrended history, smoothed by a running median over ``smooth``;
    the level is set by the last week's residuals. Each path draws its own slope from the
    slope's uncertainty (the spread of the daily means about trend and profile) and its noise
    as whole days of past residuals at the same time of day, so the within-day dependence and
    the noisier hours come back as they were seen.

    Args:
        ts: Sample times (numpy datetime64), on a grid of ``step`` (gaps allowed).
        load: Demand per sample, >= 0.
        step: The sampling interval; the paths have the same.
        n_steps: Steps to forecast after the latest sample.
        n_paths: Paths to draw.
        rng: Random source.
        growth_window: History used, counted back from the latest sample.
        smooth: Width of the running median over the profile.

    Returns:
        ``(ds, paths)``: step starts (datetime64[us], ``n_steps``) and paths on the load's own
        scale, shape ``(n_paths, n_steps)``.

    Raises:
        InputError: Fewer than two days of data, or non-positive sizes.
    """
    if n_steps < 1 or n_paths < 1:
        raise InputError(f"n_steps {n_steps} and n_paths {n_paths} must both be at least 1")
    ts_ok, x = _valid_load(ts, load)
    recent = ts_ok > ts_ok.max() - _us(growth_window)
    ts_ok, x = ts_ok[recent], x[recent]
    step_us = _us(step)
    per_day = max(1, round(timedelta(days=1) / step))
    origin = ts_ok.min()
    idx = ((ts_ok - origin) // step_us).astype(np.int64)
    n_hist = int(idx.max()) + 1
    z = np.full(n_hist, np.nan)
    z[idx] = np.log(np.maximum(x, EPS))
    slope_week = weekly_log_slope(ts_ok, x)
    slope = slope_week / 7.0 / per_day  # per step
    detrended = z - slope * np.arange(n_hist)
    season = per_day * 7 if n_hist >= 2 * per_day * 7 else per_day
    phase0 = int(((origin - np.datetime64(0, "us")) // step_us) % season)
    phase = (phase0 + np.arange(n_hist)) % season
    profile = _phase_median(detrended, phase, season)
    width = max(1, round(smooth / step))
    profile = _circular_median(profile, width)
    resid = detrended - profile[phase]
    last_week = resid[-per_day * 7:]
    level = float(np.nanmedian(last_week)) if np.isfinite(last_week).any() else 0.0
    resid = np.nan_to_num(resid - level, nan=0.0)
    slope_sd = _slope_sd(resid, per_day) / per_day  # per step
    future = n_hist + np.arange(n_steps)
    fphase = (phase0 + future) % season
    mean = slope * future + profile[fphase] + level
    slopes = slope + slope_sd * rng.standard_normal((n_paths, 1))
    trend = (slopes - slope) * (future - (n_hist - 1))[None, :]
    noise = _day_blocks(resid, per_day, n_hist, n_steps, n_paths, rng)
    ds = origin + future * step_us
    return ds, np.exp(mean[None, :] + trend + noise)


def _phase_median(values: np.ndarray, phase: np.ndarray, season: int) -> np.ndarray:
    out = np.full(season, np.nan)
    ok = np.isfinite(values)
    for p in range(season):
        sel = ok & (phase == p)
        if sel.any():
            out[p] = np.median(values[sel])
    if np.isnan(out).all():
        return np.zeros(season)
    # A phase never seen takes its nearest seen neighbour's value (circularly).
    seen = np.flatnonzero(~np.isnan(out))
    pos = np.arange(season)
    dist = np.abs(pos[:, None] - seen[None, :])
    dist = np.minimum(dist, season - dist)
    return out[seen[np.argmin(dist, axis=1)]]


def _circular_median(values: np.ndarray, width: int) -> np.ndarray:
    """Running median over ``width`` neighbours, wrapping around the season (a median keeps
    a sharp step, such as the start of a weekend, where a mean would smear it)."""
    half = width // 2
    if half < 1:
        return values
    padded = np.concatenate([values[-half:], values, values[:half]])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)


def _slope_sd(resid: np.ndarray, per_day: int) -> float:
    """Standard error of a per-day slope fitted on daily means of ``resid``'s series: the
    robust spread of the daily mean residuals over the spread of the days."""
    n_days = resid.size // per_day
    if n_days < 3:
        return 0.0
    daily = resid[resid.size - n_days * per_day:].reshape(n_days, per_day).mean(axis=1)
    days = np.arange(n_days, dtype=float)
    return _robust_sd(daily) / float(np.sqrt(np.sum((days - days.mean()) ** 2)))


def _day_blocks(resid: np.ndarray, per_day: int, n_hist: int, n_steps: int, n_paths: int,
                rng: np.random.Generator) -> np.ndarray:
    """Noise for the future steps: whole past days of residuals, each starting at the same time
    of day as the future day it fills."""
    n_days = n_hist // per_day
    if n_days < 1:
        return rng.choice(resid, size=(n_paths, n_steps))
    future = n_hist + np.arange(n_steps)
    # A past day shifted by a whole number of days keeps the time of day.
    day_of = (future - n_hist) // per_day
    n_future_days = int(day_of[-1]) + 1
    back = rng.integers(1, n_days + 1, size=(n_paths, n_future_days))
    source = future[None, :] - (back[:, day_of] + day_of[None, :]) * per_day
    return resid[np.clip(source, 0, n_hist - 1)]


def _as_datetime(value: np.datetime64) -> datetime:
    out = value.astype("datetime64[us]").item()
    assert isinstance(out, datetime)
    return out


def _us(delta: timedelta) -> np.timedelta64:
    return np.timedelta64(int(delta.total_seconds() * 1_000_000), "us")
