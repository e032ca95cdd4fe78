"""Forecasting with statsforecast: prepare series, choose a model per series, forecast.

Preparation. Each series is read up to ``now`` only, from its training start (the latest event of
its service, such as a model update, when enough data follows it), and aggregated to the policy's
frequency the way the policy reads it: the **maximum** of each bucket for an ``above`` limit, the
**minimum** for ``below``. So a bucket crosses exactly when one of its points does, and percentiles
are never averaged. Missing buckets are filled by linear interpolation; the series is then moved to
its modelling scale (:mod:`forecaster.engine.scales`). The bucket holding ``now`` is left out of
training while it still expects points (its max so far understates the bucket's); the forecast
starts with it.

Degenerate series never fail a run: too short, constant, or mostly gaps, they are flagged and
get a random walk with drift instead of the chosen model.

Selection. Per series, a pool (MSTL with daily and, given two weeks, weekly seasons and an ETS
trend; AutoTheta; seasonal naive; a random walk with drift) is scored by rolling-origin
cross-validation on the series' own history (the interval score of each model's 80% interval on
the model scale, over ``cv_windows`` windows of ``cv_steps``), and the best model kept. The
interval score is a proper scoring rule: it rewards narrow intervals and penalises every value
outside them, so a model whose point forecast is good but whose intervals are far too wide or
narrow (a random walk on a noisy stationary series) does not win; what the answers depend on is
the whole forecast distribution, not its centre. Selection is costly, so the
choice is stored and re-made on a slower clock than the refresh. A series with two days but too
short for those windows (the days after a model update, say) is scored on shorter ones, leaving
two days before them. Each forecast keeps the model's in-sample residuals, from which
:mod:`forecaster.engine.intervention` draws the noise of its sample paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np
import polars as pl
from statsforecast import StatsForecast
from statsforecast.models import MSTL, AutoETS, AutoTheta, Naive, RandomWalkWithDrift, SeasonalNaive

from forecaster.config import default
from forecaster.engine.intervention import Z80, ForecastDist, Observation
from forecaster.engine.scales import Transform, forward, transform_for
from forecaster.policies import steps_per_day

K = TypeVar("K")
FALLBACK = "RWD"
POOL = ("MSTL", "AutoTheta", "SeasonalNaive", "Drift")


@dataclass(frozen=True, slots=True)
class ForecastSettings:
    """How to forecast.

    Attributes:
        n_jobs: Processes statsforecast may use.
        cv_steps: Steps of each cross-validation window.
        cv_windows: Cross-validation windows.
        min_days: Days of data below which a series is too short for the pool.
        max_gap_share: Share of missing buckets above which a series is too gappy for the pool.
        min_days_after_event: Data needed after an event to train on it alone.
    """

    n_jobs: int = default("forecast_jobs")  # from forecaster.config.SETTINGS
    cv_steps: int = 72
    cv_windows: int = 2
    min_days: float = 3.0
    max_gap_share: float = 0.2
    min_days_after_event: float = 3.0


@dataclass(slots=True)
class Prepared:
    """One series, ready to model.

    Attributes:
        unique_id: ``service:metric``.
        ds: Bucket starts, evenly spaced, numpy datetime64[us].
        y: Values on the model scale, gaps filled.
        transform: The model scale.
        step: Bucket width.
        observation: The latest bucket and the recent trend, on the metric scale.
        train_start: First bucket used.
        flags: Why this series is special (``since_event``, ``gaps_filled``, ``too_short``,
            ``constant``, ``gappy``).
    """

    unique_id: str
    ds: np.ndarray
    y: np.ndarray
    transform: Transform
    step: timedelta
    observation: Observation
    train_start: datetime
    flags: list[str] = field(default_factory=list)

    @property
    def degenerate(self) -> bool:
        """True when the pool is not worth trying on this series."""
        return bool({"too_short", "constant", "gappy"} & set(self.flags))


def _seasons(step: timedelta, n: int) -> list[int]:
    day = steps_per_day(step)
    seasons = [day] if day > 1 and n >= 2 * day else []
    if day > 1 and n >= 2 * 7 * day:
        seasons.append(7 * day)
    return seasons


def _trend(values: np.ndarray, step: timedelta) -> tuple[float, float]:
    """(change per day of the daily mean over the last week, mean of the last day)."""
    per_day = steps_per_day(step)
    recent = values[-7 * per_day:]
    days = recent.size // per_day
    level = float(np.mean(values[-per_day:]))
    if days < 2:
        return 0.0, level
    daily = recent[recent.size - days * per_day:].reshape(days, per_day).mean(axis=1)
    slope = float(np.polyfit(np.arange(days, dtype=float), daily, 1)[0])
    return slope, level


def prepare(
    unique_id: str,
    ds: np.ndarray,
    y: np.ndarray,
    *,
    kind: str,
    step: timedelta,
    direction: str,
    now: datetime,
    event_at: datetime | None,
    settings: ForecastSettings,
) -> Prepared | None:
    """Aggregate, clean and transform one series.

    Args:
        unique_id: ``service:metric``.
        ds: Point times (datetime64[us]), any order.
        y: Point values, metric scale.
        kind: The metric kind (decides the model scale).
        step: The policy's frequency.
        direction: ``above`` aggregates buckets by max, ``below`` by min.
        now: Points after ``now`` are ignored.
        event_at: The latest event of the service before ``now``, if any.
        settings: Thresholds.

    Returns:
        The prepared series, or None when it has no point up to ``now``.
    """
    now64 = np.datetime64(now, "us")
    keep = (ds <= now64) & np.isfinite(y)
    ds, y = ds[keep], y[keep]
    if ds.size == 0:
        return None
    step64 = np.timedelta64(int(step.total_seconds() * 1_000_000), "us")
    buckets = (ds - np.datetime64(0, "us")) // step64
    flags: list[str] = []
    if event_at is not None:
        event_bucket = (np.datetime64(event_at, "us") - np.datetime64(0, "us")) // step64
        after = buckets >= event_bucket
        if (buckets.max() - event_bucket) * step >= timedelta(days=settings.min_days_after_event):
            buckets, y = buckets[after], y[after]
            flags.append("since_event")
    order = np.argsort(buckets, kind="stable")
    buckets, y = buckets[order], y[order]
    unique, starts = np.unique(buckets, return_index=True)
    reduce = np.maximum if direction == "above" else np.minimum
    agg = reduce.reduceat(y, starts)
    grid = np.arange(unique[0], unique[-1] + 1)
    filled = np.interp(grid, unique, agg)
    gap_share = 1.0 - unique.size / grid.size
    if gap_share > 0:
        flags.append("gaps_filled")
    if gap_share > settings.max_gap_share:
        flags.append("gappy")
    if grid.size * step < timedelta(days=settings.min_days):
        flags.append("too_short")
    if np.ptp(filled) == 0:
        flags.append("constant")
    transform = transform_for(kind)
    grid_ds = np.datetime64(0, "us") + grid * step64
    slope, level = _trend(filled, step)
    observation = Observation(last_ts=grid_ds[-1].astype("datetime64[us]").item(),
                              last_value=float(filled[-1]), trend_per_day=slope, level=level)
    if grid.size > 1 and _partial(np.sort(ds), grid_ds[-1] + step64, now64):
        # The bucket holding `now` is still filling: its max (min) so far is biased low (high)
        # as a sample of the bucket, and the rest of it is future that a crossing may fall in.
        # So it is not trained on and the forecast starts with it; the observation (is the
        # limit passed already?) still reads it.
        grid, filled, grid_ds = grid[:-1], filled[:-1], grid_ds[:-1]
    return Prepared(unique_id=unique_id, ds=grid_ds, y=forward(filled, transform),
                    transform=transform, step=step, observation=observation,
                    train_start=grid_ds[0].astype("datetime64[us]").item(), flags=flags)


def _partial(ts: np.ndarray, bucket_end: np.datetime64, now: np.datetime64) -> bool:
    """Whether the last bucket still expects points: the next point, at the series' usual
    spacing, would fall inside it."""
    spacing = np.median(np.diff(ts[-21:])) if ts.size > 1 else bucket_end - ts[-1]
    return bool(now + spacing < bucket_end)


def _freq(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _model(name: str, seasons: list[int]) -> object:
    if name == "MSTL":
        return MSTL(season_length=seasons, trend_forecaster=AutoETS(model="ZZN"), alias=name)
    if name == "AutoTheta":
        return AutoTheta(season_length=seasons[0], alias=name)
    if name == "SeasonalNaive":
        return SeasonalNaive(season_length=seasons[0], alias=name)
    # The same model twice: "Drift" when cross-validation chose it, FALLBACK when nothing else
    # could be tried (the provenance tells the two apart).
    return RandomWalkWithDrift(alias=name if name == "Drift" else FALLBACK)


def _long(series: list[Prepared]) -> pl.DataFrame:
    return pl.DataFrame({
        "unique_id": np.concatenate([np.full(p.y.size, p.unique_id, dtype=object)
                                     for p in series]).astype(str),
        "ds": np.concatenate([p.ds for p in series]),
        "y": np.concatenate([p.y for p in series]),
    })


def _groups(series: list[Prepared], key: Callable[[Prepared], K]) -> dict[K, list[Prepared]]:
    groups: dict[K, list[Prepared]] = {}
    for item in series:
        groups.setdefault(key(item), []).append(item)
    return groups


@dataclass(frozen=True, slots=True)
class Choice:
    """A model chosen for a series, with the cross-validation errors behind the choice."""

    model: str
    score: float | None
    scores: dict[str, float] = field(default_factory=dict)


def select_models(series: list[Prepared], settings: ForecastSettings) -> dict[str, Choice]:
    """Choose a model per series by rolling-origin cross-validation.

    Degenerate series, and series too short for two seasons, get the fallback unscored. A
    series with two seasons but too short for the windows (the days after a model update, say)
    is scored on shorter windows, as long as two seasons remain before them.
    """
    choices: dict[str, Choice] = {}
    need = settings.cv_steps * settings.cv_windows
    plans: dict[str, tuple[timedelta, tuple[int, ...], int]] = {}
    for item in series:
        n = item.y.size
        if item.degenerate or not _seasons(item.step, n):
            choices[item.unique_id] = Choice(FALLBACK, None)
            continue
        day = steps_per_day(item.step)
        h = (settings.cv_steps if _seasons(item.step, n - need)
             else max(1, (n - 2 * day) // settings.cv_windows))
        plans[item.unique_id] = (item.step, tuple(_seasons(item.step, n - h * settings.cv_windows)),
                                 h)
    eligible = [item for item in series if item.unique_id in plans]
    for (step, pool_seasons, h), group in _groups(eligible, lambda p: plans[p.unique_id]).items():
        models = [_model(name, list(pool_seasons)) for name in POOL]
        sf = StatsForecast(models=models, freq=_freq(step), n_jobs=settings.n_jobs,
                           fallback_model=Naive())
        cv = sf.cross_validation(df=_long(group), h=h, n_windows=settings.cv_windows,
                                 step_size=h, level=[80])
        errors = cv.group_by("unique_id").agg([_interval_score(name).mean().alias(name)
                                               for name in POOL])
        for row in errors.iter_rows(named=True):
            scores = {name: float(row[name]) for name in POOL if row[name] == row[name]}
            best = min(scores, key=lambda n: (scores[n], POOL.index(n))) if scores else FALLBACK
            choices[row["unique_id"]] = Choice(best, scores.get(best), scores)
    return choices


def _interval_score(model: str, alpha: float = 0.2) -> pl.Expr:
    """The interval score of a model's 80% interval against ``y``: its width, plus 2 / alpha
    times how far ``y`` falls outside it (Gneiting and Raftery, JASA 2007, section 6.2)."""
    lo, hi, y = pl.col(f"{model}-lo-80"), pl.col(f"{model}-hi-80"), pl.col("y")
    return ((hi - lo) + (2 / alpha) * ((lo - y).clip(lower_bound=0)
                                       + (y - hi).clip(lower_bound=0)))


def forecast(
    series: list[Prepared], choices: dict[str, str], horizons: dict[str, int],
    settings: ForecastSettings,
) -> dict[str, tuple[ForecastDist, str]]:
    """Forecast each series with its chosen model; returns (distribution, model used).

    A chosen model that cannot run on a series (its history got shorter, it is degenerate now)
    is replaced by the fallback; statsforecast's own ``fallback_model`` catches a model that
    fails on a series.
    """
    out: dict[str, tuple[ForecastDist, str]] = {}

    def plan(item: Prepared) -> tuple[timedelta, str, tuple[int, ...], int]:
        seasons = tuple(_seasons(item.step, item.y.size))
        model = choices.get(item.unique_id, FALLBACK)
        if item.degenerate or not seasons:
            model = FALLBACK
        return item.step, model, seasons, horizons[item.unique_id]

    for (step, model, seasons, h), group in _groups(series, plan).items():
        sf = StatsForecast(models=[_model(model, list(seasons) or [1])], freq=_freq(step),
                           n_jobs=settings.n_jobs, fallback_model=Naive())
        # Degenerate series (constant, tiny) make the models divide by zero; the NaN that
        # results is handled below, so numpy's warnings about it are noise.
        with np.errstate(divide="ignore", invalid="ignore"):
            try:
                frame = sf.forecast(df=_long(group), h=h, level=[80], fitted=True)
                fitted: pl.DataFrame | None = sf.forecast_fitted_values()
            except AttributeError:
                # statsforecast 2.1's Naive fallback cannot give fitted intervals for a series
                # with no spread (its sigma is the int 0); such a group goes without residuals.
                frame, fitted = sf.forecast(df=_long(group), h=h, level=[80]), None
        resid = {}
        for (u,), r in (fitted.group_by("unique_id") if fitted is not None else ()):
            e = (r["y"] - r[model]).to_numpy().astype(float)
            ok = np.isfinite(e)
            resid[str(u)] = (e[ok], r["ds"].to_numpy().astype("datetime64[us]")[ok])
        lo, hi = f"{model}-lo-80", f"{model}-hi-80"
        members = {p.unique_id: p for p in group}
        for (uid,), rows in frame.group_by("unique_id"):
            rows = rows.sort("ds")
            mean = rows[model].to_numpy().astype(float)
            sd = ((rows[hi] - rows[lo]).to_numpy().astype(float)) / (2 * Z80)
            item = members[str(uid)]
            if not np.all(np.isfinite(mean)):
                mean = np.full(h, item.y[-1])
            if not np.all(np.isfinite(sd)):
                sd = np.full(h, float(np.std(np.diff(item.y))) if item.y.size > 2 else 0.0)
            residuals, residual_ds = resid.get(str(uid), (None, None))
            dist = ForecastDist(ds=rows["ds"].to_numpy().astype("datetime64[us]"),
                                mean=mean, sd=np.maximum(sd, 0.0), transform=item.transform,
                                step=step, residuals=residuals, residual_ds=residual_ds)
            out[str(uid)] = (dist, model)
    return out
