"""Precursor anomalies with PyOD, streaming-safe: a score at row t uses only rows up to t.

Features of each row (see :func:`features`), each from trailing windows of the rows before it:

- ``level``, ``long_level``: the value's distance from the mean of the ``window`` and
  ``long_window`` rows before it, in their standard deviations;
- ``step``: the same for the change from the previous row (a jump);
- ``spread``, ``long_spread``: log of the recent spread (``short`` and ``12 short`` rows) over the
  window's (a wobble);
- ``shift``, ``drift``: the recent mean's distance from the window's mean;
- ``extreme``, ``extreme_step``: how far into the tails of *all* earlier values (or jumps) it is;
- ``seasonal``, ``seasonal_spread``: the residual of a seasonal-naive forecast (the value a
  ``season`` ago), standardised, and its recent spread.

A PyOD detector (ECOD by default) is fitted on the feature rows seen so far and re-fitted every
``refit_every`` rows; each row is scored by the model fitted before it, on its own (see
:class:`StreamingECOD`, which also extends ECOD's empirical tails beyond the training range so
that a jump ten times larger than any seen scores higher than one just beyond them). Raw scores
are calibrated into [0, 1] against the detector's training scores: the empirical distribution up
to its 90th percentile and, above it, ``1 - 0.1 / (1 + x)`` with ``x`` the excess over that
percentile in units of the mean excess (peaks over threshold), so that a score means about the
same in every series and scores beyond anything seen still rank.
Finally an anomaly that lasts is reported at its onset (see :func:`onsets`): a row keeps its
score only when it beats every score of the ``settle`` rows before it and clearly outgrows the
last anomaly reported in them. On NAB (``bench/nab.py``) the extended tail and the onset rule
took the standard score from 55.4 to 61.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pyod.models.base import BaseDetector
from pyod.models.ecod import ECOD
from scipy.stats import skew
from sklearn.utils import check_array

from forecaster.config import DETECTORS, default

FEATURES = ("level", "step", "spread", "shift", "long_level", "extreme", "long_spread",
            "drift", "seasonal", "extreme_step", "seasonal_spread")


class Detector(Protocol):
    """The PyOD contract this module relies on."""

    decision_scores_: np.ndarray

    def fit(self, X: np.ndarray, y: None = None) -> Detector: ...  # noqa: N803, D102

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...  # noqa: N803, D102


class StreamingECOD(ECOD):
    """PyOD's ECOD, scoring each row against the training data alone, with an optional tail.

    PyOD's ``ECOD.decision_function`` recomputes its empirical distributions over the training
    data *and all the rows being scored*, so scoring a block of rows lets later rows change the
    scores of earlier ones: a look-ahead. Here each row's score is what ECOD gives that row scored
    on its own (the training data plus that row), computed for a whole block at once. Fitting, and
    ``decision_scores_``, ``threshold_`` and ``labels_``, are PyOD's own.

    ECOD's tail probability of a value beyond every training value is ``1 / (n + 1)`` however far
    beyond it lies. With ``tail`` > 0, each feature's two tails also get an exponential fitted to
    its ``tail`` most extreme training values, and a value beyond the range adds
    ``log(1 + distance / mean spacing)`` to its score; the training scores are then recomputed
    the same way so that calibration sees like with like.

    Args:
        contamination: PyOD's contamination (sets ``threshold_``).
        tail: Extreme training values the tail is fitted to; 0 for plain ECOD.
    """

    def __init__(self, contamination: float = 0.1, tail: int = 0) -> None:
        super().__init__(contamination=contamination)
        self.tail = tail

    def fit(self, X: np.ndarray, y: None = None) -> StreamingECOD:  # noqa: N803
        if not self.tail:
            # PyOD's fit scores the training data with decision_function: let it use its own.
            self.__dict__.pop("_sorted", None)
            super().fit(X, y)
            self._remember(np.asarray(X, dtype=float))
            return self
        # The training scores are recomputed with the tail below, so PyOD's own would be wasted
        # work; the rest is what ECOD.fit does.
        train = check_array(X).astype(float)
        self._set_n_classes(y)
        self._remember(train)
        k = min(self.tail, train.shape[0] - 1)
        top = self._sorted[-k:] - self._sorted[-k - 1]
        bottom = self._sorted[k] - self._sorted[:k]
        floor = 1e-9 + 1e-3 * (self._sorted[-1] - self._sorted[0])
        self._scale_right = np.maximum(top.mean(axis=0), floor)
        self._scale_left = np.maximum(bottom.mean(axis=0), floor)
        self.decision_scores_ = self.decision_function(train)
        self.X_train = train
        self._process_decision_scores()
        return self

    def _remember(self, train: np.ndarray) -> None:
        self._sorted = np.sort(train, axis=0)
        self._skew_sign = np.sign(skew(train, axis=0))

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        if not hasattr(self, "_sorted"):
            return super().decision_function(X)
        x = np.asarray(X, dtype=float)
        n = self._sorted.shape[0]
        left = np.empty_like(x)
        right = np.empty_like(x)
        for j in range(x.shape[1]):
            column = self._sorted[:, j]
            # the row itself counts in both tails, as when appended to the training data
            left[:, j] = (np.searchsorted(column, x[:, j], side="right") + 1) / (n + 1)
            right[:, j] = (n - np.searchsorted(column, x[:, j], side="left") + 1) / (n + 1)
        u_left, u_right = -np.log(left), -np.log(right)
        if self.tail:
            # beyond the training range, an exponential tail fitted to the top ``tail`` values
            # keeps ranking by distance instead of stopping at 1 / (n + 1)
            u_right += np.log1p(np.maximum(x - self._sorted[-1], 0.0) / self._scale_right)
            u_left += np.log1p(np.maximum(self._sorted[0] - x, 0.0) / self._scale_left)
        u_skew = (u_left * -1 * np.sign(self._skew_sign - 1)
                  + u_right * np.sign(self._skew_sign + 1))
        return np.maximum(np.maximum(u_left, u_right), u_skew).sum(axis=1)


def make_detector(name: str, tail: int = 0) -> BaseDetector:
    """A PyOD detector by name (``ecod``, ``hbos``, ``iforest``, ``knn``); each scores a row
    independently of the other rows scored with it. ``tail`` is ECOD's (see StreamingECOD)."""
    if name == "ecod":
        return StreamingECOD(tail=tail)
    if name == "hbos":
        from pyod.models.hbos import HBOS

        return HBOS()
    if name == "iforest":
        from pyod.models.iforest import IForest

        return IForest(random_state=0)
    if name == "knn":
        from pyod.models.knn import KNN

        return KNN()
    raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


