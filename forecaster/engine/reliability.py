"""Self-scoring: how right the published estimates proved.

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

Recalibration. Intervals that proved too narrow (or too wide), and probabilities that proved too
high or too low, are corrected together by a monotone map of the first-passage distribution
learned from the fleet's scored estimates (:mod:`forecaster.engine.calibration`): each published
estimate keeps its raw distribution, and every refresh fits the map on the estimates scored over
``reliability_window`` and answers with it.
"""

from __future__ import annotations

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
