"""The wording of durations, values and reasons.

Every expected string below was produced by the functions these replace, run before they moved
here (``intervention._fmt_days``, ``_fmt_span``, ``_fmt_value``, ``_trend_phrase``, ``_when``,
``_precursor_sentence`` and the reason lines of ``time_to_intervention`` and
``stale_intervention``; ``summary._rel``; ``precursors._span`` and ``_phrase``;
``policies.format_duration``): the texts did not change when they moved.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from forecaster import wording
from forecaster.policies import Policy, parse_duration
from forecaster.wording import (
    anomaly_detail,
    breached_reason,
    clock_time,
    corroborated_detail,
    feature_phrase,
    forecast_reason,
    format_duration,
    hours_or_days,
    metric_value,
    precursor_sentence,
    relative_time,
    span_of_rows,
    spoken_duration,
    stale_breached_reason,
    stale_reason,
    trend_phrase,
)

NOW = datetime(2026, 11, 26, 9, 0)
LATENCY = Policy("latency_p95_ms", 1500.0, "above", "scale_out", timedelta(hours=2))
ERRORS = Policy("error_rate", 0.05, "above", "rollback", timedelta(minutes=30))
TREND = "p95 latency rises about 4.7% a day"
LAST = datetime(2026, 11, 25, 23, 55)


@dataclass(frozen=True)
class Ev:
    ts: datetime
    detail: str


@dataclass(frozen=True)
class Fresh:
    last_point: datetime
    interval: timedelta | None
    stale_after: timedelta
    by_policy: bool
    age: timedelta


BURST = (Ev(datetime(2026, 11, 25, 23, 0), "error-rate burst"),)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


# seconds -> (hours_or_days, spoken_duration, relative_time, format_duration)
DURATIONS = {
    0: ("0 h", "0 s", "now", "0s"),
    0.6: ("0 h", "1 s", "now", "0s"),
    45: ("0 h", "45 s", "now", "45s"),
    59.5: ("0 h", "60 s", "now", "59s"),
    89.5: ("0 h", "90 s", "now", "1m29s"),
    90: ("0 h", "2 min", "now", "1m30s"),
    1799: ("0 h", "30 min", "now", "29m59s"),
    1800: ("0 h", "30 min", "0 h", "30m"),
    1801: ("1 h", "30 min", "1 h", "30m1s"),
    3599: ("1 h", "60 min", "1 h", "59m59s"),
    3600: ("1 h", "1 h", "1 h", "1h"),
    5400: ("2 h", "1.5 h", "2 h", "1h30m"),  # 90 minutes
    9000: ("2 h", "2.5 h", "2 h", "2h30m"),
    35820: ("10 h", "9.9 h", "10 h", "9h57m"),
    35999: ("10 h", "10.0 h", "10 h", "9h59m59s"),
    36000: ("10 h", "10 h", "10 h", "10h"),
    127800: ("36 h", "36 h", "36 h", "1d11h30m"),  # 35.5 h
    129599.999999: ("36 h", "36 h", "36 h", "1d11h59m59s"),
    129600: ("1.5 days", "1.5 days", "1.5 d", "1d12h"),  # 36 hours
    172800: ("2.0 days", "2.0 days", "2.0 d", "2d"),
    1209600: ("14.0 days", "14.0 days", "14.0 d", "14d"),  # 14 days
    1213920: ("14.0 days", "14.1 days", "14.0 d", "14d1h12m"),  # 14.05 days: see below
    34560000: ("400.0 days", "400.0 days", "400.0 d", "400d"),
    # past spans
    -0.4: ("-0 h", "-0 s", "now", "0s"),
    -3600: ("-1 h", "-3600 s", "now", "0s"),
    -5400: ("-2 h", "-5400 s", "now", "0s"),
    -129600: ("-36 h", "-129600 s", "now", "0s"),
    -1209600: ("-336 h", "-1209600 s", "now", "0s"),
}


@pytest.mark.parametrize(("seconds", "expected"), DURATIONS.items())
def test_durations_read_as_they_always_did(seconds: float,
                                           expected: tuple[str, str, str, str]) -> None:
    delta = s(seconds)
    assert (hours_or_days(delta), spoken_duration(delta), relative_time(NOW + delta, NOW),
            format_duration(delta)) == expected


def test_an_absent_time_is_a_dash() -> None:
    assert relative_time(None, NOW) == "-"


def test_days_from_hours_and_from_seconds_keep_their_own_rounding() -> None:
    # 14.05 days: hours / 24 is just below 14.05 and seconds / 86400 just above it. The reason
    # and the text view always wrote the first, the stale reason the second.
    delta = s(1213920)
    assert hours_or_days(delta) == "14.0 days" and relative_time(NOW + delta, NOW) == "14.0 d"
    assert spoken_duration(delta) == "14.1 days"


def test_hours_or_days_parameters() -> None:
    assert hours_or_days(s(36 * 3600), day_unit="d") == "1.5 d"
    assert hours_or_days(s(40 * 3600), days_from=48.0) == "40 h"
    assert hours_or_days(s(5400), exact=True) == "1.5 h"
    assert hours_or_days(s(60 * 3600), exact=True, day_unit="d") == "2.5 d"


@pytest.mark.parametrize(("rows", "step", "expected"), [
    (0, 300, "0 h"), (6, 60, "0.1 h"), (6, 300, "0.5 h"), (7, 300, "0.583333 h"),
    (12, 300, "1 h"), (6, 37.5, "0.0625 h"), (144, 300, "12 h"), (2016, 60, "33.6 h"),
    (72, 3600, "3 d"), (576, 300, "2 d"), (2016, 300, "7 d"), (2016, 3600, "84 d"),
])
def test_anomaly_windows_read_as_they_always_did(rows: int, step: float, expected: str) -> None:
    assert span_of_rows(rows, s(step)) == expected


def test_compact_durations_round_trip() -> None:
    for seconds in (1, 59, 60, 3599, 3600, 5400, 86399, 86400, 129600, 14 * 86400 + 61):
        assert parse_duration(format_duration(s(seconds))) == s(seconds)
    assert format_duration(timedelta(weeks=2)) == "14d"
    assert format_duration(s(1.9)) == "1s"  # whole seconds only


@pytest.mark.parametrize(("value", "metric", "expected"), [
    (1500.0, "latency_p95_ms", "1,500 ms"), (1499.5, "latency_p95_ms", "1,500 ms"),
    (1234567.891, "latency_p95_ms", "1,234,568 ms"), (0.05, "error_rate", "5.0%"),
    (0.0004, "error_rate", "0.0%"), (1500.0, "requests_per_s", "1,500/s"),
    (999.5, "requests_per_s", "1,000/s"), (1500.0, "queue_depth", "1.5e+03"),
    (0.0004, "queue_depth", "0.0004"), (999.5, "queue_depth", "1e+03"),
])
def test_values_read_in_their_units(value: float, metric: str, expected: str) -> None:
    assert metric_value(value, metric) == expected


@pytest.mark.parametrize(("metric", "slope", "level", "log_scale", "expected"), [
    ("latency_p95_ms", 47.0, 1000.0, True, "p95 latency rises about 4.7% a day"),
    ("tokens_per_s", 0.0, 0.256, True, "token throughput is flat"),
    ("latency_p95_ms", -1e-9, 0.0, True, "p95 latency falls about 1e-09 a day"),
    ("ttft_p95_ms", 1e-9, -1.0, True, "p95 time to first token is flat"),
    ("error_rate", 0.0042, 0.02, False, "error rate rises about 0.42 points a day"),
    ("error_rate", 1e-9, 1e-12, False, "error rate rises about 1e-07 points a day"),
    ("queue_depth", -3.0, 120.0, False, "queue depth falls about 3 a day"),
    ("gpu_util", -1.9743248194775074, -1.0, False, "gpu util falls about 1.97 a day"),
    ("gpu_util", 0.0, 223.9, False, "gpu util is flat"),
])
def test_trends_read_as_they_always_did(metric: str, slope: float, level: float,
                                        log_scale: bool, expected: str) -> None:
    assert trend_phrase(metric, slope, level, log_scale=log_scale) == expected


def test_names_of_metrics_and_actions() -> None:
    assert wording.metric_name("requests_per_s") == "demand"
    assert wording.metric_name("cache_hit_rate") == "cache hit rate"
    assert wording.action_phrase("rollback") == "a rollback"
    assert wording.action_phrase("drain_pool") == "drain pool"
    assert clock_time(LAST) == "Wed 25 Nov 23:55 UTC"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("level", float("-inf"), "-inf sd from its last 12 h"),
    ("step", 19.112, "a jump of +19.1 sd"),
    ("spread", 60.0, "0.5 h spread x5.2e+21 its last 12 h's"),
    ("shift", -4.329, "0.5 h mean -4.3 sd from its last 12 h"),
    ("long_level", 50.0, "+50.0 sd from its last 7 d"),
    ("extreme", -16.625, "rarer than -4216965034285822464.00% of values seen"),
    ("long_spread", 19.29, "6 h spread x2.4e+08 its last 7 d's"),
    ("drift", 50.0, "6 h mean +50.0 sd from its last 7 d"),
    ("seasonal", -8.22, "-8.2 sd from a day earlier"),
    ("extreme_step", float("inf"), "a jump rarer than 100.00% seen"),
    ("seasonal_spread", 1e-09, "day-on-day spread x1"),
    ("mystery_feature", -5.016, "mystery_feature -5.02"),
])
def test_anomaly_features_read_as_they_always_did(name: str, value: float,
                                                  expected: str) -> None:
    # the default windows (144, 2016 and 6 rows) at a 5-minute step
    assert feature_phrase(name, value, s(300), window=144, long_window=2016,
                          short=6) == expected


def test_anomaly_details() -> None:
    assert anomaly_detail("error_rate", []) == "error_rate"
    assert anomaly_detail("error_rate", ["a jump of +4.2 sd", "+3.6 sd from its last 12 h"]) \
        == "error_rate a jump of +4.2 sd; +3.6 sd from its last 12 h"
    assert corroborated_detail("ttft_p95_ms +3.1 sd from a day earlier",
                               ("requests_per_s", "tokens_per_s")) \
        == "ttft_p95_ms +3.1 sd from a day earlier (with requests_per_s, tokens_per_s)"


def test_precursors_are_listed_three_at_most() -> None:
    assert precursor_sentence(()) == ""
    assert precursor_sentence((Ev(LAST, "detail 0"),)) \
        == " Precursor anomalies: detail 0 at Wed 25 Nov 23:55 UTC."
    four = tuple(Ev(LAST - timedelta(minutes=7 * i), f"detail {i}") for i in range(4))
    assert precursor_sentence(four) == (
        " Precursor anomalies: detail 0 at Wed 25 Nov 23:55 UTC, detail 1 at Wed 25 Nov 23:48 "
        "UTC, detail 2 at Wed 25 Nov 23:41 UTC and 1 more.")


def reason(**changes: object) -> str:
    args: dict[str, object] = dict(
        now=NOW, horizon=timedelta(days=14), eta_p10=None, eta_p50=None, eta_p90=None,
        p_breach=0.0, decision="ok", act_by=None)
    args.update(changes)
    return forecast_reason("latency_p95_ms", TREND, LATENCY, **args)  # type: ignore[arg-type]


def test_the_reason_of_a_scheduled_action() -> None:
    assert reason(eta_p10=NOW + timedelta(days=4, hours=6),
                  eta_p50=NOW + timedelta(days=4, hours=18, minutes=30),
                  eta_p90=NOW + timedelta(days=6), p_breach=0.91, decision="schedule",
                  act_by=NOW + timedelta(days=4, hours=4)) == (
        "p95 latency rises about 4.7% a day and crosses 1,500 ms in 4.8 days (80%: 4.2 days to "
        "6.0 days); scaling out takes 2h: act by Mon 30 Nov 13:00 UTC.")


def test_the_reason_of_an_action_due_now_with_precursors() -> None:
    assert reason(eta_p10=NOW, eta_p50=NOW + timedelta(minutes=30), p_breach=0.62,
                  decision="act_now", act_by=NOW - timedelta(hours=2), evidence=BURST) == (
        "p95 latency rises about 4.7% a day and crosses 1,500 ms in 0 h (80%: 0 h to beyond "
        "14.0 days); scaling out takes 2h: act now. Precursor anomalies: error-rate burst at "
        "Wed 25 Nov 23:00 UTC.")


def test_the_reason_of_a_possible_crossing() -> None:
    assert reason(eta_p10=NOW + timedelta(days=13, hours=12), p_breach=0.13,
                  decision="watch") == (
        "p95 latency rises about 4.7% a day and may cross 1,500 ms within 14.0 days (p=0.13; "
        "earliest in 13.5 days).")


def test_the_reason_of_a_decision_too_close_to_call() -> None:
    assert reason(eta_p10=NOW + timedelta(days=1), p_breach=0.4871, decision="watch",
                  close=(0.5, 0.0112), paths=16000) == (
        "p95 latency rises about 4.7% a day and may cross 1,500 ms within 14.0 days (p=0.49; "
        "earliest in 24 h). p=0.487 +- 0.011 (16,000 paths): too close to 0.50 to be sure of "
        "this decision.")


def test_the_reason_of_a_series_that_stays_clear() -> None:
    assert reason(horizon=timedelta(hours=20)) == (
        "p95 latency rises about 4.7% a day and stays below 1,500 ms for 20 h (p=0.00).")


def test_a_reason_refuses_what_cannot_be_said() -> None:
    with pytest.raises(ValueError, match="eta_p50 .* without an eta_p10"):
        reason(eta_p50=NOW + timedelta(hours=3), p_breach=0.6, decision="watch")
    with pytest.raises(ValueError, match="'schedule' without an act_by"):
        reason(eta_p10=NOW, eta_p50=NOW, p_breach=0.9, decision="schedule")


def test_the_reason_of_a_breach() -> None:
    assert breached_reason("latency_p95_ms", TREND, LATENCY, 1612.4,
                           NOW - timedelta(hours=1), BURST) == (
        "p95 latency rises about 4.7% a day and is past its limit now: 1,612 ms > 1,500 ms (at "
        "Thu 26 Nov 08:00 UTC); act now (scaling out). Precursor anomalies: error-rate burst at "
        "Wed 25 Nov 23:00 UTC.")


def test_the_reasons_of_stale_series() -> None:
    usual = Fresh(LAST, timedelta(minutes=5), timedelta(minutes=30), False, NOW - LAST)
    assert stale_reason("error_rate", ERRORS, 0.031, usual) == (
        "no data since Wed 25 Nov 23:55 UTC (9.1 h; it usually reports every 5 min): a "
        "monitoring problem, not a forecast; last value 3.1% (limit 5.0%).")
    by_policy = Fresh(LAST, None, timedelta(hours=2), True, timedelta(hours=1, minutes=30))
    assert stale_breached_reason("error_rate", ERRORS, 0.07, LAST, by_policy, BURST) == (
        "past its limit at its last point: 7.0% > 5.0% (at Wed 25 Nov 23:55 UTC), and no data "
        "since Wed 25 Nov 23:55 UTC (1.5 h; its policy calls it stale after 2 h); act now (a "
        "rollback) and restore the feed. Precursor anomalies: error-rate burst at Wed 25 Nov "
        "23:00 UTC.")
    single = Fresh(LAST, None, timedelta(hours=1), False, timedelta(seconds=45))
    queue = Policy("queue_depth", 100.0, "below", "drain_pool", timedelta(hours=1))
    assert stale_reason("queue_depth", queue, 140.0, single) == (
        "no data since Wed 25 Nov 23:55 UTC (45 s; a single point was ever seen): a monitoring "
        "problem, not a forecast; last value 140 (limit 100).")


def test_wording_loads_neither_numpy_nor_the_engine() -> None:
    code = ("import sys, forecaster.wording; "
            "print(sorted(m for m in sys.modules if m == 'numpy' or m.startswith('forecaster.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['forecaster.clock', 'forecaster.wording']"


def test_feature_phrases_of_extreme_values_never_overflow() -> None:
    """A flat series that drops by hundreds of standard deviations once made ``10 ** -value``
    overflow and failed the series' whole anomaly scan; every phrase is written instead."""
    from forecaster.engine.anomaly import FEATURES

    for name in FEATURES:
        for value in (-1e6, -400.0, 400.0, 1e6):
            text = wording.feature_phrase(name, value, timedelta(minutes=5), window=144,
                                          long_window=2016, short=6)
            assert text
    assert wording.feature_phrase("extreme", 3.7, timedelta(minutes=5), window=144,
                                  long_window=2016, short=6) == "rarer than 99.98% of values seen"
