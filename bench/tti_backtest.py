"""Accuracy of time to intervention: rolling-origin backtest of forecaster against
Prometheus-style ``predict_linear`` (6 h, 24 h), a Zabbix ``timeleft``-style fit (7 d) and
seasonal naive, in the same run (see forecaster/backtest.py for the methods and figures).

Data sets:

- ``fleet``: the sample fleet (data/fleet), its 28 observed days followed by the 14 hidden ones
  (future.parquet) as the truth; every series with a policy (data/policies.toml); a cut-off
  every ``--every`` hours over the last 14 observed days.
- ``nab``: real series from ../shared/data/nab: realKnownCause machine_temperature_system_failure,
  ec2_request_latency_system_failure, cpu_utilization_asg_misconfiguration, and every
  realAWSCloudwatch series. The limit comes from one rule, the same for every series: the
  reference is the data before the first labelled anomaly window (the first 15% when a file has
  none); the direction is ``below`` when the windows' median lies below the reference median and
  ``above`` otherwise; the limit is the reference's maximum (minimum for ``below``): the first
  level never seen in normal operation. Policy: hourly buckets, a 2-day horizon, 1 h lead time.
  Cut-offs every ``--every`` hours from 3 days after the start to 2 days before the end (at most
  ``--max-cutoffs`` per series, evenly spread). The files come from different years; they are
  run as one fleet, each moved by whole weeks so that all start within the same week (time of
  day and weekday kept), so that the recalibration map learns, as in production, from the
  fleet's estimates scored before each cut-off.

Usage:
    python bench/tti_backtest.py [--every 24] [--max-cutoffs 12] [--sets fleet,nab]

The last line printed is one JSON object: per data set, the figures of every method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecaster.backtest import Result, Series, round_figures, run, score  # noqa: E402
from forecaster.config import Settings  # noqa: E402
from forecaster.kinds import metric_kind  # noqa: E402
from forecaster.policies import Policy, load_policies, policy_for  # noqa: E402
from forecaster.summary import render_backtest  # noqa: E402

NAB = ROOT.parent / "shared" / "data" / "nab"
NAB_FILES = ("realKnownCause/machine_temperature_system_failure.csv",
             "realKnownCause/ec2_request_latency_system_failure.csv",
             "realKnownCause/cpu_utilization_asg_misconfiguration.csv")


def fleet(every: timedelta, settings: Settings) -> tuple[Result, dict[str, object]]:
    data = ROOT / "data" / "fleet"
    truth = json.loads((data / "truth.json").read_text())
    points = pl.concat([pl.read_parquet(data / "points.parquet"),
                        pl.read_parquet(data / "future.parquet")]).sort("service", "metric", "ts")
    policies = load_policies(ROOT / "data" / "policies.toml")
    series = []
    for k, ((service, metric), frame) in enumerate(points.group_by(["service", "metric"],
                                                                   maintain_order=True)):
        policy = policy_for(policies, str(service), str(metric))
        if policy is None:
            continue
        series.append(Series(k, str(service), str(metric), metric_kind(str(metric)).value,
                             policy, frame["ts"].to_numpy().astype("datetime64[us]"),
                             frame["value"].to_numpy()))
    end = datetime.fromisoformat(truth["end"]) - timedelta(minutes=5)
    cutoffs = [end - every * i for i in range(int(timedelta(days=14) / every), -1, -1)]
    events: dict[str, list[datetime]] = {}
    for e in truth["events"]:
        events.setdefault(e["service"], []).append(datetime.fromisoformat(e["ts"]))
    return run(series, cutoffs, settings, events), {"series": len(series),
                                                    "cutoffs": len(cutoffs)}


def nab_limit(values: np.ndarray, ts: np.ndarray, windows: list[list[str]]) -> tuple[float, str]:
    """The documented rule: the first level never seen before the first anomaly window."""
    if windows:
        first = np.datetime64(windows[0][0].replace(" ", "T"), "us")
        reference = values[ts < first]
        inside = np.concatenate([values[(ts >= np.datetime64(a.replace(" ", "T"), "us"))
                                        & (ts <= np.datetime64(b.replace(" ", "T"), "us"))]
                                 for a, b in windows])
    else:
        reference, inside = values[: int(0.15 * values.size)], values
    if reference.size == 0:
        reference = values[: int(0.15 * values.size)]
    below = inside.size > 0 and np.median(inside) < np.median(reference)
    return (float(reference.min()), "below") if below else (float(reference.max()), "above")


def nab(every: timedelta, max_cutoffs: int, settings: Settings) -> tuple[Result, dict[str, object]]:
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    names = list(NAB_FILES) + sorted(n for n in windows if n.startswith("realAWSCloudwatch/"))
    frames = [pl.read_csv(NAB / "data" / name, try_parse_dates=True) for name in names]
    starts = [f["timestamp"].min() for f in frames]
    week = timedelta(days=7)
    all_series, only, limits = [], {}, {}
    for k, (name, frame) in enumerate(zip(names, frames, strict=True)):
        ts = frame["timestamp"].to_numpy().astype("datetime64[us]")
        values = frame["value"].to_numpy().astype(float)
        limit, direction = nab_limit(values, ts, windows[name])
        shift = ((starts[k] - min(starts)) // week) * week
        ts = ts - np.timedelta64(int(shift.total_seconds()), "s")
        metric = Path(name).stem.replace("-", "_")
        limits[name] = {"limit": limit, "direction": direction}
        policy = Policy(metric, limit, direction, "investigate", timedelta(hours=1),
                        horizon=timedelta(days=2))
        series = Series(k, "nab", metric, metric_kind(metric).value, policy, ts, values)
        start = ts[0].astype("datetime64[us]").item() + timedelta(days=3)
        stop = ts[-1].astype("datetime64[us]").item() - policy.horizon
        cutoffs = []
        at = start
        while at <= stop:
            cutoffs.append(at)
            at += every
        if len(cutoffs) > max_cutoffs:
            picks = np.linspace(0, len(cutoffs) - 1, max_cutoffs).round().astype(int)
            cutoffs = [cutoffs[i] for i in sorted(set(picks.tolist()))]
        all_series.append(series)
        only[k] = set(cutoffs)
    result = run(all_series, sorted(set().union(*only.values())), settings, only=only)
    return result, {"series": len(names), "limits": limits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=24.0, help="hours between cut-offs")
    parser.add_argument("--max-cutoffs", type=int, default=12)
    parser.add_argument("--sets", default="fleet,nab")
    args = parser.parse_args()
    settings = Settings()
    every = timedelta(hours=args.every)
    figures: dict[str, object] = {}
    for name in args.sets.split(","):
        started = time.perf_counter()
        if name == "fleet":
            result, about = fleet(every, settings)
        elif name == "nab":
            if not NAB.is_dir():
                print(f"NAB data not found at {NAB}; skipping", file=sys.stderr)
                continue
            result, about = nab(every, args.max_cutoffs, settings)
        else:
            raise SystemExit(f"unknown data set {name!r}; known: fleet, nab")
        scores = round_figures(score(result))
        figures[name] = {**{k: v for k, v in about.items() if k != "limits"},
                         "seconds": round(time.perf_counter() - started, 1), "methods": scores}
        print(f"{name}: {about}", file=sys.stderr)
        print(render_backtest(scores), file=sys.stderr, end="")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
