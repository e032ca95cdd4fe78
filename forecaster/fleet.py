"""A seeded sample fleet of LLM services, with its ground truth.

Six services, nine metrics each, every 5 minutes for 28 days, plus a hidden continuation (the
"future") from which the true first crossing of each limit is read. Each service carries one
story a predictive-maintenance engine should tell apart:

- ``chat-api``: healthy; modest demand growth far below capacity.
- ``code-assist``: a slow latency creep (about 2 % a day) toward its p95 limit.
- ``summarize``: a model update on day 18, after which the quality score drifts down.
- ``rag-search``: an error-rate incident on day 24, preceded by subtle precursors (short timeout
  bursts and latency wobbles) in the six hours before it.
- ``embed-batch``: demand growing about 2.5 % a day toward its capacity, strongly weekly.
- ``support-bot``: a negative-feedback rate rising after a prompt change on day 14.

Latency is driven by load (a queueing-style curve in utilisation) times the creep, with
lognormal noise; error and feedback rates are binomial proportions of the bucket's requests;
quality scores are hourly evaluation samples (the other 11 buckets of each hour have none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from forecaster.kinds import ROLLUP_METRICS
from forecaster.names import unique_id

STEP = timedelta(minutes=5)
STEPS_PER_DAY = 288
DEFAULT_START = datetime(2026, 10, 29)
DEFAULT_DAYS = 28
DEFAULT_FUTURE_DAYS = 14
DEFAULT_SEED = 20261126

# (limit, direction) per metric; requests_per_s is compared with each service's capacity.
LIMITS: dict[str, tuple[float, str]] = {
    "latency_p95_ms": (1500.0, "above"),
    "latency_p99_ms": (3000.0, "above"),
    "ttft_p95_ms": (800.0, "above"),
    "error_rate": (0.05, "above"),
    "quality_score": (0.80, "below"),
    "negative_feedback_rate": (0.10, "above"),
}


# The metrics a precursor burst disturbs.
PRECURSOR_METRICS = ("error_rate", "latency_p99_ms", "ttft_p95_ms")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """The parameters of one synthetic service.

    Attributes:
        name: Service name.
        base_rps: Mean requests per second at day 0.
        capacity_rps: Requests per second the service can serve.
        growth_per_day: Multiplicative daily demand growth (0.01 = 1 % a day).
        weekend_factor: Demand on Saturday and Sunday relative to weekdays.
        daily_amplitude: Relative swing of the daily cycle.
        p50_ms: Median latency with no load.
        tokens_per_request: Mean prompt plus completion tokens.
        creep_per_day: Multiplicative daily latency creep from ``creep_start_day``.
        creep_start_day: Day the creep begins.
        quality: Baseline quality score.
        quality_drift_per_day: Quality change per day after ``change_day``.
        feedback_rate: Baseline negative-feedback rate.
        feedback_drift_per_day: Feedback-rate change per day after ``change_day``.
        change_day: Day of the model update or prompt change, if any.
        change_kind: What the change was (an event kind).
        incident_day: Day (fractional) an error incident starts, if any.
    """

    name: str
    base_rps: float
    capacity_rps: float
    growth_per_day: float = 0.002
    weekend_factor: float = 0.75
    daily_amplitude: float = 0.45
    p50_ms: float = 300.0
    tokens_per_request: float = 900.0
    creep_per_day: float = 0.0
    creep_start_day: float = 0.0
    quality: float = 0.90
    quality_drift_per_day: float = 0.0
    feedback_rate: float = 0.04
    feedback_drift_per_day: float = 0.0
    change_day: float | None = None
    change_kind: str = "deploy"
    incident_day: float | None = None


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("chat-api", base_rps=120, capacity_rps=400, growth_per_day=0.003),
    ServiceSpec("code-assist", base_rps=40, capacity_rps=150, p50_ms=260, creep_per_day=0.019,
                creep_start_day=2.0, tokens_per_request=1400),
    ServiceSpec("summarize", base_rps=25, capacity_rps=90, p50_ms=420, change_day=18.0,
                change_kind="model_update", quality=0.905, quality_drift_per_day=-0.005),
    ServiceSpec("rag-search", base_rps=60, capacity_rps=200, p50_ms=350, incident_day=24.35),
    ServiceSpec("embed-batch", base_rps=150, capacity_rps=460, growth_per_day=0.025,
                weekend_factor=0.35, daily_amplitude=0.30, p50_ms=120, tokens_per_request=500),
    ServiceSpec("support-bot", base_rps=30, capacity_rps=100, p50_ms=380, change_day=14.0,
                change_kind="prompt_change", feedback_rate=0.045,
                feedback_drift_per_day=0.0022),
)


@dataclass(slots=True)
class Fleet:
    """A generated fleet.

    Attributes:
        history: Long frame (ts, service, metric, value, unit) of the observed days.
        future: The same for the hidden continuation.
        truth: What a perfect engine would know: limits, first crossings, precursor windows,
            incidents and events.
    """

    history: pl.DataFrame
    future: pl.DataFrame
    truth: dict[str, object] = field(default_factory=dict)


def _demand(spec: ServiceSpec, t_days: np.ndarray, start: datetime,
            rng: np.random.Generator) -> np.ndarray:
    hour = (t_days * 24.0 + start.hour) % 24.0
    # Busiest mid-afternoon UTC, quietest before dawn.
    daily = 1.0 + spec.daily_amplitude * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    weekday = (start.weekday() + np.floor(t_days + start.hour / 24.0).astype(int)) % 7
    weekly = np.where(weekday >= 5, spec.weekend_factor, 1.0)
    growth = (1.0 + spec.growth_per_day) ** t_days
    noise = rng.lognormal(0.0, 0.06, t_days.size)
    return spec.base_rps * daily * weekly * growth * noise


def _series(spec: ServiceSpec, t_days: np.ndarray, start: datetime,
            rng: np.random.Generator) -> tuple[dict[str, np.ndarray], list[tuple[int, int]]]:
    """All nine metrics of one service over ``t_days``, and its precursor windows."""
    n = t_days.size
    rps = _demand(spec, t_days, start, rng)
    requests = np.maximum(rps * STEP.total_seconds(), 1.0)
    util = np.clip(rps / spec.capacity_rps, 0.0, 0.95)
    # Load raises latency gently, then steeply near saturation (M/M/1-like 1/(1-u)).
    load = 0.8 + 0.2 / (1.0 - util)
    creep = np.where(t_days > spec.creep_start_day,
                     (1.0 + spec.creep_per_day) ** (t_days - spec.creep_start_day), 1.0)
    p50 = spec.p50_ms * load * creep * rng.lognormal(0.0, 0.05, n)
    p95 = p50 * 2.3 * rng.lognormal(0.0, 0.06, n)
    p99 = p95 * 1.55 * rng.lognormal(0.0, 0.08, n)
    ttft = p95 * 0.35 * rng.lognormal(0.0, 0.06, n)
    p_error = np.full(n, 0.004)
    precursors: list[tuple[int, int]] = []  # (first, last + 1) index of each burst
    start_i = _incident_index(spec, n)
    if start_i is not None:
        end_i = start_i + 30  # two and a half hours
        p_error[start_i:end_i] = 0.09
        p95[start_i:end_i] *= 1.8
        p99[start_i:end_i] *= 2.2
        # Precursors: short bursts of timeouts and latency wobbles in the 6 hours before.
        for offset, length in ((-70, 3), (-52, 2), (-35, 3), (-20, 4), (-9, 3)):
            a = start_i + offset
            p_error[a:a + length] = 0.022
            p99[a:a + length] *= 1.45
            ttft[a:a + length] *= 1.25
            precursors.append((a, a + length))
    errors = rng.binomial(requests.astype(np.int64), p_error)
    error_rate = errors / requests.astype(np.int64)
    tokens = rps * spec.tokens_per_request * rng.lognormal(0.0, 0.04, n)
    after = (t_days - spec.change_day) if spec.change_day is not None else np.zeros(n)
    after = np.clip(after, 0.0, None)
    quality = np.clip(spec.quality + spec.quality_drift_per_day * after
                      + rng.normal(0.0, 0.012, n), 0.0, 1.0)
    # Quality comes from an hourly evaluation job: the other buckets of the hour have none.
    quality[(np.arange(n) % 12) != 0] = np.nan
    feedback_p = np.clip(spec.feedback_rate + spec.feedback_drift_per_day * after, 0.0, 1.0)
    # About a quarter of requests get a thumbs up or down.
    with_feedback = np.maximum((requests * 0.25).astype(np.int64), 1)
    negative = rng.binomial(with_feedback, feedback_p) / with_feedback
    return {
        "latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p99_ms": p99,
        "ttft_p95_ms": ttft, "error_rate": error_rate, "requests_per_s": rps,
        "tokens_per_s": tokens, "quality_score": quality, "negative_feedback_rate": negative,
    }, precursors


def _incident_index(spec: ServiceSpec, n: int) -> int | None:
    """Where the incident starts, when it fits in the generated span with its precursors."""
    if spec.incident_day is None:
        return None
    start = int(round(spec.incident_day * STEPS_PER_DAY))
    return start if 70 <= start and start + 30 <= n else None


def _first_crossing(ts: np.ndarray, values: np.ndarray, limit: float, direction: str,
                    after: int = 0) -> datetime | None:
    v = values[after:]
    hit = (v > limit) if direction == "above" else (v < limit)
    hit &= ~np.isnan(v)
    idx = np.flatnonzero(hit)
    return None if idx.size == 0 else ts[after + idx[0]].astype("datetime64[us]").item()


def generate(
    seed: int = DEFAULT_SEED,
    start: datetime = DEFAULT_START,
    days: int = DEFAULT_DAYS,
    future_days: int = DEFAULT_FUTURE_DAYS,
    services: tuple[ServiceSpec, ...] = SERVICES,
) -> Fleet:
    """Generate the fleet.

    Args:
        seed: Seed of the random generator; the same seed gives the same fleet.
        start: First timestamp (UTC, naive, on a 5-minute boundary).
        days: Observed days.
        future_days: Hidden days after the observed ones, for the ground truth.
        services: The services to generate.

    Returns:
        History, future and truth.
    """
    rng = np.random.default_rng(seed)
    n_hist = days * STEPS_PER_DAY
    n = n_hist + future_days * STEPS_PER_DAY
    t_days = np.arange(n) / STEPS_PER_DAY
    ts = np.datetime64(start, "us") + np.arange(n) * np.timedelta64(300, "s")
    end = start + days * timedelta(days=1)
    frames = []
    crossings: list[dict[str, object]] = []
    anomalies: list[dict[str, object]] = []
    incidents: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    for spec in services:
        metrics, precursors = _series(spec, t_days, start, rng)
        limits = dict(LIMITS) | {"requests_per_s": (spec.capacity_rps, "above")}
        for metric, values in metrics.items():
            keep = ~np.isnan(values)
            frames.append(pl.DataFrame({
                "ts": ts[keep], "service": spec.name, "metric": metric, "value": values[keep],
                "unit": ROLLUP_METRICS[metric][1],
            }))
            if metric in limits:
                limit, direction = limits[metric]
                first = _first_crossing(ts, values, limit, direction)
                after_end = _first_crossing(ts, values, limit, direction, after=n_hist)
                crossings.append({
                    "unique_id": unique_id(spec.name, metric), "limit": limit,
                    "direction": direction,
                    "first_crossing": first.isoformat() if first else None,
                    "first_crossing_after_end": after_end.isoformat() if after_end else None,
                })
        for a, b in precursors:
            for metric in PRECURSOR_METRICS:
                anomalies.append({
                    "unique_id": unique_id(spec.name, metric), "kind": "precursor",
                    "start": _iso(ts[a]), "end": _iso(ts[b]),
                })
        incident_at = _incident_index(spec, n)
        if incident_at is not None:
            incidents.append({"service": spec.name, "metric": "error_rate",
                              "start": _iso(ts[incident_at]), "end": _iso(ts[incident_at + 30])})
        if spec.change_day is not None and spec.change_day * STEPS_PER_DAY < n:
            events.append({"service": spec.name, "kind": spec.change_kind,
                           "ts": _iso(ts[int(spec.change_day * STEPS_PER_DAY)])})
    long = pl.concat(frames).with_columns(pl.col("ts").cast(pl.Datetime("us")))
    history = long.filter(pl.col("ts") < end).sort("service", "metric", "ts")
    future = long.filter(pl.col("ts") >= end).sort("service", "metric", "ts")
    truth: dict[str, object] = {
        "generator": "forecaster.fleet.generate", "seed": seed, "start": start.isoformat(),
        "end": end.isoformat(), "future_end": (end + timedelta(days=future_days)).isoformat(),
        "freq": "5m",
        "capacity_rps": {s.name: s.capacity_rps for s in services},
        "crossings": crossings, "anomalies": anomalies, "incidents": incidents,
        "events": events,
        "healthy": [s.name for s in services if s.name == "chat-api"],
    }
    return Fleet(history=history, future=future, truth=truth)


def _iso(value: np.datetime64) -> str:
    return value.astype("datetime64[us]").item().isoformat()


def write(fleet: Fleet, out: Path) -> list[Path]:
    """Write ``points.parquet``, ``future.parquet`` and ``truth.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "points.parquet", out / "future.parquet", out / "truth.json"]
    fleet.history.write_parquet(paths[0], compression="zstd", statistics=False)
    fleet.future.write_parquet(paths[1], compression="zstd", statistics=False)
    paths[2].write_text(json.dumps(fleet.truth, indent=2) + "\n")
    return paths
