"""Scoring by the rules of the Numenta Anomaly Benchmark (NAB v1.1), as ../shared/data/README.md
states them. Pure numpy; the benchmark's own scorer is not needed.

- Every row has an anomaly score in [0, 1]; a row is a detection when its score >= threshold.
- The first ``min(floor(0.15 N), 750)`` rows of a file (the probationary period) are not scored.
- A detection inside a window at row i scores ``A_TP * sigma(y) / sigma(-1)`` with
  ``y = -(right - i + 1) / width``; only the earliest detection of a window counts. A window
  without a detection scores ``-A_FN``.
- A detection outside every window is a false positive: after a window it scores
  ``A_FP * sigma(|i - previous_right| / (previous_width - 1))`` (close to the window costs little);
  before the first window of its file ``-A_FP``. Every false positive counts.
- ``sigma(y) = 2 / (1 + exp(5 y)) - 1``, and -1 for y > 3.
- Normalised: ``100 (raw - null) / (perfect - null)``, perfect = windows x A_TP,
  null = -windows x A_FN.
- One threshold per detector and profile, chosen over the whole corpus by sweeping every distinct
  score and keeping the best total.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Profile:
    """Weights of one NAB application profile."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


@dataclass(frozen=True, slots=True)
class Labels:
    """One file's labels as row indices.

    Attributes:
        n_rows: Rows in the file.
        windows: (first row, last row) of each anomaly window, inclusive, in time order.
    """

    n_rows: int
    windows: tuple[tuple[int, int], ...]

    @property
    def probation(self) -> int:
        """Rows at the start that are never scored."""
        return min(math.floor(0.15 * self.n_rows), 750)


def sigma(y: float) -> float:
    """NAB's scaled sigmoid."""
    return -1.0 if y > 3.0 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def window_rows(timestamps: np.ndarray, windows: Sequence[tuple[str, str]]) -> tuple[
        tuple[int, int], ...]:
    """Row ranges of windows given by their first and last timestamps (inclusive)."""
    out = []
    for start, end in windows:
        left = int(np.searchsorted(timestamps, np.datetime64(start), side="left"))
        right = int(np.searchsorted(timestamps, np.datetime64(end), side="right")) - 1
        if right >= left:
            out.append((left, right))
    return tuple(out)


def _tp_credit(i: int, window: tuple[int, int], profile: Profile) -> float:
    left, right = window
    width = right - left + 1
    return profile.a_tp * sigma(-(right - i + 1) / width) / sigma(-1.0)


def _fp_cost(i: int, labels: Labels, profile: Profile) -> float:
    previous = [w for w in labels.windows if w[1] < i]
    if not previous:
        return -profile.a_fp
    left, right = previous[-1]
    width = right - left + 1
    return profile.a_fp * sigma(abs(i - right) / max(width - 1, 1))


def _window_of(labels: Labels) -> np.ndarray:
    """Per row, the index of the window holding it, or -1."""
    owner = np.full(labels.n_rows, -1, dtype=np.int64)
    for k, (left, right) in enumerate(labels.windows):
        owner[left:right + 1] = k
    return owner


def score_file(detections: np.ndarray, labels: Labels, profile: Profile) -> float:
    """The raw NAB score of one file's detections (a boolean per row)."""
    owner = _window_of(labels)
    total = 0.0
    first_hit: dict[int, int] = {}
    for i in np.flatnonzero(detections).tolist():
        if i < labels.probation:
            continue
        k = int(owner[i])
        if k >= 0:
            first_hit.setdefault(k, i)
        else:
            total += _fp_cost(i, labels, profile)
    for k, window in enumerate(labels.windows):
        total += _tp_credit(first_hit[k], window, profile) if k in first_hit else -profile.a_fn
    return total


def _events(scores: np.ndarray, labels: Labels, profile: Profile) -> tuple[
        np.ndarray, np.ndarray, float]:
    """How a file's raw score changes as the threshold falls: (threshold, change), and the
    score when nothing is detected.

    A false positive adds its cost once its row's score reaches the threshold. A window's
    credit follows the earliest row whose score reaches the threshold: it changes only at the
    window's running maxima (its records), from -A_FN to the credit of the last record, then to
    the credit of each earlier record.
    """
    owner = _window_of(labels)
    start = labels.probation
    values: list[float] = []
    deltas: list[float] = []
    fp_rows = np.flatnonzero(owner[start:] < 0) + start
    values.extend(scores[fp_rows].tolist())
    deltas.extend(_fp_cost(int(i), labels, profile) for i in fp_rows)
    for window in labels.windows:
        left = max(window[0], start)
        rows = np.arange(left, window[1] + 1)
        if rows.size == 0:
            continue  # a window inside the probationary period can only be missed
        records: list[tuple[float, int]] = []
        best = -math.inf
        for row in rows.tolist():
            if scores[row] > best:
                best = float(scores[row])
                records.append((best, row))
        previous = -profile.a_fn
        for value, row in reversed(records):
            credit = _tp_credit(row, window, profile)
            values.append(value)
            deltas.append(credit - previous)
            previous = credit
    base = -profile.a_fn * len(labels.windows)
    return np.asarray(values, dtype=float), np.asarray(deltas, dtype=float), base


@dataclass(frozen=True, slots=True)
class SweepResult:
    """The best threshold of a profile over a corpus."""

    profile: Profile
    threshold: float
    raw: float
    normalised: float


def normalise(raw: float, n_windows: int, profile: Profile) -> float:
    """``100 (raw - null) / (perfect - null)``."""
    perfect, null = n_windows * profile.a_tp, -n_windows * profile.a_fn
    return 100.0 * (raw - null) / (perfect - null)


def sweep(corpus: Sequence[tuple[np.ndarray, Labels]], profile: Profile) -> SweepResult:
    """Choose the threshold with the best total over the corpus, trying every distinct score.

    Args:
        corpus: Per file, (scores per row, labels).
        profile: The weights.
    """
    values, deltas, base = [], [], 0.0
    n_windows = 0
    for scores, labels in corpus:
        v, d, b = _events(np.asarray(scores, dtype=float), labels, profile)
        values.append(v)
        deltas.append(d)
        base += b
        n_windows += len(labels.windows)
    v = np.concatenate(values) if values else np.array([])
    d = np.concatenate(deltas) if deltas else np.array([])
    # A threshold of t detects every event with value >= t: sort descending and sum by value.
    order = np.argsort(-v, kind="stable")
    v, d = v[order], d[order]
    distinct, first = np.unique(-v, return_index=True)
    sums = np.add.reduceat(d, first) if d.size else np.array([])
    totals = base + np.cumsum(sums)
    if totals.size == 0 or totals.max() <= base:
        # Detecting nothing is best: any threshold above every score.
        threshold, raw = (float(v.max()) + 1.0 if v.size else 1.0), base
    else:
        k = int(np.argmax(totals))
        threshold, raw = float(-distinct[k]), float(totals[k])
    return SweepResult(profile, threshold, raw, normalise(raw, n_windows, profile))
