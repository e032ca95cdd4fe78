"""Policies: per metric (optionally per service), the limit, the action and its lead time.

A policy file is TOML with one ``[[policy]]`` table per rule::

    [[policy]]
    metric = "latency_p95_ms"      # a name or a glob pattern (fnmatch)
    service = "code-*"             # optional; a name or glob; absent means every service
    limit = 1500
    direction = "above"            # or "below"
    action = "scale_out"           # scale_out, retrain, rollback, investigate, or your own word
    lead_time = "2h"               # how long the action takes: 30m, 6h, 1d, 1d12h
    freq = "1h"                    # forecast frequency (optional, default 1h)
    horizon = "14d"                # how far ahead to look (optional, default 14d)
    stale_after = "2h"             # no point for this long: the feed stopped, answer `stale`
                                   # (optional; default judged against the series' own
                                   # sampling interval, see Settings.stale_intervals)

For a series, the most specific matching rule wins: an exact service over a service pattern over
no service, then an exact metric over a metric pattern; among equals, the later rule in the file.
Rules from a file are added to the built-in defaults and win over them.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from forecaster.errors import ConfigError
from forecaster.names import NAME_RULE

DIRECTIONS = ("above", "below")
KNOWN_ACTIONS = ("scale_out", "retrain", "rollback", "investigate")
_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_KEYS = {"metric", "service", "limit", "direction", "action", "lead_time", "freq", "horizon",
         "stale_after"}
_ACTION = re.compile(r"[a-z][a-z0-9_\-]{0,39}")
_PATTERN = re.compile(r"[A-Za-z0-9_.\-*?\[\]]{1,200}")


@dataclass(frozen=True, slots=True)
class Policy:
    """One rule.

    Attributes:
        metric: Metric name or glob pattern.
        limit: The value that must not be crossed.
        direction: ``above`` (crossing upwards is bad) or ``below``.
        action: What crossing calls for.
        lead_time: How long that action takes.
        service: Service name or glob; None for every service.
        freq: Forecast frequency.
        horizon: How far ahead to forecast.
        stale_after: How long without a point makes the series ``stale``; None judges it
            against the series' own sampling interval (see ``Settings.stale_intervals``).
    """

    metric: str
    limit: float
    direction: str
    action: str
    lead_time: timedelta
    service: str | None = None
    freq: timedelta = timedelta(hours=1)
    horizon: timedelta = timedelta(days=14)
    stale_after: timedelta | None = None

    def matches(self, service: str, metric: str) -> bool:
        """Whether this rule applies to the series ``service:metric``."""
        if not fnmatch.fnmatchcase(metric, self.metric):
            return False
        return self.service is None or fnmatch.fnmatchcase(service, self.service)

    def specificity(self) -> tuple[int, int]:
        """Higher is more specific (service first, then metric)."""
        def level(pattern: str | None) -> int:
            if pattern is None:
                return 0
            return 1 if any(c in pattern for c in "*?[") else 2
        return level(self.service), level(self.metric)

    @property
    def steps(self) -> int:
        """Forecast steps in the horizon."""
        return max(1, int(self.horizon / self.freq))


def parse_duration(text: str) -> timedelta:
    """``"1d12h"`` -> 36 hours (written back by :func:`forecaster.wording.format_duration`).

    Raises:
        ValueError: not of the form NwNdNhNmNs (each part optional, at least one).
    """
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration such as 30m, 6h, 1d or 1d12h")
    w, d, h, m, s = (int(g) if g else 0 for g in match.groups())
    return timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=s)


def steps_per_day(step: timedelta) -> int:
    """How many steps of ``step`` make a day (the daily season), at least 1."""
    return max(1, round(timedelta(days=1) / step))


DEFAULT_POLICIES: tuple[Policy, ...] = (
    Policy("latency_p95_ms", 1500.0, "above", "scale_out", timedelta(hours=2)),
    Policy("latency_p99_ms", 3000.0, "above", "investigate", timedelta(hours=2)),
    Policy("ttft_p95_ms", 800.0, "above", "scale_out", timedelta(hours=2)),
    Policy("error_rate", 0.05, "above", "rollback", timedelta(minutes=30)),
    Policy("quality_score", 0.80, "below", "retrain", timedelta(hours=24)),
    Policy("negative_feedback_rate", 0.10, "above", "rollback", timedelta(hours=4)),
)


def _line_of(text: str, index: int, key: str | None) -> int:
    """1-based line of the ``index``-th [[policy]] table, or of ``key`` inside it."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("[[policy]]")]
    if index >= len(starts):
        return 1
    start = starts[index]
    end = starts[index + 1] if index + 1 < len(starts) else len(lines)
    if key is not None:
        for i in range(start, end):
            if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
                return i + 1
    return start + 1


