"""Column names, metric kinds, result records and domain errors shared by every module."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

# Long format, as statsforecast and utilsforecast use it.
UNIQUE_ID = "unique_id"
DS = "ds"
Y = "y"

# A service or metric name ends up in URLs (`/v1/series/{service}:{metric}`) and in Prometheus
# labels, so it is kept to a conservative alphabet.
NAME_PATTERN = r"[A-Za-z0-9_.\-]{1,200}"
NAME_RULE = "1 to 200 of the characters A-Z a-z 0-9 _ . -"
_NAME_RE = re.compile(NAME_PATTERN)

# A unit is a short label (ms, 1/s, %): longer text is a mistake (a description in the wrong
# column), refused per row with one limit and one message in files and API batches.
MAX_UNIT_CHARS = 32

# Timestamps outside this range are almost always unit mistakes (ms read as s, or a zero date).
MIN_YEAR = 1970
MAX_YEAR = 2199

# Request logs are rolled up into buckets of this width; every rolled-up point is stamped with
# the start of its bucket.
ROLLUP_SECONDS = 300


# Decisions of time to intervention, most urgent first: the ranking everywhere answers are listed.
# `stale`: the series' data stopped arriving (a monitoring problem, not a forecast); it ranks
# after the actions due and before what is only watched.
DECISIONS = ("breached", "act_now", "schedule", "stale", "watch", "ok")


class MetricKind(StrEnum):
    """What a metric measures, which decides its valid range and, later, its modelling scale."""

    LATENCY = "latency"  # positive, skewed: modelled on a log scale
    RATIO = "ratio"  # a proportion of a request count, in [0, 1]
    SCORE = "score"  # a bounded quality score, in [0, 1] by convention here
    THROUGHPUT = "throughput"  # demand: requests or tokens per second, >= 0
    PERCENT = "percent"  # a utilisation in percent (GPU, CPU, KV cache), in [0, 100]
    GAUGE = "gauge"  # anything else: any finite number


# (lower bound, upper bound) each kind accepts; None means open.
KIND_RANGE: dict[MetricKind, tuple[float | None, float | None]] = {
    MetricKind.LATENCY: (0.0, None),
    MetricKind.RATIO: (0.0, 1.0),
    MetricKind.SCORE: (0.0, 1.0),
    MetricKind.THROUGHPUT: (0.0, None),
    MetricKind.PERCENT: (0.0, 100.0),
    MetricKind.GAUGE: (None, None),
}

# The metrics the request-log roll-up produces, with their kind and unit.
ROLLUP_METRICS: dict[str, tuple[MetricKind, str]] = {
    "latency_p50_ms": (MetricKind.LATENCY, "ms"),
    "latency_p95_ms": (MetricKind.LATENCY, "ms"),
    "latency_p99_ms": (MetricKind.LATENCY, "ms"),
    "ttft_p95_ms": (MetricKind.LATENCY, "ms"),
    "error_rate": (MetricKind.RATIO, "1"),
    "requests_per_s": (MetricKind.THROUGHPUT, "1/s"),
    "tokens_per_s": (MetricKind.THROUGHPUT, "1/s"),
    "quality_score": (MetricKind.SCORE, "1"),
    "negative_feedback_rate": (MetricKind.RATIO, "1"),
}

# Optional numeric fields of a request log: (lowest, highest allowed, whole numbers only).
REQUEST_NUMBERS: dict[str, tuple[float, float, bool]] = {
    "latency_ms": (0.0, 1e9, False),
    "ttft_ms": (0.0, 1e9, False),
    "prompt_tokens": (0.0, 1e12, True),
    "completion_tokens": (0.0, 1e12, True),
    "quality_score": (0.0, 1.0, False),
    "feedback": (-1e9, 1e9, False),
}

# Rules for metrics outside the roll-up set, first match wins.
_KIND_RULES: list[tuple[re.Pattern[str], MetricKind]] = [
    (re.compile(r"(^|_)(latency|ttft|tpot|duration)(_|$)|_(ms|seconds|s)$"), MetricKind.LATENCY),
    (re.compile(r"_(rate|ratio|fraction|share)$"), MetricKind.RATIO),
    (re.compile(r"(^|_)(score|quality|accuracy)(_|$)"), MetricKind.SCORE),
    (re.compile(r"_per_(s|sec|second|min|minute)$|(^|_)(rps|qps|tps)$"), MetricKind.THROUGHPUT),
    (re.compile(r"(^|_)(utilization|utilisation|util|percent|pct)(_|$)"), MetricKind.PERCENT),
]


def metric_kind(metric: str) -> MetricKind:
    """Infer a metric's kind from its name.

    Args:
        metric: The metric name, for example ``latency_p95_ms`` or ``error_rate``.

    Returns:
        The kind; ``GAUGE`` when no rule matches.
    """
    if metric in ROLLUP_METRICS:
        return ROLLUP_METRICS[metric][0]
    for pattern, kind in _KIND_RULES:
        if pattern.search(metric):
            return kind
    return MetricKind.GAUGE


def to_utc_naive(value: datetime) -> datetime:
    """A time as the store keeps it: UTC without an offset (a naive time is taken as UTC).

    Raises:
        ValueError: the time in UTC falls outside the years a ``datetime`` can hold (year 1
            with a positive offset, year 9999 with a negative one).
    """
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError(f"time {value.isoformat()} is outside the years 1 to 9999 once "
                         "converted to UTC") from None


def utc_in_range(value: datetime, what: str) -> datetime:
    """``value`` as :func:`to_utc_naive` gives it, checked to lie in ``MIN_YEAR..MAX_YEAR``.

    Args:
        value: The time, naive (UTC) or with an offset.
        what: What the time is (a field or parameter name), for the message.

    Raises:
        ValueError: the time is outside the range, naming ``what`` and the range.
    """
    try:
        utc = to_utc_naive(value)
    except ValueError:
        utc = None
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"{what}: time {value.isoformat()} is outside the allowed range "
                         f"(years {MIN_YEAR} to {MAX_YEAR}, UTC)")
    return utc


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a valid service or metric name (see ``NAME_RULE``)."""
    return _NAME_RE.fullmatch(name) is not None


