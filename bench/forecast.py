"""Refresh time: the demo fleet and 1,000 synthetic series (28 days of 5-minute data).

Each refresh is split into read, prepare, selection (cross-validation of the model pool),
forecast, anomalies (precursor detection over every series), time to intervention and publish.
Two refreshes are timed per data set: the first chooses every model, the second reuses the
choices (as refreshes do until a choice is a day old). The baseline in the
same run is statsforecast's SeasonalNaive over the same hourly series: the cheapest possible
forecasting pass, so ``forecast_vs_seasonal_naive`` says what the real models cost over it.

Usage:
    python bench/forecast.py [--series 1000] [--jobs 1]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecaster.config import Settings  # noqa: E402
from forecaster.pipeline import run_once  # noqa: E402
from forecaster.policies import load_policies  # noqa: E402
from forecaster.sources.files import ReadSpec, ingest_files  # noqa: E402
from forecaster.store import Store  # noqa: E402

METRICS = ("latency_p95_ms", "ttft_p95_ms", "error_rate", "negative_feedback_rate")


def synthetic(path: Path, n_series: int, days: int = 28, seed: int = 11) -> datetime:
    """``n_series`` seasonal series with random trends, 5-minute points; returns their end."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 10, 29)
    n = days * 288
    t = np.arange(n) / 288.0
    ts = np.datetime64(start, "us") + np.arange(n) * np.timedelta64(300, "s")
    frames = []
    for i in range(n_series):
        metric = METRICS[i % len(METRICS)]
        daily = 1 + 0.3 * np.cos(2 * np.pi * (t - 0.6)) + 0.1 * ((t.astype(int) % 7) < 5)
        trend = np.exp(rng.normal(0.0, 0.01) * t)
        noise = rng.lognormal(0, 0.05, n)
        if metric.endswith("_ms"):
            values = rng.uniform(200, 900) * daily * trend * noise
        else:
            values = np.clip(rng.uniform(0.005, 0.05) * daily * trend * noise, 0, 1)
        frames.append(pl.DataFrame({"ts": ts, "service": f"svc-{i // len(METRICS):04d}",
                                    "metric": metric, "value": values}))
    pl.concat(frames).write_parquet(path)
    return start + timedelta(days=days)


def refresh_twice(db: Path, policies_path: Path | None, now: datetime,
                  settings: Settings) -> dict[str, object]:
    policies = load_policies(policies_path)
    with Store.open(db, now=now, settings=settings) as store:
        first = run_once(store, settings, policies, now, reselect=True)
        second = run_once(store, settings, policies, now + timedelta(minutes=15))
    assert first.status == second.status == "published"
    return {
        "series": first.series, "failed": first.failed,
        "first": {k: round(v, 3) for k, v in first.timings.items()},
        "reuse": {k: round(v, 3) for k, v in second.timings.items()},
    }


def seasonal_naive_seconds(db: Path, now: datetime) -> float:
    """The baseline: SeasonalNaive(24) on the same hourly series, in this process."""
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    with Store.open(db, now=now) as store:
        history = store.history(end=now + timedelta(seconds=1))
    hourly = (history.group_by("unique_id", pl.col("ds").dt.truncate("1h"))
              .agg(pl.col("y").max()).sort("unique_id", "ds"))
    t0 = time.perf_counter()
    StatsForecast(models=[SeasonalNaive(24)], freq="1h").forecast(df=hourly, h=336, level=[80])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1, help="statsforecast n_jobs")
    args = parser.parse_args()
    settings = Settings(forecast_jobs=args.jobs)
    figures: dict[str, object] = {"jobs": args.jobs}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The demo fleet, built as `make demo` builds it.
        truth = json.loads((ROOT / "data" / "fleet" / "truth.json").read_text())
        end = datetime.fromisoformat(truth["end"])
        demo_db = work / "demo.duckdb"
        with Store.open(demo_db, now=end) as store:
            ingest_files(store, [ROOT / "data" / "fleet" / "points.parquet"], "points",
                         ReadSpec(), end)
            for event in truth["events"]:
                store.add_event(service=event["service"], kind=event["kind"], now=end,
                                ts=datetime.fromisoformat(event["ts"]))
        figures["demo"] = refresh_twice(demo_db, ROOT / "data" / "policies.toml", end, settings)
        print(f"demo: {figures['demo']}", file=sys.stderr)

        points = work / "synthetic.parquet"
        now = synthetic(points, args.series)
        db = work / "synthetic.duckdb"
        with Store.open(db, now=now) as store:
            t0 = time.perf_counter()
            ingest_files(store, [points], "points", ReadSpec(), now)
            ingest_s = time.perf_counter() - t0
        result = refresh_twice(db, None, now, settings)
        result["ingest_s"] = round(ingest_s, 3)
        baseline = seasonal_naive_seconds(db, now)
        result["seasonal_naive_forecast_s"] = round(baseline, 3)
        first = result["first"]
        assert isinstance(first, dict)
        result["forecast_vs_seasonal_naive"] = round(first["forecast"] / baseline, 2)
        result["per_series_ms_first"] = round(first["total"] / args.series * 1000, 1)
        reuse = result["reuse"]
        assert isinstance(reuse, dict)
        result["per_series_ms_reuse"] = round(reuse["total"] / args.series * 1000, 1)
        figures[f"synthetic_{args.series}"] = result
        print(f"synthetic: {result}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
