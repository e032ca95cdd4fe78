"""Precursor anomalies on the sample fleet: how many anomalies and precursors a refresh reports,
how many precursors are injected ones (data/fleet/truth.json) and how many are false alarms.

Each day of the last ``--days`` of the fleet is scanned as one refresh would scan it at its end
(24 h lookback, points up to then only), so the days together cover the period once.

Usage:
    python bench/precursors.py [--days 7]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecaster.engine.precursors import Anomaly, PrecursorSettings, SeriesInput, scan  # noqa: E402
from forecaster.kinds import metric_kind  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    fleet = ROOT / "data" / "fleet"
    truth = json.loads((fleet / "truth.json").read_text())
    points = pl.read_parquet(fleet / "points.parquet").sort("service", "metric", "ts")
    windows = [(w["unique_id"], datetime.fromisoformat(w["start"]),
                datetime.fromisoformat(w["end"])) for w in truth["anomalies"]]
    [incident] = truth["incidents"]
    incident_at = datetime.fromisoformat(incident["start"])
    settings = PrecursorSettings(lookback=timedelta(days=1))
    inputs = []
    for k, ((service, metric), frame) in enumerate(points.group_by(["service", "metric"],
                                                                   maintain_order=True)):
        inputs.append(SeriesInput(k, str(service), str(metric), metric_kind(str(metric)).value,
                                  frame["ts"].to_numpy().astype("datetime64[us]"),
                                  frame["value"].to_numpy()))
    end = datetime.fromisoformat(truth["end"])
    started = time.perf_counter()
    found = []
    for day in range(args.days, 0, -1):
        now = end - timedelta(days=day - 1) - timedelta(minutes=5)
        day_found, failures = scan(inputs, now, settings)
        assert not failures, failures
        found.extend(day_found)
    seconds = time.perf_counter() - started

    def injected(a: Anomaly) -> bool:
        uid = f"{a.service}:{a.metric}"
        return any(uid == w and start - timedelta(minutes=5) <= a.ts <= stop
                   for w, start, stop in windows)

    precursors = [a for a in found if a.precursor]
    true_ones = [a for a in precursors if injected(a)]
    first = min((a.ts for a in true_ones), default=None)
    figures = {
        "days": args.days, "series": len(inputs), "services": points["service"].n_unique(),
        "anomalies": len(found), "precursors": len(precursors),
        "precursors_injected": len(true_ones),
        "precursors_false": len(precursors) - len(true_ones),
        "injected_windows": len(windows),
        "injected_windows_found": sum(
            any(f"{a.service}:{a.metric}" == w and s - timedelta(minutes=5) <= a.ts <= e
                for a in found) for w, s, e in windows),
        "injected_windows_found_as_precursor": sum(
            any(f"{a.service}:{a.metric}" == w and s - timedelta(minutes=5) <= a.ts <= e
                for a in precursors) for w, s, e in windows),
        "first_precursor_before_incident_h": round((incident_at - first).total_seconds() / 3600,
                                                   2) if first else None,
        "anomalies_per_series_day": round(len(found) / (len(inputs) * args.days), 4),
        "seconds": round(seconds, 1),
        "seconds_per_series_scan": round(seconds / (len(inputs) * args.days), 4),
    }
    for a in sorted(precursors, key=lambda a: a.ts):
        print(f"{a.ts:%Y-%m-%d %H:%M} {a.service}:{a.metric} {a.score:.4f} "
              f"with {','.join(a.corroborated_by)} {'injected' if injected(a) else 'FALSE'}",
              file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
