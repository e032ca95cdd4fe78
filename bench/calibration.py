"""Cost of recalibration at fleet scale: what each refresh adds to read the scored record and fit
the map, against the self-scoring read it already does (``Store.reliability``) on the same table.

A store is filled with ``--series`` series x ``--days`` days of estimates published every 15
minutes, all scored (the worst case for ``reliability_window``: every estimate in the window has
its raw distribution), about 30% followed by a crossing. Each phase is timed ``--repeat`` times
(median).

Usage:
    python bench/calibration.py [--series 1000] [--days 30] [--repeat 3]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecaster.config import Settings  # noqa: E402
from forecaster.engine.calibration import fit_frame  # noqa: E402
from forecaster.store import Store  # noqa: E402

T0 = datetime(2026, 10, 1)

# Synthetic rows, written straight into the tables a refresh reads (bench set-up, not product
# SQL): one run every 15 minutes, one answer per series per run, all scored.
_RUNS = """
CREATE TEMP TABLE bench_runs AS
SELECT range AS run_id, ?::TIMESTAMP + to_microseconds(range * 900000000) AS as_of
FROM range(?)"""
_INSERT_RUNS = """
INSERT INTO runs (run_id, started_at, finished_at, as_of, status, trigger)
SELECT run_id, as_of, as_of, as_of, 'published', 'bench' FROM bench_runs"""
_INSERT_ANSWERS = """
INSERT INTO interventions (run_id, series_id, service, metric, limit_value, direction, action,
                           lead_time_s, p_breach, decision, reason, horizon_s, p_breach_raw,
                           passage)
SELECT r.run_id, s.range::INTEGER, 'svc', 'm', 1, 'above', 'scale_out', 3600, 0.5, 'watch', 'b',
       172800, random(), [3600.0 * k FOR k IN range(1, 20)]
FROM bench_runs r, range(?) s"""
_INSERT_SCORES = """
INSERT INTO estimate_scores
SELECT i.run_id, i.series_id, r.as_of, r.as_of + INTERVAL 2 DAY, c.crossing,
       c.crossing IS NOT NULL, i.p_breach, NULL, NULL, false, r.as_of
FROM interventions i JOIN bench_runs r USING (run_id),
     LATERAL (SELECT CASE WHEN random() < 0.3 THEN r.as_of + INTERVAL 5 HOUR END AS crossing) c"""


def timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "b.duckdb", now=T0) as st:
        cur = st.cursor()
        cur.execute(_RUNS, [T0, args.days * 96])
        cur.execute(_INSERT_RUNS)
        cur.execute(_INSERT_ANSWERS, [args.series])
        cur.execute(_INSERT_SCORES)
        [(scored,)] = cur.execute("SELECT count(*) FROM estimate_scores").fetchall()
        record = st.calibration_record(T0)
        baseline = timed(lambda: st.reliability(since=T0), args.repeat)
        read = timed(lambda: st.calibration_record(T0), args.repeat)
        prior, least = settings.calibration_prior, settings.calibration_min_weight
        fit = timed(lambda: fit_frame(record, prior, least), args.repeat)
        cal = fit_frame(record, prior, least)
    figures = {
        "series": args.series, "days": args.days, "scored_estimates": int(scored),
        "record_rows": record.height, "reliability_read_s": round(baseline, 3),
        "record_read_s": round(read, 3), "fit_s": round(fit, 3),
        "ratio_to_reliability_read": round((read + fit) / baseline, 2),
        "map": cal.describe() if cal else None,
    }
    print(f"{scored:,} scored estimates ({args.series} series x {args.days} days every 15 min): "
          f"self-scoring read {baseline:.2f} s; recalibration read {read:.2f} s "
          f"({record.height:,} rows) + fit {fit:.2f} s = "
          f"{figures['ratio_to_reliability_read']}x", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