@dataclass(frozen=True, slots=True)
class AnomalySettings:
    """Detector and windows.

    Attributes:
        detector: PyOD detector name.
        window: Rows of the trailing window the features compare with.
        short: Rows of the recent window for ``spread`` and ``shift``.
        min_train: Rows needed before anything is scored.
        refit_every: Rows between refits.
        max_train: Most recent feature rows a fit uses.
        settle: Rows a reported anomaly suppresses its own continuation for.
        long_window: Rows of the longer window ``long_level`` compares with.
        use: The features the detector sees (a subset of FEATURES).
        season: Rows in a season (a day) for the ``seasonal`` residual.
        warmup: Rows before features are computed; until the windows fill they grow from here.
        tail: ECOD's exponential tail: how many of the most extreme training values it is
            fitted to (0: plain ECOD, whose scores stop growing beyond the training range).
        regrow: How much a reported anomaly's tail odds must grow, within ``settle`` rows, to
            be reported again.
    """

    detector: str = default("anomaly_detector")  # from forecaster.config.SETTINGS
    window: int = 144
    short: int = 6
    min_train: int = 200
    refit_every: int = 288
    max_train: int = 4032
    settle: int = 200
    long_window: int = 2016
    use: str = ("level,step,spread,shift,long_level,extreme,seasonal,drift,long_spread,"
                "seasonal_spread")
    season: int = 288
    warmup: int = 24
    tail: int = 20
    regrow: float = 1.3


