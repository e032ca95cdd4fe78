"""Metric kinds: what a metric measures, the range it accepts, and how its kind is inferred."""

from __future__ import annotations

import re
from enum import StrEnum

# Request logs are rolled up into buckets of this width; every rolled-up point is stamped with
# the start of its bucket.
ROLLUP_SECONDS = 300


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
