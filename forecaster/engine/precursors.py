"""Precursor anomalies in a refresh: which series of a service behaved oddly just now, and why.

Each series is scored by :mod:`forecaster.engine.anomaly` over its recent past (no look-ahead: the
points up to ``now`` only), and its anomaly onsets of the last ``lookback`` at or above
``threshold`` are kept, each with the features that drove it.

An anomaly becomes a *precursor* when another *kind* of metric of the same service (latency,
ratio, score, throughput, gauge) has one within ``corroboration`` of it: errors and latency
wobbling together, quality and feedback moving at once. Metrics of one kind move together for
ordinary reasons (every latency percentile rises at the daily peak), so they do not corroborate
each other, and an anomaly on one metric alone is stored and shown but changes no answer. On the
sample fleet (seven days, 54 series; ``bench/precursors.py``) 80 onsets passed the threshold, and
the only corroborated ones were the injected precursor burst of ``rag-search``.

Fresh precursors (the last ``fresh``) are the :class:`~forecaster.engine.intervention.Evidence` that
time to intervention uses: see its ``evidence`` argument for how they raise urgency.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from forecaster.config import default
from forecaster.engine.anomaly import AnomalySettings, score_series
from forecaster.engine.intervention import Evidence
from forecaster.policies import steps_per_day
from forecaster.wording import anomaly_detail, corroborated_detail, feature_phrase


@dataclass(frozen=True, slots=True)
class PrecursorSettings:
    """What counts as an anomaly and as a precursor.

    Attributes:
        detector: The detector and its windows (``season`` is set per series from its step).
        threshold: Onset score from which an anomaly is reported.
        lookback: How far back each run reports anomalies.
        fresh: How recent a precursor must be to change an answer.
        corroboration: How close in time two metrics' anomalies must be to corroborate.
    """

    # Defaults from the one table of settings (forecaster.config.SETTINGS).
    detector: AnomalySettings = field(default_factory=AnomalySettings)
    threshold: float = default("anomaly_threshold")
    lookback: timedelta = default("anomaly_lookback")
    fresh: timedelta = default("anomaly_fresh")
    corroboration: timedelta = default("anomaly_corroboration")


@dataclass(frozen=True, slots=True)
class SeriesInput:
    """One series' points up to now, in time order."""

    series_id: int
    service: str
    metric: str
    kind: str
    ts: np.ndarray  # datetime64[us]
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An anomaly onset of one series.

    Attributes:
        series_id: The series.
        service: Its service.
        metric: Its metric.
        kind: Its metric kind.
        ts: When.
        score: Onset score in [0, 1].
        features: The features that drove it most: name -> value.
        detail: The same in words.
        precursor: Whether another kind of metric of the service corroborates it.
        corroborated_by: Those metrics.
    """

    series_id: int
    service: str
    metric: str
    kind: str
    ts: datetime
    score: float
    features: dict[str, float]
    detail: str
    precursor: bool = False
    corroborated_by: tuple[str, ...] = ()


def _drivers(x: np.ndarray, i: int, names: list[str], max_train: int,
             top: int = 2) -> dict[str, float]:
    """The features of row ``i`` furthest in the tails of the rows before it (two-sided
    empirical tail share), most extreme first."""
    past = x[max(0, i - max_train):i]
    past = past[~np.isnan(past).any(axis=1)]
    if past.shape[0] == 0:
        return {}
    row = x[i]
    below = (past < row).mean(axis=0)
    above = (past > row).mean(axis=0)
    share = np.minimum(below, above)
    order = np.argsort(share, kind="stable")[:top]
    return {names[j]: round(float(row[j]), 3) for j in order}


def detect(series: SeriesInput, now: datetime, settings: PrecursorSettings) -> list[Anomaly]:
    """Anomaly onsets of one series in the last ``lookback`` before ``now``.

    Only the recent past is scored: the rows of the lookback, the ``settle`` rows before them
    (so an onset is known as one) and enough history for the features and the fit. The scoring
    starts on a fixed grid of rows so that successive runs score a row the same way within a day.
    """
    a = settings.detector
    upto = int(np.searchsorted(series.ts, np.datetime64(now, "us"), side="right"))
    ts, values = series.ts[:upto], np.asarray(series.values, dtype=float)[:upto]
    if values.size < a.warmup + a.min_train + 2:
        return []
    step = timedelta(seconds=float(np.median(np.diff(ts)).astype("timedelta64[us]")
                                   .astype(np.int64)) / 1e6)
    if step <= timedelta(0):
        return []
    cfg = replace(a, season=max(2, steps_per_day(step)))
    cut = np.datetime64(now - settings.lookback, "us")
    recent = int(values.size - np.searchsorted(ts, cut, side="right"))
    if recent == 0:
        return []
    grid = max(a.refit_every, 1)
    wanted = a.long_window + a.max_train + recent + a.settle
    h0 = max(0, values.size - wanted) // grid * grid
    v, t = values[h0:], ts[h0:]
    learn = max(0, (h0 + v.size - recent - a.settle) // grid * grid - h0)
    scores = score_series(v, cfg, learn_until=learn)
    names = cfg.use.split(",")
    found = []
    for i in np.flatnonzero(scores.onset >= settings.threshold):
        if t[i] <= cut:
            continue
        drivers = _drivers(scores.features, int(i), names, a.max_train)
        phrases = [feature_phrase(k, val, step, window=cfg.window, long_window=cfg.long_window,
                                  short=cfg.short) for k, val in drivers.items()]
        found.append(Anomaly(
            series_id=series.series_id, service=series.service, metric=series.metric,
            kind=series.kind, ts=t[i].astype("datetime64[us]").item(),
            score=float(scores.onset[i]), features=drivers,
            detail=anomaly_detail(series.metric, phrases)))
    return found


def corroborate(found: Iterable[Anomaly], within: timedelta) -> list[Anomaly]:
    """Mark as precursors the anomalies that another kind of metric of the same service shares
    within ``within``."""
    items = sorted(found, key=lambda a: (a.service, a.ts))
    out = []
    for a in items:
        others = sorted({b.metric for b in items if b.service == a.service
                         and b.kind != a.kind and abs(b.ts - a.ts) <= within})
        out.append(replace(a, precursor=bool(others), corroborated_by=tuple(others)))
    return out


def scan(series: Iterable[SeriesInput], now: datetime, settings: PrecursorSettings
         ) -> tuple[list[Anomaly], dict[int, str]]:
    """Detect and corroborate over many series; a series that fails is reported, not raised.

    Returns:
        The anomalies, and the error of each series that failed, by series id.
    """
    found: list[Anomaly] = []
    failures: dict[int, str] = {}
    for item in series:
        try:
            found.extend(detect(item, now, settings))
        except Exception as exc:  # noqa: BLE001 - one bad series never hides the others
            failures[item.series_id] = f"anomalies: {type(exc).__name__}: {exc}"
    return corroborate(found, settings.corroboration), failures


def evidence(found: Iterable[Anomaly], series_id: int, now: datetime,
             fresh: timedelta) -> tuple[Evidence, ...]:
    """The fresh precursors of one series as evidence, strongest first."""
    mine = [a for a in found if a.series_id == series_id and a.precursor
            and now - fresh <= a.ts <= now]
    mine.sort(key=lambda a: (-a.score, a.ts))
    return tuple(Evidence(ts=a.ts, score=a.score,
                          detail=corroborated_detail(a.detail, a.corroborated_by))
                 for a in mine)
