"""A week of metrics shaped like vLLM's, as an OpenMetrics file for ``promtool tsdb
create-blocks-from openmetrics``, and an independent numpy computation of what Prometheus answers
to the vLLM preset's queries over it.

The history (seeded): three services by ``model_name``, one of them served by two engines (V1's
``engine`` label, summed away by the preset), one by the V0 engine (``gpu_cache_usage_perc``, no
engine label, the ``abort`` series appearing only at its first abort, and a restart that resets
every counter), one idle for two hours (no requests: quantiles and the error share are NaN).
Each target is scraped once a minute, at its own second of the minute, with +-2 s of jitter:
never on a minute boundary, so no sample sits on the edge of a window evaluated at a multiple of
5 minutes. Histograms use a subset of vLLM's own bucket bounds.

The model follows Prometheus' documented arithmetic, written again in numpy:
- ``rate(x[5m])`` at ``t``: the samples in the window, the increase between the first and the
  last with the value before each counter reset added back, extrapolated to the window's edges
  when the first/last sample is within 1.1 mean sample spacings of them (else by half a
  spacing), never extrapolated below a counter's zero, divided by 300 s
  (promql/functions.go ``extrapolatedRate``); no value with fewer than two samples.
- an instant selector: the latest sample at or before ``t``, within 5 minutes.
- ``histogram_quantile``: buckets made monotonic, rank ``q * count``, the first bucket whose
  cumulative count reaches the rank, linear interpolation inside it (from 0 in the first
  bucket); the second-highest bound when the rank falls in ``+Inf``; NaN without observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import ndtr

SEED = 15
WINDOW_MS = 300_000
# Subsets of vLLM's buckets (vllm/v1/metrics/loggers.py: e2e latency 0.3 s to 7680 s, TTFT
# 1 ms to 2560 s): a full set is 40% more series to backfill and tests nothing more.
E2E_BOUNDS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 20.0, 60.0)
TTFT_BOUNDS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5)
V1_REASONS = ("stop", "length", "abort", "error")
V0_REASONS = ("stop", "length", "abort")


@dataclass(frozen=True)
class Target:
    """One scraped vLLM process."""

    model: str
    engine: str | None  # None: vLLM's V0 engine (no engine label)
    offset_s: float  # its second of the minute
    per_minute: float  # requests per minute at mean load
    median_s: float  # median end-to-end latency at mean load

    @property
    def labels(self) -> str:
        engine = f'engine="{self.engine}",' if self.engine is not None else ""
        return f'{engine}model_name="{self.model}"'


TARGETS = (
    Target("meta-llama/Llama-3.1-8B-Instruct", "0", 11.0, 40.0, 1.6),
    Target("meta-llama/Llama-3.1-8B-Instruct", "1", 37.0, 35.0, 1.9),
    Target("Qwen/Qwen2.5-7B-Instruct", "0", 23.0, 25.0, 0.9),
    Target("mistral-7b", None, 49.0, 15.0, 3.0),
)
MODELS = tuple(dict.fromkeys(t.model for t in TARGETS))


@dataclass
class Series:
    """One scraped series: its sample times (ms) and values."""

    ts: np.ndarray
    values: np.ndarray


@dataclass
class Scraped:
    """What one target exposed, minute by minute."""

    target: Target
    ts: np.ndarray  # scrape times, epoch ms
    e2e: np.ndarray  # cumulative bucket counts, (minutes, bounds + 1): the last is +Inf
    e2e_sum: np.ndarray
    ttft: np.ndarray
    ttft_sum: np.ndarray
    reasons: dict[str, Series] = field(default_factory=dict)
    prompt: np.ndarray = field(default_factory=lambda: np.zeros(0))
    generation: np.ndarray = field(default_factory=lambda: np.zeros(0))
    waiting: np.ndarray = field(default_factory=lambda: np.zeros(0))
    kv: np.ndarray = field(default_factory=lambda: np.zeros(0))  # fraction 0-1, NaN sometimes


@dataclass
class History:
    start_s: int  # first minute (epoch seconds)
    minutes: int
    targets: list[Scraped]

    @property
    def last_minute_s(self) -> int:
        return self.start_s + 60 * (self.minutes - 1)


def _bucket_probabilities(bounds: tuple[float, ...], median: np.ndarray,
                          sigma: float) -> np.ndarray:
    """Per minute, the probability of each bucket (and of +Inf) of a log-normal latency."""
    z = (np.log(np.array(bounds))[None, :] - np.log(median)[:, None]) / sigma
    cdf = np.concatenate([ndtr(z), np.ones((len(median), 1))], axis=1)
    return np.diff(cdf, axis=1, prepend=0.0)


def _cumulative(increments: np.ndarray, reset: int | None) -> np.ndarray:
    """Counter values from per-minute increments, restarting from 0 at ``reset``."""
    total = np.cumsum(increments, axis=0).astype(np.float64)
    if reset is not None:
        total[reset:] -= total[reset - 1]
    return total


def generate(start_s: int, days: float = 7.0, extra_minutes: int = 30) -> History:
    """The seeded history from ``start_s`` (a multiple of 3600)."""
    rng = np.random.default_rng(SEED)
    minutes = int(days * 1440) + extra_minutes
    t = start_s + 60 * np.arange(minutes)
    day = (t - start_s) / 86400.0
    load = 1.0 + 0.5 * np.sin(2 * np.pi * (day - 0.25)) + 0.15 * day / days
    scraped = []
    for target in TARGETS:
        jitter = rng.integers(-2000, 2001, minutes)
        ts = (t * 1000 + int(target.offset_s * 1000) + jitter).astype(np.int64)
        per_minute = target.per_minute * load
        if target.model.startswith("Qwen"):
            per_minute = np.where((day >= 3 + 2 / 24) & (day < 3 + 4 / 24), 0.0, per_minute)
        requests = rng.poisson(per_minute)
        v0 = target.engine is None
        reset = int(4.25 * 1440) if v0 else None
        e2e_inc = rng.multinomial(requests, _bucket_probabilities(
            E2E_BOUNDS, target.median_s * (1 + 0.3 * (load - 1)), 0.6))
        ttft_inc = rng.multinomial(requests, _bucket_probabilities(
            TTFT_BOUNDS, 0.08 * load ** 1.5, 0.7))
        mids_e2e = np.array([*E2E_BOUNDS, 90.0]) * 0.8
        mids_ttft = np.array([*TTFT_BOUNDS, 4.0]) * 0.8
        run = Scraped(
            target, ts,
            e2e=_cumulative(np.cumsum(e2e_inc, axis=1), reset),
            e2e_sum=_cumulative(e2e_inc @ mids_e2e, reset),
            ttft=_cumulative(np.cumsum(ttft_inc, axis=1), reset),
            ttft_sum=_cumulative(ttft_inc @ mids_ttft, reset))
        if v0:
            # V0 makes a finished_reason series at its first request finished that way: no
            # abort before day 2 noon
            p_abort = np.where(day < 2.5, 0.0, 0.02)
            probs = np.stack([0.9 - p_abort, np.full(minutes, 0.1), p_abort], axis=1)
            reasons = V0_REASONS
        else:
            p_error = np.where((day >= 5 + 10 / 24) & (day < 5 + 12 / 24), 0.05, 0.004)
            probs = np.stack([0.9 - p_error - 0.01, np.full(minutes, 0.08),
                              np.full(minutes, 0.01), p_error], axis=1)
            reasons = V1_REASONS
        finished = rng.multinomial(requests, probs)
        for k, reason in enumerate(reasons):
            values = _cumulative(finished[:, k], reset)
            first = 0 if not v0 or reason != "abort" else int(np.argmax(values > 0))
            run.reasons[reason] = Series(ts[first:], values[first:])
        run.prompt = _cumulative(rng.poisson(requests * 600.0), reset)
        run.generation = _cumulative(rng.poisson(requests * 250.0), reset)
        run.waiting = rng.poisson(2.0 * load ** 2).astype(np.float64)
        kv = np.round(np.clip(0.25 + 0.35 * load + rng.normal(0, 0.03, minutes), 0, 1), 4)
        if target.engine == "1":
            kv[::499] = np.nan  # a gauge whose exporter wrote NaN now and then
        run.kv = kv
        scraped.append(run)
    return History(start_s, minutes, scraped)


# -- the OpenMetrics file --------------------------------------------------------------------


def _lines(out: list[str], name: str, labels: str, values: np.ndarray, stamps: list[str],
           integer: bool) -> None:
    prefix = f"{name}{{{labels}}} "
    if integer:
        out.extend(f"{prefix}{v} {s}\n" for v, s in zip(values.astype(np.int64).tolist(), stamps,
                                                         strict=True))
    else:
        out.extend(f"{prefix}{'NaN' if math.isnan(v) else repr(v)} {s}\n"
                   for v, s in zip(values.tolist(), stamps, strict=True))


def write_openmetrics(history: History, path: Path) -> int:
    """Write the history as OpenMetrics text (each series in time order, families together).

    Returns:
        The number of samples written.
    """
    stamps = {id(run): [f"{ms // 1000}.{ms % 1000:03d}" for ms in run.ts.tolist()]
              for run in history.targets}
    out: list[str] = []
    for family, bounds, attr in (("vllm:e2e_request_latency_seconds", E2E_BOUNDS, "e2e"),
                                 ("vllm:time_to_first_token_seconds", TTFT_BOUNDS, "ttft")):
        out.append(f"# HELP {family} Histogram of {attr} in seconds.\n")
        out.append(f"# TYPE {family} histogram\n")
        for run in history.targets:
            cum = getattr(run, attr)
            for k, bound in enumerate([*map(repr, bounds), "+Inf"]):
                _lines(out, f"{family}_bucket", f'{run.target.labels},le="{bound}"', cum[:, k],
                       stamps[id(run)], True)
            _lines(out, f"{family}_count", run.target.labels, cum[:, -1], stamps[id(run)], True)
            _lines(out, f"{family}_sum", run.target.labels, getattr(run, f"{attr}_sum"),
                   stamps[id(run)], False)
    out.append("# TYPE vllm:request_success counter\n")
    for run in history.targets:
        for reason, series in run.reasons.items():
            own = stamps[id(run)][len(run.ts) - len(series.ts):]
            _lines(out, "vllm:request_success_total",
                   f'{run.target.labels},finished_reason="{reason}"', series.values, own, True)
    for family, attr in (("vllm:prompt_tokens", "prompt"),
                         ("vllm:generation_tokens", "generation")):
        out.append(f"# TYPE {family} counter\n")
        for run in history.targets:
            _lines(out, f"{family}_total", run.target.labels, getattr(run, attr),
                   stamps[id(run)], True)
    out.append("# TYPE vllm:num_requests_waiting gauge\n")
    for run in history.targets:
        _lines(out, "vllm:num_requests_waiting", run.target.labels, run.waiting,
               stamps[id(run)], True)
    for family, v0 in (("vllm:kv_cache_usage_perc", False), ("vllm:gpu_cache_usage_perc", True)):
        out.append(f"# TYPE {family} gauge\n")
        for run in history.targets:
            if (run.target.engine is None) == v0:
                _lines(out, family, run.target.labels, run.kv, stamps[id(run)], False)
    out.append("# EOF\n")
    path.write_text("".join(out))
    return sum(1 for line in out if not line.startswith("#"))


# -- what Prometheus answers ------------------------------------------------------------------


def rate(series: Series, evals: np.ndarray, counter: bool = True) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """``rate(x[5m])`` at each evaluation time (ms): (values, present)."""
    ts, v = series.ts, series.values
    first = np.searchsorted(ts, evals - WINDOW_MS, "left")
    last = np.searchsorted(ts, evals, "right") - 1
    present = last - first >= 1
    f, lst = np.where(present, first, 0), np.where(present, last, 0)
    previous = np.concatenate([[0.0], v[:-1]])
    dropped = np.cumsum(np.where(v < previous, previous, 0.0)) if counter else np.zeros(len(v))
    result = v[lst] - v[f] + (dropped[lst] - dropped[f])
    with np.errstate(divide="ignore", invalid="ignore"):
        to_start = (ts[f] - (evals - WINDOW_MS)) / 1000
        to_end = (evals - ts[lst]) / 1000
        sampled = (ts[lst] - ts[f]) / 1000
        spacing = sampled / (lst - f)
        if counter:
            to_zero = sampled * (v[f] / result)
            to_start = np.where((result > 0) & (v[f] >= 0) & (to_zero < to_start), to_zero,
                                to_start)
        threshold = spacing * 1.1
        extrapolated = (sampled + np.where(to_start < threshold, to_start, spacing / 2)
                        + np.where(to_end < threshold, to_end, spacing / 2))
        value = result * (extrapolated / sampled) / (WINDOW_MS / 1000)
    return np.where(present, value, np.nan), present


def instant(ts: np.ndarray, values: np.ndarray, evals: np.ndarray) -> np.ndarray:
    """An instant selector at each evaluation time (NaN where the value is NaN)."""
    last = np.searchsorted(ts, evals, "right") - 1
    assert (last >= 0).all() and (ts[last] > evals - WINDOW_MS).all()
    return values[last]


def histogram_quantile(q: float, cumulative: np.ndarray, bounds: tuple[float, ...]) -> np.ndarray:
    """Prometheus' histogram_quantile on per-bucket rates (columns: bounds, then +Inf)."""
    counts = np.maximum.accumulate(cumulative, axis=1)  # ensureMonotonic
    observations = counts[:, -1]
    rank = q * observations
    reached = counts[:, :-1] >= rank[:, None]
    b = np.where(reached.any(axis=1), reached.argmax(axis=1), counts.shape[1] - 1)
    upper = np.array([*bounds, np.inf])
    rows = np.arange(len(counts))
    below = np.where(b > 0, counts[rows, np.maximum(b - 1, 0)], 0.0)
    start = np.where(b > 0, upper[np.maximum(b - 1, 0)], 0.0)
    end = upper[np.minimum(b, len(bounds) - 1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = start + (end - start) * ((rank - below) / (counts[rows, b] - below))
    value = np.where(b == len(bounds), upper[len(bounds) - 1], inside)
    return np.where(observations == 0, np.nan, value)


def _by_model(history: History) -> dict[str, list[Scraped]]:
    grouped: dict[str, list[Scraped]] = {}
    for run in history.targets:
        grouped.setdefault(run.target.model, []).append(run)
    return grouped


def expected(history: History, evals: np.ndarray,
             error_reasons: tuple[str, ...] = ("abort", "error")) -> dict[tuple[str, str],
                                                                          np.ndarray]:
    """(model, metric) -> the preset's value at each evaluation time (NaN: no finite value)."""
    answers: dict[tuple[str, str], np.ndarray] = {}
    for model, runs in _by_model(history).items():
        for attr, bounds, name in (("e2e", E2E_BOUNDS, "latency"), ("ttft", TTFT_BOUNDS, "ttft")):
            buckets = sum(np.stack([rate(Series(run.ts, getattr(run, attr)[:, k]), evals)[0]
                                    for k in range(len(bounds) + 1)], axis=1) for run in runs)
            for q, tag in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
                answers[(model, f"{name}_{tag}_ms")] = 1000 * histogram_quantile(
                    q, np.asarray(buckets), bounds)
        failed = np.zeros(len(evals))
        failed_present = np.zeros(len(evals), dtype=bool)
        finished = np.zeros(len(evals))
        for run in runs:
            for reason, series in run.reasons.items():
                value, present = rate(series, evals)
                finished += np.where(present, value, 0.0)
                if reason in error_reasons:
                    failed += np.where(present, value, 0.0)
                    failed_present |= present
        with np.errstate(divide="ignore", invalid="ignore"):
            answers[(model, "error_rate")] = np.where(failed_present, failed,
                                                      0 * finished) / finished
        answers[(model, "requests_per_s")] = finished
        prompt = sum(rate(Series(run.ts, run.prompt), evals)[0] for run in runs)
        generation = sum(rate(Series(run.ts, run.generation), evals)[0] for run in runs)
        answers[(model, "tokens_per_s")] = np.asarray(prompt + generation)
        answers[(model, "requests_waiting")] = np.asarray(
            sum(instant(run.ts, run.waiting, evals) for run in runs))
        answers[(model, "kv_cache_usage_percent")] = 100 * np.mean(
            [instant(run.ts, run.kv, evals) for run in runs], axis=0)
    return answers
