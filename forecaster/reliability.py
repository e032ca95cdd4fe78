"""Self-scoring: how right the published estimates proved, and how much to widen the next ones.

Every published estimate is kept. Each refresh first scores, once each, the estimates whose
horizon has passed (``Store.score_estimates``: the first point past the limit after the
estimate's as-of time, or none) and reads back, per series over ``reliability_window``, the
coverage of ``[eta_p10, eta_p90]``, the ETA error, the Brier score of ``p_breach``, false alarms
and misses (``Store.reliability``).

Widening. ``[eta_p10, eta_p90]`` is meant to hold 80% of crossings. When a series' scored
crossings (at least ``min_crossings`` of them) were covered less often, say a share ``c``, the
sample paths of its next answers are drawn with their standard deviation multiplied by

    factor = Z80 / z(c),   z(c) = the standard normal quantile of (1 + c) / 2,

the factor that would have turned an interval covering ``c`` of a Gaussian into one covering
80%, if the forecast's spread was too small by a constant factor. It is never below 1 (intervals
that proved too wide are left alone) and at most ``MAX_FACTOR``.
"""

from __future__ import annotations

from statistics import NormalDist

from forecaster.intervention import Z80

NOMINAL = 0.8
MAX_FACTOR = 3.0


def widen_factor(coverage: float | None, crossings: int, min_crossings: int) -> float:
    """The factor for a series' spread (see the module docstring); 1 when there is too little
    evidence or the coverage is at least nominal."""
    if coverage is None or crossings < min_crossings or coverage >= NOMINAL:
        return 1.0
    z = NormalDist().inv_cdf((1.0 + max(coverage, 0.01)) / 2.0)
    return min(MAX_FACTOR, Z80 / z)
