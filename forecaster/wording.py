"""Wording: how durations, times, values and the reasons of answers are written for people.

The engine computes numbers; the sentences a person reads about them (an answer's ``reason``, an
anomaly's ``detail``, the spans in the text views) are phrased here, one implementation per kind
of phrase. Stdlib only, and nothing of the engine is imported: the engine's objects are read
through the small protocols below, so any module may phrase with it.

Hours or days. Three views write a span in whole hours, then in days, with their own unit and
switch point: a reason (``14 h``, ``14.0 days``, from 36 hours), the text view's times relative
to now (``14 h``, ``14.0 d``, from 36 hours) and an anomaly's windows (``12 h``, ``7 d``, with no
trailing zeros, from 48 hours). They share :func:`hours_or_days` and differ by its parameters.
:func:`spoken_duration` (``40 s``, ``5 min``, ``1.5 h``, ``3.4 days``) is finer, for how long a
feed has been silent, and :func:`format_duration` is the compact ``1d12h`` of policy files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

_ACTION_PHRASE = {"scale_out": "scaling out", "retrain": "retraining", "rollback": "a rollback",
                  "investigate": "an investigation"}
_METRIC_PHRASE = {"latency_p50_ms": "p50 latency", "latency_p95_ms": "p95 latency",
                  "latency_p99_ms": "p99 latency", "ttft_p95_ms": "p95 time to first token",
                  "error_rate": "error rate", "requests_per_s": "demand",
                  "tokens_per_s": "token throughput", "quality_score": "quality score",
                  "negative_feedback_rate": "negative feedback"}


class Rule(Protocol):
    """What a reason says of a policy (a :class:`forecaster.policies.Policy` is one)."""

    @property
    def limit(self) -> float: ...

    @property
    def direction(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def lead_time(self) -> timedelta: ...


class Dated(Protocol):
    """A precursor as a reason lists it (an ``intervention.Evidence`` is one)."""

    @property
    def ts(self) -> datetime: ...

    @property
    def detail(self) -> str: ...


class Feed(Protocol):
    """How fresh a series' data is (an ``intervention.Freshness`` is one)."""

    @property
    def last_point(self) -> datetime: ...

    @property
    def interval(self) -> timedelta | None: ...

    @property
    def stale_after(self) -> timedelta: ...

    @property
    def by_policy(self) -> bool: ...

    @property
    def age(self) -> timedelta: ...


# Durations and times


def format_duration(value: timedelta) -> str:
    """36 hours -> ``"1d12h"``; the inverse of :func:`forecaster.policies.parse_duration`.

    Whole seconds only (a fraction is dropped); zero and negative spans are ``"0s"``.
    """
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def hours_or_days(delta: timedelta, *, day_unit: str = "days", days_from: float = 36.0,
                  exact: bool = False) -> str:
    """A span in hours below ``days_from`` hours, else in days: ``14 h``, ``14.0 days``.

    Args:
        delta: The span; a negative one is written as it is (``-3 h``).
        day_unit: The word after the days (``days`` in reasons, ``d`` in tables).
        days_from: Hours from which the span is written in days.
        exact: Write both without trailing zeros (``1.5 h``, ``7 d``, ``%g``) instead of whole
            hours and days to one decimal.
    """
    return _hours_or_days(delta.total_seconds(), day_unit=day_unit, days_from=days_from,
                          exact=exact)


def _hours_or_days(seconds: float, *, day_unit: str = "days", days_from: float = 36.0,
                   exact: bool = False) -> str:
    # Days are hours / 24, not seconds / 86400 as in spoken_duration: the two round apart at
    # one decimal for some spans (1,213,920 s: 14.0 vs 14.1 days), and each caller keeps the
    # text it always wrote.
    hours = seconds / 3600
    if hours < days_from:
        return f"{hours:g} h" if exact else f"{hours:.0f} h"
    return f"{hours / 24:g} {day_unit}" if exact else f"{hours / 24:.1f} {day_unit}"