def _policy_from(entry: dict[str, Any], where: Callable[[str | None], str]) -> Policy:
    def fail(key: str | None, problem: str) -> ConfigError:
        return ConfigError(f"{where(key)}: {problem}")

    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key {unknown[0]!r}; known: {', '.join(sorted(_KEYS))}")
    for key in ("metric", "limit", "direction", "action", "lead_time"):
        if key not in entry:
            raise fail(None, f"missing {key!r}")
    metric, service = entry["metric"], entry.get("service")
    for key, value in (("metric", metric), ("service", service)):
        if value is not None and (not isinstance(value, str) or not _PATTERN.fullmatch(value)):
            raise fail(key, f"{key} {value!r} is not a name or glob ({NAME_RULE}, * ? [ ])")
    limit = entry["limit"]
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit != limit \
            or limit in (float("inf"), float("-inf")):
        raise fail("limit", f"limit {limit!r} is not a finite number")
    direction = entry["direction"]
    if direction not in DIRECTIONS:
        raise fail("direction", f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    action = entry["action"]
    if not isinstance(action, str) or not _ACTION.fullmatch(action):
        raise fail("action", f"action {action!r} is not a word (a-z, 0-9, _ -; for example "
                             f"{', '.join(KNOWN_ACTIONS)})")
    durations: dict[str, timedelta] = {}
    for key, default in (("lead_time", None), ("freq", "1h"), ("horizon", "14d")):
        raw = entry.get(key, default)
        try:
            durations[key] = parse_duration(str(raw))
        except ValueError as exc:
            raise fail(key, f"{key}: {exc}") from None
    if durations["freq"] < timedelta(minutes=5) or durations["freq"] > timedelta(days=1):
        raise fail("freq", "freq must be between 5m and 1d")
    if durations["horizon"] < 2 * durations["freq"] or durations["horizon"] > timedelta(days=90):
        raise fail("horizon", "horizon must be at least two steps of freq and at most 90d")
    stale_after = None
    if "stale_after" in entry:
        try:
            stale_after = parse_duration(str(entry["stale_after"]))
        except ValueError as exc:
            raise fail("stale_after", f"stale_after: {exc}") from None
        if stale_after <= timedelta(0):
            raise fail("stale_after", "stale_after must be longer than 0s")
    return Policy(metric=metric, service=service, limit=float(limit), direction=direction,
                  action=action, lead_time=durations["lead_time"], freq=durations["freq"],
                  horizon=durations["horizon"], stale_after=stale_after)


def load_policies(path: Path | None, include_defaults: bool = True) -> tuple[Policy, ...]:
    """Read a policy file and add its rules to the defaults.

    Raises:
        ConfigError: the file cannot be read or parsed, or a rule is invalid; the message names
            the file, the line and the problem.
    """
    base = DEFAULT_POLICIES if include_defaults else ()
    if path is None:
        return base
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy file {path}: {exc}") from None
    extra = sorted(set(data) - {"policy"})
    if extra:
        raise ConfigError(f"{path}: line 1: unknown table {extra[0]!r}; use [[policy]] tables")
    entries = data.get("policy", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: line 1: 'policy' must be [[policy]] tables")
    rules = []
    for index, entry in enumerate(entries):
        def where(key: str | None, index: int = index) -> str:
            return f"{path}: line {_line_of(text, index, key)} (policy {index + 1})"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where(None)}: a policy must be a table")
        rules.append(_policy_from(entry, where))
    return base + tuple(rules)


def policy_for(policies: tuple[Policy, ...], service: str, metric: str) -> Policy | None:
    """The most specific rule for a series; among equals, the last one."""
    best: Policy | None = None
    for rule in policies:
        if rule.matches(service, metric) and (
                best is None or rule.specificity() >= best.specificity()):
            best = rule
    return best
