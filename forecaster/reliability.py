"""Self-scoring: how right the published estimates proved, and how much to widen the next ones.

Every published estimate is kept. Each refresh first scores, once each, the estimates whose
horizon has passed (``Store.score_estimates``: the first point past the limit after the
estimate's as-of time, or none) and reads back, per series over ``reliability_window``, the
coverage of ``[eta_p10, eta_p90]``, the ETA error, the Brier score of ``p_breach``, false alarms
and misses (``Store.reliability``).

Coverage with censoring. ``[eta_p10, eta_p90]`` is an 80% interval of the first-passage time
``T``, which is infinite (beyond the horizon) when no crossing comes. A crossing at ``x`` counts 1
when inside the interval and 0 outside. Without a crossing, only ``T > horizon`` is known; the
forecast's own distribution puts the share ``1 - p_breach`` beyond the horizon, and the part of
it inside the interval is ``max(0, 0.9 - max(p_breach, 0.1))``, so the estimate counts

    credit = max(0, 0.9 - max(p, 0.1)) / (1 - p)     (0 when p = 1),

the chance, under the forecast, that its interval holds ``T`` given ``T > horizon`` (the way
D-calibration counts censored cases: Haider et al., JMLR 21(85), 2020). The mean over all
estimates is 0.8 for a calibrated forecaster. Coverage over crossings alone (``coverage_crossed``)
is not: conditioning on a crossing removes the cases where "no crossing" was right, and a crossing
that was rightly called unlikely (``p_breach < 0.1``, no ``eta_p10``) counts as a miss.

Widening. ``[eta_p10, eta_p90]`` is meant to hold 80% of first-passage times. When a series'
scored estimates (with at least ``min_crossings`` crossings among them, so that the figure rests
on more than quiet days) covered less, a share ``c`` by the coverage above, the sample paths of
its next answers are drawn with their standard deviation multiplied by

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
LOW, HIGH = 0.1, 0.9  # the quantiles of eta_p10 and eta_p90


def interval_credit(p_breach: float, crossed: bool, covered: bool) -> float:
    """How much one estimate counts toward coverage (see the module docstring).

    Args:
        p_breach: The estimate's probability of a crossing within its horizon.
        crossed: Whether a crossing came within the horizon.
        covered: Whether that crossing fell inside ``[eta_p10, eta_p90]`` (ignored without one).
    """
    if crossed:
        return float(covered)
    if p_breach >= 1.0:
        return 0.0
    return max(0.0, HIGH - max(p_breach, LOW)) / (1.0 - p_breach)


def widen_factor(coverage: float | None, crossings: int, min_crossings: int) -> float:
    """The factor for a series' spread (see the module docstring); 1 when there is too little
    evidence or the coverage is at least nominal."""
    if coverage is None or crossings < min_crossings or coverage >= NOMINAL:
        return 1.0
    z = NormalDist().inv_cdf((1.0 + max(coverage, 0.01)) / 2.0)
    return min(MAX_FACTOR, Z80 / z)