def relative_time(ts: datetime | None, now: datetime) -> str:
    """A time as seen from ``now`` in a table: ``-`` when absent, ``now`` when less than half an
    hour ahead (or past), else ``14 h`` or ``14.0 d`` ahead."""
    if ts is None:
        return "-"
    seconds = (ts - now).total_seconds()
    if seconds / 3600 < 0.5:
        return "now"
    return _hours_or_days(seconds, day_unit="d")


def spoken_duration(delta: timedelta) -> str:
    """A duration as a person says it: 40 s, 5 min, 1 h, 1.5 h, 6 h, 3.4 days.

    Below 10 hours a fraction of an hour shows to one decimal; from 36 hours it is days to one
    decimal (of ``seconds / 86400``, as this phrase always was; see :func:`hours_or_days`).
    """
    seconds = delta.total_seconds()
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        hours = seconds / 3600
        return f"{hours:.1f} h" if hours < 10 and hours != round(hours) else f"{hours:.0f} h"
    return f"{seconds / 86400:.1f} days"


def clock_time(ts: datetime) -> str:
    """A time in a reason: ``Wed 25 Nov 23:55 UTC``."""
    return ts.strftime("%a %d %b %H:%M UTC")


# Values and trends


def metric_value(value: float, metric: str) -> str:
    """A value in its metric's unit, read from the name's suffix: ``1,500 ms``, ``5.0%``,
    ``120/s``; three significant digits otherwise."""
    if metric.endswith("_ms"):
        return f"{value:,.0f} ms"
    if metric.endswith("_rate"):
        return f"{value * 100:.1f}%"
    if metric.endswith("_per_s"):
        return f"{value:,.0f}/s"
    return f"{value:.3g}"


def metric_name(metric: str) -> str:
    """A metric as a sentence names it: ``p95 latency``; an unknown one with spaces."""
    return _METRIC_PHRASE.get(metric, metric.replace("_", " "))


def action_phrase(action: str) -> str:
    """An action as a sentence names it: ``scaling out``; an unknown one with spaces."""
    return _ACTION_PHRASE.get(action, action.replace("_", " "))


def trend_phrase(metric: str, slope_per_day: float, level: float, *, log_scale: bool) -> str:
    """How a metric moves: ``p95 latency rises about 4.7% a day``, ``... is flat``.

    Args:
        metric: The metric's name.
        slope_per_day: Change of its daily mean per day, on its own scale.
        level: Its recent mean, on its own scale.
        log_scale: Whether it is forecast on a log scale: then the change is a percentage of
            the level (a flat one below 0.5% a day); else in its own units (percentage points
            for a ``_rate``), flat below 0.5% of the level.
    """
    name = metric_name(metric)
    slope = slope_per_day
    if log_scale and level > 0:
        pct = slope / level * 100
        if abs(pct) < 0.5:
            return f"{name} is flat"
        return f"{name} {'rises' if pct > 0 else 'falls'} about {abs(pct):.1f}% a day"
    scale = 100.0 if metric.endswith("_rate") else 1.0
    unit = " points" if scale == 100.0 else ""
    if abs(slope) * scale < 1e-3 * max(abs(level) * scale, 1e-9) * 5:
        return f"{name} is flat"
    return (f"{name} {'rises' if slope > 0 else 'falls'} about "
            f"{abs(slope) * scale:.3g}{unit} a day")


# Reasons of answers


def _past(direction: str) -> str:
    return ">" if direction == "above" else "<"


def precursor_sentence(evidence: Sequence[Dated]) -> str:
    """The sentence a reason ends with when precursors raised its urgency (the first three
    listed), with its leading space; empty without any."""
    if not evidence:
        return ""
    listed = ", ".join(f"{e.detail} at {clock_time(e.ts)}" for e in evidence[:3])
    more = f" and {len(evidence) - 3} more" if len(evidence) > 3 else ""
    return f" Precursor anomalies: {listed}{more}."


def breached_reason(metric: str, trend: str, rule: Rule, value: float, at: datetime,
                    evidence: Sequence[Dated] = ()) -> str:
    """The reason of a series whose latest value is past its limit.

    Args:
        metric: The series' metric.
        trend: Its :func:`trend_phrase`.
        rule: Its policy.
        value: The latest value.
        at: When it was observed.
        evidence: Its fresh precursors.
    """
    return (f"{trend} and is past its limit now: {metric_value(value, metric)}"
            f" {_past(rule.direction)} {metric_value(rule.limit, metric)} "
            f"(at {clock_time(at)}); act now ({action_phrase(rule.action)})."
            + precursor_sentence(evidence))


