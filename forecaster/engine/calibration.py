"""Recalibration of the first-passage distribution, learned from the scored estimates.

The sample paths give each answer a distribution of the first-passage time ``T`` (the model's
own, "raw"): its CDF ``F`` over the horizon, with ``F(horizon) = p_breach``. If that distribution
were right, the probability integral transform ``U = F(T)`` of what then happened would be
uniform on [0, 1] (``T`` beyond the horizon only tells that ``U > p_breach``: a censored value).
Scored estimates show how far it is from uniform: on real series the model is overconfident at
both ends (crossings called unlikely come more often than said, crossings called near-certain
less often).

The fix (Kuleshov et al., "Accurate uncertainties for deep learning using calibrated regression",
ICML 2018; the censored form as in D-calibration, Haider et al., JMLR 21(85), 2020) is a monotone
map ``g`` with ``g(u) = P(U <= u)``, estimated from the scored PIT values by Kaplan-Meier (which
takes the censored ones for what they say); ``g(F(t))`` is then calibrated on the same record.
With it, an answer's ``p_breach`` is ``g(F(horizon))`` and its ``eta_pQ`` is the raw
first-passage quantile at level ``g^-1(Q)``.

Small records are noisy: ``g`` is the Kaplan-Meier CDF and the identity mixed by weight, ``n``
(the record's weight) against ``prior`` pseudo-estimates of the identity, and it is used only
from ``min_weight`` on. The estimates of one series on one day are close to copies of each other
(a refresh every 15 minutes), so together they weigh 1 (:func:`day_weights`).

Each answer keeps its raw ``p_breach`` and its raw first-passage quantiles at ``LEVELS`` (seconds
after its as-of time); :func:`pit` turns them and the crossing that came into ``U``. The map is
fitted over the whole fleet: a series alone has too few crossings to learn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05, 0.10, ..., 0.95
_GRID = np.linspace(0.0, 1.0, 201)


@dataclass(frozen=True, slots=True)
class PassageCalibration:
    """A monotone map of first-passage CDF levels: raw level ``u`` -> calibrated ``g(u)``.

    Attributes:
        grid: Raw levels, 0 to 1.
        values: ``g`` at each, non-decreasing, ``g(0) = 0``.
        weight: The weight of the scored record it was fitted on.
    """

    grid: np.ndarray
    values: np.ndarray
    weight: float

    def level(self, u: float) -> float:
        """``g(u)``: the calibrated probability of a raw CDF level (``p_breach`` from its raw
        value)."""
        return float(np.interp(u, self.grid, self.values))

    def raw_level(self, q: float) -> float | None:
        """``g^-1(q)``: the raw level whose calibrated value is ``q`` (the smallest such), or
        None when ``g`` never reaches ``q`` (a quantile beyond the horizon)."""
        if q > self.values[-1]:
            return None
        i = int(np.searchsorted(self.values, q, side="left"))
        if i == 0:
            return 0.0
        x0, x1 = self.grid[i - 1], self.grid[i]
        y0, y1 = self.values[i - 1], self.values[i]
        return float(x1 if y1 == y0 else x0 + (q - y0) / (y1 - y0) * (x1 - x0))

    def describe(self) -> dict[str, float]:
        """``g`` at a few levels and the record's weight, for provenance."""
        out = {f"g({u:g})": round(self.level(u), 3) for u in (0.1, 0.5, 0.9)}
        out["weight"] = round(self.weight, 1)
        return out