def _window_stats(x: np.ndarray, width: int, include_current: bool) -> tuple[
        np.ndarray, np.ndarray]:
    """Mean and standard deviation, per row t, of the ``width`` rows before t (and t itself
    when ``include_current``), by cumulative sums."""
    n = x.size
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    hi = np.arange(n) + (1 if include_current else 0)
    lo = np.maximum(hi - width, 0)
    count = np.maximum(hi - lo, 1)
    mean = (c1[hi] - c1[lo]) / count
    var = np.maximum((c2[hi] - c2[lo]) / count - mean * mean, 0.0)
    return mean, np.sqrt(var)


def _extremeness(v: np.ndarray, block: int = 256) -> np.ndarray:
    """Per row, how far into the tails of all earlier values it falls: -log10 of its two-sided
    empirical tail share (0 at the median, large beyond anything seen).

    Rows are taken a block at a time: against the sorted earlier blocks by binary search, and
    against the earlier rows of their own block by direct comparison.
    """
    v = np.asarray(v, dtype=float)
    out = np.zeros(v.size)
    seen = np.empty(0)
    for lo in range(0, v.size, block):
        rows = v[lo:lo + block]
        earlier = np.tri(rows.size, k=-1, dtype=bool)  # [i, j]: row j comes before row i
        below = np.searchsorted(seen, rows, side="left") + (
            (rows[None, :] < rows[:, None]) & earlier).sum(axis=1)
        above = seen.size - np.searchsorted(seen, rows, side="right") + (
            (rows[None, :] > rows[:, None]) & earlier).sum(axis=1)
        count = lo + np.arange(rows.size)
        out[lo:lo + rows.size] = np.where(
            count > 0, -np.log10((np.minimum(below, above) + 1) / (count + 1)), 0.0)
        seen = np.sort(np.concatenate([seen, rows]))
    return out


def features(values: np.ndarray, window: int, short: int, long_window: int = 2016,
             season: int = 288, warmup: int = 24, use: str | None = None) -> np.ndarray:
    """Causal features per row (see the module docstring); NaN until the window is full, and
    for the costlier features not in ``use`` (a comma-separated subset; None for all)."""
    v = np.asarray(values, dtype=float)
    n = v.size
    out = np.full((n, len(FEATURES)), np.nan)
    if n <= warmup + 1:
        return out
    # Centre on the first value so that cumulative sums keep their precision.
    v = v - v[0]
    diff = np.diff(v, prepend=v[0])
    mean, std = _window_stats(v, window, include_current=False)
    dmean, dstd = _window_stats(diff, window, include_current=False)
    smean, sstd = _window_stats(v, short, include_current=True)
    floor = 1e-9 + 1e-6 * np.abs(mean)
    out[:, 0] = (v - mean) / np.maximum(std, floor)
    out[:, 1] = (diff - dmean) / np.maximum(dstd, floor)
    out[:, 2] = np.log((sstd + floor) / (std + floor))
    out[:, 3] = (smean - mean) / np.maximum(std, floor)
    lmean, lstd = _window_stats(v, long_window, include_current=False)
    out[:, 4] = (v - lmean) / np.maximum(lstd, floor)
    wanted = set(FEATURES if use is None else use.split(","))
    if "extreme" in wanted:
        out[:, 5] = _extremeness(v)
    mmean, mstd = _window_stats(v, 12 * short, include_current=True)
    out[:, 6] = np.log((mstd + floor) / (lstd + floor))
    out[:, 7] = (mmean - lmean) / np.maximum(lstd, floor)
    # the residual of a seasonal-naive forecast (same time a season ago), in its own units
    lagged = np.concatenate([np.full(min(season, n), np.nan), v[:-season]]) if season < n \
        else np.full(n, np.nan)
    resid = np.nan_to_num(v - lagged)
    rmean, rstd = _window_stats(resid, long_window, include_current=False)
    out[:, 8] = np.where(np.isnan(lagged), np.nan,
                         (resid - rmean) / np.maximum(rstd, floor))
    if "extreme_step" in wanted:
        out[:, 9] = _extremeness(np.abs(diff))
    _, recent_rstd = _window_stats(resid, 12 * short, include_current=True)
    out[:, 10] = np.where(np.isnan(lagged), np.nan,
                          np.log((recent_rstd + floor) / (rstd + floor)))
    out[: warmup + 1] = np.nan
    return out