def forecast_reason(metric: str, trend: str, rule: Rule, *, now: datetime, horizon: timedelta,
                    eta_p10: datetime | None, eta_p50: datetime | None,
                    eta_p90: datetime | None, p_breach: float, decision: str,
                    act_by: datetime | None, close: tuple[float, float] | None = None,
                    paths: int = 0, evidence: Sequence[Dated] = ()) -> str:
    """The reason of a forecast answer: the trend, when (or whether) the limit is crossed, what
    to do by when, how sure the decision is, and the precursors.

    Args:
        metric: The series' metric.
        trend: Its :func:`trend_phrase`.
        rule: Its policy (limit, direction, action and its lead time).
        now: The time the spans are counted from.
        horizon: How far the forecast reaches from ``now``.
        eta_p10: First-passage quantiles; ``eta_p10`` is present whenever ``eta_p50`` is.
        eta_p50: See ``eta_p10``.
        eta_p90: See ``eta_p10``; absent means beyond the horizon.
        p_breach: Probability of a crossing within the horizon.
        decision: ``act_now``, ``schedule`` (with ``act_by``), ``watch`` or ``ok``.
        act_by: When to act by.
        close: The threshold ``p_breach`` is too close to and its standard error, if any.
        paths: How many sample paths were drawn (said with ``close``).
        evidence: Fresh precursors of the series.

    Raises:
        ValueError: ``eta_p50`` without ``eta_p10``, or ``schedule`` without ``act_by``.
    """
    limit_txt = metric_value(rule.limit, metric)
    within = hours_or_days(horizon)
    if eta_p50 is not None:
        if eta_p10 is None:
            raise ValueError(f"eta_p50 {eta_p50} without an eta_p10: the quantiles come in "
                             "order, p10 first")
        span = (f" (80%: {hours_or_days(eta_p10 - now)} to "
                f"{hours_or_days(eta_p90 - now) if eta_p90 is not None else 'beyond ' + within})")
        crossing = f"crosses {limit_txt} in {hours_or_days(eta_p50 - now)}{span}"
    elif eta_p10 is not None:
        crossing = (f"may cross {limit_txt} within {within} (p={p_breach:.2f}; "
                    f"earliest in {hours_or_days(eta_p10 - now)})")
    else:
        crossing = (f"stays {'below' if rule.direction == 'above' else 'above'} "
                    f"{limit_txt} for {within} (p={p_breach:.2f})")
    action, lead = action_phrase(rule.action), format_duration(rule.lead_time)
    if decision == "act_now":
        todo = f"{action} takes {lead}: act now"
    elif decision == "schedule":
        if act_by is None:
            raise ValueError("decision 'schedule' without an act_by time: a schedule says "
                             "by when")
        todo = f"{action} takes {lead}: act by {clock_time(act_by)}"
    else:
        todo = ""
    reason = f"{trend} and {crossing}" + (f"; {todo}" if todo else "") + "."
    if close is not None:
        threshold, error = close
        reason += (f" p={p_breach:.3f} +- {error:.3f} ({paths:,} paths): too close to "
                   f"{threshold:.2f} to be sure of this decision.")
    return reason + precursor_sentence(evidence)


def silence_phrase(feed: Feed) -> str:
    """Since when a feed is silent, for how long, and against what: ``no data since Wed 25 Nov
    23:55 UTC (3.4 days; it usually reports every 5 min)``."""
    if feed.by_policy:
        usual = f"its policy calls it stale after {spoken_duration(feed.stale_after)}"
    elif feed.interval is not None:
        usual = f"it usually reports every {spoken_duration(feed.interval)}"
    else:
        usual = "a single point was ever seen"
    return f"no data since {clock_time(feed.last_point)} ({spoken_duration(feed.age)}; {usual})"


