"""Ingest throughput: bulk points (Parquet) and request-log roll-up, against raw DuckDB loads.

Each phase runs in its own process so that its peak memory (max RSS) is its own. The baseline in
the same run is DuckDB loading the same Parquet file into a table with no validation, merge or
roll-up (``CREATE TABLE AS SELECT * FROM read_parquet``); the ratio says what validation and
de-duplication cost on this machine today.

Usage:
    python bench/ingest.py [--rows 10000000] [--requests 10000000] [--workdir DIR]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START_US = int(datetime(2026, 1, 1).timestamp() * 1_000_000)


def make_points(path: Path, rows: int, n_series: int = 1000) -> None:
    """``rows`` points of ``n_series`` series (50 services x 20 metrics), 5 minutes apart."""
    rng = np.random.default_rng(1)
    per = rows // n_series
    sid = np.repeat(np.arange(n_series), per)
    ts = START_US + np.tile(np.arange(per, dtype=np.int64) * 300_000_000, n_series)
    services = pa.array([f"svc-{i % 50:02d}" for i in range(n_series)])
    metrics = pa.array([f"gauge_{i // 50:02d}" for i in range(n_series)])
    table = pa.table({
        "ts": pa.array(ts, pa.timestamp("us")),
        "service": services.take(pa.array(sid)),
        "metric": metrics.take(pa.array(sid)),
        "value": rng.normal(100.0, 10.0, sid.size),
    })
    pq.write_table(table, path)


def make_requests(path: Path, rows: int, n_services: int = 20, days: int = 7) -> None:
    """``rows`` LLM requests of ``n_services`` services spread over ``days`` days."""
    rng = np.random.default_rng(2)
    span_us = days * 86_400 * 1_000_000
    ts = np.sort(START_US + rng.integers(0, span_us, rows, dtype=np.int64))
    latency = rng.lognormal(6.0, 0.5, rows)
    quality = np.where(rng.random(rows) < 0.05, rng.beta(9, 1, rows), np.nan)
    feedback = np.where(rng.random(rows) < 0.1, rng.choice([-1.0, 1.0], rows), np.nan)
    table = pa.table({
        "ts": pa.array(ts, pa.timestamp("us")),
        "service": pa.array([f"svc-{i:02d}" for i in range(n_services)]).take(
            pa.array(rng.integers(0, n_services, rows))),
        "latency_ms": latency,
        "ttft_ms": latency * rng.uniform(0.1, 0.4, rows),
        "status": np.where(rng.random(rows) < 0.01, 500, 200).astype(np.int32),
        "prompt_tokens": rng.integers(10, 4000, rows).astype(np.int64),
        "completion_tokens": rng.integers(1, 800, rows).astype(np.int64),
        "quality_score": pa.array(quality, from_pandas=True),
        "feedback": pa.array(feedback, from_pandas=True),
    })
    pq.write_table(table, path)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_phase(phase: str, file: Path, db: Path) -> dict[str, float]:
    """One measured phase, in this process."""
    now = datetime(2026, 11, 26)
    if phase.startswith("raw"):
        import duckdb

        con = duckdb.connect(str(db))
        t0 = time.perf_counter()
        con.execute("CREATE TABLE t AS SELECT * FROM read_parquet(?)", [str(file)])
        con.close()
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "peak_mb": _peak_mb(), "rows": -1}
    from forecaster.sources.files import ReadSpec, ingest_files
    from forecaster.store import Store

    with Store.open(db, now=now) as store:
        t0 = time.perf_counter()
        [report] = ingest_files(store, [file], phase, ReadSpec(), now)
        seconds = time.perf_counter() - t0
    assert not isinstance(report, Exception), report
    assert report.rejected == 0, report.summary()
    return {"seconds": seconds, "peak_mb": _peak_mb(), "rows": report.rows,
            "stored": report.stored}


def _child(phase: str, file: Path, db: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--file", str(file), "--db", str(db)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="points in the bulk file")
    parser.add_argument("--requests", type=int, default=10_000_000, help="requests in the log")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.file, args.db)))
        return

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        points, requests = work / "points.parquet", work / "requests.parquet"
        t0 = time.perf_counter()
        make_points(points, args.rows)
        make_requests(requests, args.requests)
        print(f"generated inputs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        results = {}
        for phase, file in (("raw-points", points), ("points", points),
                            ("raw-requests", requests), ("requests", requests)):
            results[phase] = _child(phase, file, work / f"{phase}.duckdb")
            print(f"{phase}: {results[phase]}", file=sys.stderr)
    pts, req = results["points"], results["requests"]
    raw_p, raw_r = results["raw-points"], results["raw-requests"]
    figures = {
        "points_rows": pts["rows"],
        "points_rows_per_s": round(pts["rows"] / pts["seconds"]),
        "points_seconds": round(pts["seconds"], 3),
        "points_peak_mb": round(pts["peak_mb"]),
        "points_raw_duckdb_rows_per_s": round(args.rows / raw_p["seconds"]),
        "points_vs_raw_duckdb": round(raw_p["seconds"] / pts["seconds"], 3),
        "requests_rows": req["rows"],
        "requests_rows_per_s": round(req["rows"] / req["seconds"]),
        "requests_seconds": round(req["seconds"], 3),
        "requests_points_stored": req["stored"],
        "requests_peak_mb": round(req["peak_mb"]),
        "requests_raw_duckdb_rows_per_s": round(args.requests / raw_r["seconds"]),
        "requests_vs_raw_duckdb": round(raw_r["seconds"] / req["seconds"], 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
