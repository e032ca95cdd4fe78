"""The scale each metric kind is modelled on, and back.

Latencies and throughputs are positive and skewed: log. Ratios and scores live in [0, 1]: logit,
so a forecast can never leave the interval; utilisations in percent the same on ``x / 100`` (a
CPU at 100% cannot pass 100%, and no path should). Both maps are monotone, so a quantile on the
model scale maps to the same quantile on the metric's own scale exactly.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from forecaster.kinds import MetricKind

# Keeps log and logit finite at 0 and 1 (a rate of exactly 0 is common).
EPS = 1e-4


class Transform(StrEnum):
    """A monotone map from a metric's scale to the model's."""

    IDENTITY = "identity"
    LOG = "log"
    LOGIT = "logit"
    PERCENT_LOGIT = "percent_logit"


def transform_for(kind: MetricKind | str) -> Transform:
    """The modelling scale of a metric kind."""
    kind = MetricKind(kind)
    if kind in (MetricKind.LATENCY, MetricKind.THROUGHPUT):
        return Transform.LOG
    if kind in (MetricKind.RATIO, MetricKind.SCORE):
        return Transform.LOGIT
    if kind is MetricKind.PERCENT:
        return Transform.PERCENT_LOGIT
    return Transform.IDENTITY


def forward(values: np.ndarray | float, transform: Transform) -> np.ndarray:
    """Metric scale -> model scale (values outside the domain are clipped to it)."""
    x = np.asarray(values, dtype=float)
    if transform is Transform.LOG:
        return np.log(np.maximum(x, EPS))
    if transform in (Transform.LOGIT, Transform.PERCENT_LOGIT):
        p = np.clip(x / 100.0 if transform is Transform.PERCENT_LOGIT else x, EPS, 1.0 - EPS)
        return np.log(p / (1.0 - p))
    return x


def inverse(values: np.ndarray | float, transform: Transform) -> np.ndarray:
    """Model scale -> metric scale."""
    z = np.asarray(values, dtype=float)
    if transform is Transform.LOG:
        return np.exp(z)
    if transform is Transform.LOGIT:
        return 1.0 / (1.0 + np.exp(-z))
    if transform is Transform.PERCENT_LOGIT:
        return 100.0 / (1.0 + np.exp(-z))
    return z