def stale_reason(metric: str, rule: Rule, value: float, feed: Feed,
                 evidence: Sequence[Dated] = ()) -> str:
    """The reason of a ``stale`` answer: a monitoring problem, with the last value.

    Args:
        metric: The series' metric.
        rule: Its policy.
        value: Its last value.
        feed: Its freshness.
        evidence: Its precursors.
    """
    return (f"{silence_phrase(feed)}: a monitoring problem, not a forecast; last value "
            f"{metric_value(value, metric)} (limit {metric_value(rule.limit, metric)})."
            + precursor_sentence(evidence))


def stale_breached_reason(metric: str, rule: Rule, value: float, at: datetime, feed: Feed,
                          evidence: Sequence[Dated] = ()) -> str:
    """The reason of a series past its limit at its last point whose feed then stopped.

    Args:
        metric: The series' metric.
        rule: Its policy.
        value: Its last value.
        at: When that value was observed.
        feed: Its freshness.
        evidence: Its precursors.
    """
    return (f"past its limit at its last point: {metric_value(value, metric)} "
            f"{_past(rule.direction)} {metric_value(rule.limit, metric)} (at "
            f"{clock_time(at)}), and {silence_phrase(feed)}; act now "
            f"({action_phrase(rule.action)}) and restore the feed."
            + precursor_sentence(evidence))


# Anomaly details


def span_of_rows(rows: int, step: timedelta) -> str:
    """How long ``rows`` steps of ``step`` last, as an anomaly's detail names a window:
    ``30 min`` is ``0.5 h``, ``12 h``, ``7 d`` (days from 48 hours)."""
    return _hours_or_days(rows * step.total_seconds(), day_unit="d", days_from=48.0, exact=True)


def _ratio(log_ratio: float) -> str:
    # a spread that was ~0 before gives an enormous ratio: say so without overflowing
    return f"{math.exp(min(log_ratio, 50.0)):.2g}"


def _rarity(value: float) -> str:
    # `value` is -log10 of a tail share; clamped so that a series that drops by hundreds of its
    # standard deviations is phrased, not an OverflowError that fails the series' whole scan
    return f"{100 * (1 - 10 ** -min(max(value, -300.0), 300.0)):.2f}"


def feature_phrase(name: str, value: float, step: timedelta, *, window: int, long_window: int,
                   short: int) -> str:
    """What an anomaly feature's value says: ``+4.2 sd from its last 12 h``.

    Args:
        name: The feature (``forecaster.engine.anomaly.FEATURES``); an unknown one is written
            as its name and value.
        value: Its value.
        step: The series' sampling interval.
        window: Rows of the trailing window the features compare with.
        long_window: Rows of the longer window.
        short: Rows of the recent window.
    """
    win, long, recent = (span_of_rows(window, step), span_of_rows(long_window, step),
                         span_of_rows(short, step))
    medium = span_of_rows(12 * short, step)
    phrases = {
        "level": f"{value:+.1f} sd from its last {win}",
        "step": f"a jump of {value:+.1f} sd",
        "spread": f"{recent} spread x{_ratio(value)} its last {win}'s",
        "shift": f"{recent} mean {value:+.1f} sd from its last {win}",
        "long_level": f"{value:+.1f} sd from its last {long}",
        "extreme": f"rarer than {_rarity(value)}% of values seen",
        "long_spread": f"{medium} spread x{_ratio(value)} its last {long}'s",
        "drift": f"{medium} mean {value:+.1f} sd from its last {long}",
        "seasonal": f"{value:+.1f} sd from a day earlier",
        "extreme_step": f"a jump rarer than {_rarity(value)}% seen",
        "seasonal_spread": f"day-on-day spread x{_ratio(value)}",
    }
    return phrases.get(name, f"{name} {value:+.2f}")


def anomaly_detail(metric: str, phrases: Sequence[str]) -> str:
    """An anomaly's detail: its metric, then what drove it (``;``-separated)."""
    words = "; ".join(phrases)
    return f"{metric} {words}" if words else metric


def corroborated_detail(detail: str, metrics: Sequence[str]) -> str:
    """A precursor's detail with the metrics that corroborate it."""
    return f"{detail} (with {', '.join(metrics)})"