def pits(passage: np.ndarray, p_raw: np.ndarray, horizon_s: np.ndarray,
         crossing_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The raw PIT of what happened after each of many estimates.

    The raw CDF runs through the knots ``(0, 0)``, ``(passage[k], LEVELS[k])`` for the levels
    up to ``p_raw``, and ``(horizon, p_raw)``, linearly between them. Levels that fall in one
    step share a time: the CDF jumps there, and a crossing at that time gets the middle of the
    jump.

    Args:
        passage: Raw first-passage quantiles at ``LEVELS``, seconds after the as-of time, shape
            (n, len(LEVELS)); NaN beyond the horizon.
        p_raw: The raw ``p_breach`` of each.
        horizon_s: The horizon of each, in seconds.
        crossing_s: When the first crossing came, seconds after the as-of time; NaN when none
            came within the horizon.

    Returns:
        ``(u, censored)``: ``F(crossing)``, or ``p_raw`` and True without a crossing.
    """
    passage = np.asarray(passage, dtype=float).reshape(-1, len(LEVELS))
    p = np.asarray(p_raw, dtype=float)
    end = np.asarray(horizon_s, dtype=float)
    at = np.asarray(crossing_s, dtype=float)
    n = p.size
    levels = np.broadcast_to(np.asarray(LEVELS), (n, len(LEVELS)))
    valid = np.isfinite(passage) & (levels <= p[:, None] + 1e-12)
    # a level the paths never reached sits with the last knot, (horizon, p_raw)
    xs = np.column_stack([np.zeros(n), np.where(valid, passage, end[:, None]), end])
    ys = np.column_stack([np.zeros(n), np.where(valid, levels, p[:, None]), p])
    xs = np.maximum.accumulate(xs, axis=1)
    ys = np.maximum.accumulate(ys, axis=1)
    c = np.where(np.isfinite(at), at, 0.0)[:, None]
    below = (xs < c).sum(axis=1)  # knots before the crossing
    upto = (xs <= c).sum(axis=1)  # ... and at it
    last = xs.shape[1] - 1
    lo = np.clip(below - 1, 0, last)
    hi = np.clip(below, 0, last)
    x0, x1, y0, y1 = _pick(xs, lo), _pick(xs, hi), _pick(ys, lo), _pick(ys, hi)
    span = np.where(x1 > x0, x1 - x0, 1.0)
    between = y0 + np.clip((c[:, 0] - x0) / span, 0.0, 1.0) * (y1 - y0)
    top = _pick(ys, np.clip(upto - 1, 0, last))
    u = np.where(upto > below, (y1 + top) / 2.0,  # at knots: the middle of the jump there
                 np.where(below > last, ys[:, -1], between))
    censored = ~np.isfinite(at)
    return np.where(censored, p, u), censored


def _pick(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take_along_axis(rows, index[:, None], axis=1)[:, 0]


def pit(passage: Sequence[float | None], p_raw: float, horizon_s: float,
        crossing_s: float | None) -> tuple[float, bool]:
    """:func:`pits` of one estimate (``passage`` with None beyond the horizon, ``crossing_s``
    None without a crossing)."""
    u, censored = pits(np.array([np.nan if v is None else v for v in passage], dtype=float),
                       np.array([p_raw]), np.array([horizon_s]),
                       np.array([np.nan if crossing_s is None else crossing_s]))
    return float(u[0]), bool(censored[0])


def day_weights(series_ids: Sequence[int] | np.ndarray,
                as_of: Sequence[datetime] | np.ndarray) -> np.ndarray:
    """Weight of each estimate: 1 / (the estimates of its series on its UTC day)."""
    days = np.asarray(as_of, dtype="datetime64[us]").astype("datetime64[D]").astype(np.int64)
    keys = np.column_stack([np.asarray(series_ids, dtype=np.int64), days])
    if not keys.size:
        return np.zeros(0)
    _, group, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return 1.0 / counts[group.reshape(-1)]


def fit(u: Sequence[float] | np.ndarray, censored: Sequence[bool] | np.ndarray,
        weights: Sequence[float] | np.ndarray, prior: float,
        min_weight: float) -> PassageCalibration | None:
    """The map ``g`` from scored PIT values (see the module docstring).

    Args:
        u: PIT values in [0, 1].
        censored: Whether each is only a lower bound (no crossing within the horizon).
        weights: Weight of each (see :func:`day_weights`).
        prior: Pseudo-weight of the identity map.
        min_weight: The record's weight from which a map is returned.

    Returns:
        The map, or None when the record weighs less than ``min_weight``.
    """
    uu = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
    cc = np.asarray(censored, dtype=bool)
    ww = np.asarray(weights, dtype=float)
    total = float(ww.sum())
    if total < min_weight or total <= 0:
        return None
    # Weighted Kaplan-Meier of U. At a tie the events come first: the censored values there are
    # still at risk (they say U is larger).
    values_u, group = np.unique(uu, return_inverse=True)
    events = np.bincount(group, weights=ww * ~cc, minlength=values_u.size)
    leaving = np.bincount(group, weights=ww, minlength=values_u.size)
    at_risk = total - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])
    hazard = np.divide(events, at_risk, out=np.zeros_like(events), where=at_risk > 0)
    survival = np.cumprod(1.0 - np.clip(hazard, 0.0, 1.0))
    hit = events > 0
    knots_u = np.concatenate([[0.0], values_u[hit]])
    knots_f = np.concatenate([[0.0], 1.0 - survival[hit]])
    km = np.interp(_GRID, knots_u, knots_f)  # flat after the last event
    values = (total * km + prior * _GRID) / (total + prior)
    return PassageCalibration(grid=_GRID.copy(), values=np.maximum.accumulate(values), weight=total)


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored estimate, as the map needs it.

    Attributes:
        series_id: Its series.
        as_of: When it was made.
        passage: Its raw first-passage quantiles at ``LEVELS`` (seconds after ``as_of``).
        p_raw: Its raw ``p_breach``.
        horizon_s: Its horizon in seconds.
        crossing_s: When the first crossing came (seconds after ``as_of``), None if none did
            within the horizon.
    """

    series_id: int
    as_of: datetime
    passage: Sequence[float | None]
    p_raw: float
    horizon_s: float
    crossing_s: float | None


def fit_record(record: Sequence[Scored], prior: float,
               min_weight: float) -> PassageCalibration | None:
    """The map from a record of scored estimates (see :func:`fit_columns`)."""
    if not record:
        return None
    return fit_columns(
        np.array([r.series_id for r in record]), np.array([r.as_of for r in record],
                                                          dtype="datetime64[us]"),
        np.array([[np.nan if v is None else v for v in r.passage] for r in record], dtype=float),
        np.array([r.p_raw for r in record], dtype=float),
        np.array([r.horizon_s for r in record], dtype=float),
        np.array([np.nan if r.crossing_s is None else r.crossing_s for r in record],
                 dtype=float),
        prior, min_weight)


def fit_columns(series_id: np.ndarray, as_of: np.ndarray, passage: np.ndarray,
                p_raw: np.ndarray, horizon_s: np.ndarray, crossing_s: np.ndarray,
                prior: float, min_weight: float) -> PassageCalibration | None:
    """The map from the columns of a record of scored estimates (those of :class:`Scored`;
    NaN for an absent quantile or crossing): the same in production and in the backtest."""
    if not len(p_raw):
        return None
    u, censored = pits(passage, p_raw, horizon_s, crossing_s)
    return fit(u, censored, day_weights(series_id, as_of), prior, min_weight)


def fit_frame(record: pl.DataFrame, prior: float, min_weight: float) -> PassageCalibration | None:
    """The map from a stored record (``Store.calibration_record``: the columns of
    :class:`Scored`, ``passage`` a list column with nulls beyond the horizon)."""
    if record.is_empty():
        return None
    return fit_columns(
        record["series_id"].to_numpy(), record["as_of"].to_numpy(),
        record["passage"].list.to_array(len(LEVELS)).to_numpy().astype(float),
        record["p_raw"].to_numpy().astype(float), record["horizon_s"].to_numpy().astype(float),
        record["crossing_s"].fill_null(float("nan")).to_numpy().astype(float),
        prior, min_weight)


__all__ = ["LEVELS", "PassageCalibration", "Scored", "day_weights", "fit", "fit_columns",
           "fit_frame", "fit_record", "pit", "pits"]
