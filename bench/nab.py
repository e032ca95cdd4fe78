"""The anomaly detector on the Numenta Anomaly Benchmark (../shared/data/nab), by NAB's rules.

Every series is scored row by row without look-ahead (the probationary period is used only for
learning), one threshold per profile is swept over the whole corpus, and the normalised scores
are printed beside the published scoreboard (results/final_results.json). ``--out DIR`` writes
``DIR/<category>/<name>.csv`` (timestamp,value,anomaly_score) for any NAB scorer.

Usage:
    python bench/nab.py [--detector ecod] [--jobs 2] [--out DIR]

The last line printed is one JSON object with the three scores and the run time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecaster.engine.anomaly import AnomalySettings, score_series  # noqa: E402
from forecaster.engine.nab import PROFILES, Labels, sweep, window_rows  # noqa: E402

NAB = ROOT.parent / "shared" / "data" / "nab"


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    frame = pl.read_csv(NAB / "data" / name, try_parse_dates=True)
    return frame["timestamp"].to_numpy().astype("datetime64[us]"), frame["value"].to_numpy()


def score_file(args: tuple[str, list[list[str]], AnomalySettings]) -> tuple[str, np.ndarray,
                                                                            Labels]:
    name, windows, settings = args
    ts, values = load(name)
    labels = Labels(values.size, window_rows(ts, [(w[0], w[1]) for w in windows]))
    step = np.median(np.diff(ts)).astype("timedelta64[s]").astype(float)
    season = max(2, int(round(86400 / max(step, 1.0))))
    scores = score_series(values, replace(settings, season=season),
                          learn_until=labels.probation)
    return name, scores.onset, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="ecod")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--settle", type=int, default=None)
    args = parser.parse_args()
    if not NAB.is_dir():
        print(f"NAB data not found at {NAB}; nothing to run", file=sys.stderr)
        sys.exit(2)
    settings = AnomalySettings(detector=args.detector)
    if args.window:
        settings = replace(settings, window=args.window)
    if args.settle:
        settings = replace(settings, settle=args.settle)
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    started = time.perf_counter()
    tasks = [(name, w, settings) for name, w in sorted(windows.items())]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(score_file, tasks))
    corpus = [(scores, labels) for _, scores, labels in results]
    published = json.loads((NAB / "results" / "final_results.json").read_text())
    figures: dict[str, object] = {"detector": args.detector, "files": len(results),
                                  "windows": sum(len(lb.windows) for _, lb in corpus)}
    for profile in PROFILES:
        best = sweep(corpus, profile)
        figures[profile.name] = round(best.normalised, 1)
        figures[f"{profile.name}_threshold"] = round(best.threshold, 6)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    if args.out is not None:
        for name, scores, _ in results:
            ts, values = load(name)
            path = args.out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"timestamp": ts, "value": values, "anomaly_score": scores}).write_csv(
                path, datetime_format="%Y-%m-%d %H:%M:%S")
    board = sorted(((v["standard"], k) for k, v in published.items()), reverse=True)
    print(f"{'detector':<22} {'standard':>9} {'low FP':>8} {'low FN':>8}", file=sys.stderr)
    ours = (figures["standard"], figures["reward_low_FP_rate"], figures["reward_low_FN_rate"])
    rows = [(f"forecaster ({args.detector})", *ours)] + [
        (k, published[k]["standard"], published[k]["reward_low_FP_rate"],
         published[k]["reward_low_FN_rate"]) for _, k in board]
    for row in sorted(rows, key=lambda r: -float(r[1])):  # type: ignore[arg-type]
        print(f"{row[0]:<22} {row[1]:>9.1f} {row[2]:>8.1f} {row[3]:>8.1f}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