def unique_id(service: str, metric: str) -> str:
    """The series id used in long frames and URLs: ``service:metric``."""
    return f"{service}:{metric}"


def split_unique_id(uid: str) -> tuple[str, str]:
    """Split ``service:metric`` back into its parts.

    Raises:
        ValueError: when ``uid`` is not of that form.
    """
    service, sep, metric = uid.partition(":")
    if not sep or not is_valid_name(service) or not is_valid_name(metric):
        raise ValueError(f"series id {uid!r} is not of the form service:metric ({NAME_RULE} each)")
    return service, metric


# ---------------------------------------------------------------------------------------------
# Errors


class ForecasterError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(ForecasterError):
    """Input that cannot be used as a whole (a file of the wrong shape, an unknown column)."""


class StoreLockedError(ForecasterError):
    """Another process holds the database file."""


class SchemaVersionError(ForecasterError):
    """The database was written by a newer forecaster than this one."""


class ConfigError(ForecasterError):
    """A setting or configuration file is invalid."""


class RefreshFailedError(ForecasterError):
    """A refresh failed as a whole (it is recorded as a failed run, with why)."""


# ---------------------------------------------------------------------------------------------
# Ingest results


@dataclass(frozen=True, slots=True)
class RowError:
    """One rejected input row.

    Attributes:
        source: The file name, or another label of where the rows came from.
        row: 1-based data row number (the header is not counted).
        field: The column whose value was refused.
        message: What was wrong and what is allowed.
    """

    source: str
    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: row {self.row}: {self.field}: {self.message}"


@dataclass(slots=True)
class IngestReport:
    """What one ingest call did.

    Attributes:
        source: Where the rows came from.
        rows: Rows read.
        stored: Points written that were not stored before.
        updated: Points whose stored value changed.
        duplicates: Rows that changed nothing (same point already stored, or repeated in the input).
        rejected: Rows refused; the first of them are in ``errors``.
        errors: Up to ``max_errors`` rejected rows, in input order.
        strict_aborted: True when ``strict`` was asked and nothing was stored because of rejects.
        requests_stored: For request logs: requests not seen before.
    """

    source: str
    rows: int = 0
    stored: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    strict_aborted: bool = False
    requests_stored: int | None = None

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return self.rejected == 0

    def summary(self) -> str:
        """One line a person can read."""
        parts = [f"{self.source}: {self.rows} rows"]
        if self.requests_stored is not None:
            parts.append(f"{self.requests_stored} new requests")
        parts += [
            f"{self.stored} points stored",
            f"{self.updated} updated",
            f"{self.duplicates} duplicate",
            f"{self.rejected} rejected",
        ]
        line = ", ".join(parts)
        if self.strict_aborted:
            line += " (strict: nothing stored)"
        return line