@dataclass(slots=True)
class ScoreCalibration:
    """Maps raw detector scores to [0, 1] against the detector's training scores (see the
    module docstring)."""

    sorted_scores: np.ndarray
    q90: float
    mean_excess: float

    @classmethod
    def fit(cls, train_scores: np.ndarray) -> ScoreCalibration:
        s = np.sort(np.asarray(train_scores, dtype=float))
        q90 = float(np.quantile(s, 0.9))
        excess = s[s > q90] - q90
        mean_excess = float(excess.mean()) if excess.size else 1.0
        return cls(s, q90, max(mean_excess, 1e-12))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        body = np.searchsorted(self.sorted_scores, raw, side="right") / (self.sorted_scores.size
                                                                        + 1)
        # 1 - 0.1 / (1 + excess): never saturates, so the most extreme scores still rank.
        tail = 1.0 - 0.1 / (1.0 + np.maximum(raw - self.q90, 0.0) / self.mean_excess)
        return np.clip(np.where(raw > self.q90, np.maximum(tail, 0.9), np.minimum(body, 0.9)),
                       0.0, 1.0)


@dataclass(slots=True)
class StreamScores:
    """Scores of one series.

    Attributes:
        calibrated: Per row, the calibrated detector score in [0, 1] (0 before ``min_train``).
        onset: Per row, the reported anomaly score in [0, 1] (onset of an anomaly).
        features: The feature matrix.
    """

    calibrated: np.ndarray
    onset: np.ndarray
    features: np.ndarray = field(repr=False)


def score_series(values: np.ndarray, settings: AnomalySettings,
                 learn_until: int | None = None) -> StreamScores:
    """Score every row of a series without look-ahead.

    Args:
        values: The series, in time order.
        settings: Detector and windows.
        learn_until: Rows before this index are used for learning only (NAB's probationary
            period); they are scored all the same, and nothing after a row affects it.

    Returns:
        Calibrated and onset scores per row.
    """
    x = features(values, settings.window, settings.short, settings.long_window, settings.season,
                 settings.warmup, settings.use)
    x = x[:, [FEATURES.index(name) for name in settings.use.split(",")]]
    n = x.shape[0]
    calibrated = np.zeros(n)
    valid = ~np.isnan(x).any(axis=1)
    first = int(np.argmax(valid)) if valid.any() else n
    start = max(first + settings.min_train, learn_until or 0, first + 1)
    t = start
    while t < n:
        lo = max(first, t - settings.max_train)
        train = x[lo:t][valid[lo:t]]
        end = min(n, t + settings.refit_every)
        block = x[t:end]
        ok = valid[t:end]
        if train.shape[0] >= 10 and ok.any():
            detector = make_detector(settings.detector, settings.tail).fit(train)
            calibrate = ScoreCalibration.fit(detector.decision_scores_)
            scores = np.zeros(end - t)
            scores[ok] = calibrate(detector.decision_function(block[ok]))
            calibrated[t:end] = scores
        t = end
    return StreamScores(calibrated=calibrated,
                        onset=onsets(calibrated, start, settings.settle, settings.regrow),
                        features=x)


def onsets(calibrated: np.ndarray, start: int, settle: int, regrow: float = 1.3) -> np.ndarray:
    """Report an anomaly once, at its onset.

    A row keeps its score only where it beats every score of the ``settle`` scored rows before
    it and, when an anomaly was already reported in those rows, where its tail odds
    ``1 / (1 - score)`` are at least ``regrow`` times the last report's: a score that keeps
    creeping up is one anomaly, not a new one every row. The first row after ``start`` has no
    history to beat and reports nothing.
    """
    n = calibrated.size
    odds = 1.0 / np.maximum(1.0 - calibrated, 1e-12)
    out = np.zeros(n)
    last, last_odds = -settle - 1, 0.0
    for i in range(start + 1, n):
        if odds[i] <= odds[max(start, i - settle):i].max():
            continue
        if i - last <= settle and odds[i] < regrow * last_odds:
            continue
        out[i], last, last_odds = calibrated[i], i, odds[i]
    return out
