"""Pulling from a real Prometheus: points per second, against a raw ``query_range`` fetch of the
same data with httpx in the same run.

A week of 1-minute samples of ``--series`` gauges (one per service) is backfilled with
``promtool tsdb create-blocks-from openmetrics`` into a temporary TSDB, served by Debian's
Prometheus (tests/promserver.py starts it) on a loopback port, and read at a 1-minute step:
- raw: one httpx POST per piece of at most 11,000 evaluations (the same pieces forecaster asks
  for) and ``response.json()``: what any client pays for Prometheus' answer;
- pull: :func:`forecaster.sources.prometheus.pull`: the same requests, then every series mapped to
  its service and every value parsed into a points frame;
- ingest: :func:`forecaster.sources.prometheus.ingest_source`: the pull, then the points validated
  and stored in a new DuckDB file (the path of file ingest).
Each is the median of ``--repeat`` runs; the ratios are to the raw fetch.

Usage:
    python bench/prometheus.py [--series 100] [--days 7] [--repeat 3] [--workdir DIR]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import promserver  # noqa: E402 - the tests' Prometheus starter, found through the path above

from forecaster.sources.prometheus import (  # noqa: E402
    EPOCH,
    MAX_POINTS,
    Connection,
    PrometheusClient,
    Source,
    chunks,
    eval_range,
    ingest_source,
    pull,
)
from forecaster.store import Store  # noqa: E402

STEP = timedelta(minutes=1)
QUERY = "bench_queue_depth"


def write_openmetrics(path: Path, series: int, start_s: int, minutes: int) -> int:
    """One gauge per service, a sample a minute (at second 17, so never on a step)."""
    rng = np.random.default_rng(7)
    stamps = [f"{start_s + 60 * i + 17}" for i in range(minutes)]
    day = np.arange(minutes) / 1440.0
    with path.open("w") as out:
        out.write("# TYPE bench_queue_depth gauge\n")
        for s in range(series):
            values = np.round(10 + 5 * np.sin(2 * np.pi * day + s) + rng.normal(0, 1, minutes), 3)
            prefix = f'bench_queue_depth{{service="svc-{s:03d}"}} '
            out.write("".join(f"{prefix}{v!r} {t}\n"
                              for v, t in zip(values.tolist(), stamps, strict=True)))
        out.write("# EOF\n")
    return series * minutes


def timed(work: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Median seconds of ``work`` over ``repeat`` runs, and the points it reported."""
    seconds, points = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        points = work()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), points


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-prometheus-"))
    work.mkdir(parents=True, exist_ok=True)
    end_s = int(time.time()) // 3600 * 3600 - 3600
    minutes = args.days * 1440 + 30
    start_s = end_s - 60 * minutes
    began = time.perf_counter()
    samples = write_openmetrics(work / "bench.om", args.series, start_s, minutes)
    done = promserver.promtool("tsdb", "create-blocks-from", "openmetrics",
                               "--max-block-duration=240h", str(work / "bench.om"),
                               str(work / "data"))
    if done.returncode != 0:
        raise SystemExit(f"promtool failed:\n{done.stderr[-3000:]}")
    (work / "bench.om").unlink()
    backfill_s = time.perf_counter() - began
    prom = promserver.start(work / "server", data=work / "data")
    try:
        start = EPOCH + timedelta(seconds=start_s + 600)
        end = EPOCH + timedelta(seconds=start_s + 60 * (minutes - 1))
        source = Source("bench", QUERY, "queue_depth", service_label="service", step=STEP)
        times = eval_range(start, end, STEP)
        assert times is not None
        pieces = chunks(*times, int(STEP.total_seconds() * 1000), MAX_POINTS)

        def raw() -> int:
            points = 0
            with httpx.Client(timeout=120) as http:
                for first, last in pieces:
                    answer = http.post(f"{prom.url}/api/v1/query_range", data={
                        "query": QUERY, "start": f"{first / 1000:.3f}",
                        "end": f"{last / 1000:.3f}", "step": f"{STEP.total_seconds():g}"})
                    answer.raise_for_status()
                    points += sum(len(s["values"]) for s in answer.json()["data"]["result"])
            return points

        def pulled() -> int:
            with PrometheusClient(Connection(prom.url, timeout=timedelta(minutes=2))) as client:
                frame, _ = pull(client, source, start, end)
            return frame.height

        def ingested() -> int:
            db = work / f"bench-{time.perf_counter_ns()}.duckdb"
            now = datetime(2026, 11, 30)
            with Store.open(db, now=now) as store, \
                    PrometheusClient(Connection(prom.url, timeout=timedelta(minutes=2))) as client:
                report = ingest_source(store, client, source, start, end, now).report
            for leftover in work.glob(f"{db.name}*"):
                leftover.unlink()
            assert report is not None and report.rejected == 0
            return report.stored

        raw_s, raw_points = timed(raw, args.repeat)
        pull_s, pull_points = timed(pulled, args.repeat)
        ingest_s, ingest_points = timed(ingested, args.repeat)
    finally:
        prom.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    assert raw_points == pull_points == ingest_points, (raw_points, pull_points, ingest_points)
    figures: dict[str, object] = {
        "series": args.series, "days": args.days, "step_s": STEP.total_seconds(),
        "points": raw_points, "requests_per_pull": len(pieces), "samples_backfilled": samples,
        "backfill_s": round(backfill_s, 2),
        "raw_fetch_s": round(raw_s, 3), "raw_points_per_s": round(raw_points / raw_s),
        "pull_s": round(pull_s, 3), "pull_points_per_s": round(pull_points / pull_s),
        "ingest_s": round(ingest_s, 3), "ingest_points_per_s": round(ingest_points / ingest_s),
        "pull_vs_raw": round(raw_s / pull_s, 3), "ingest_vs_raw": round(raw_s / ingest_s, 3),
    }
    print(f"{args.series} series x {args.days} days at 1 minute: {raw_points:,} points in "
          f"{len(pieces)} request(s) per pull (backfill {backfill_s:.1f} s)")
    for name, seconds, points in (("raw httpx query_range + json", raw_s, raw_points),
                                  ("forecaster pull (points frame)", pull_s, pull_points),
                                  ("forecaster pull + store", ingest_s, ingest_points)):
        print(f"  {name:32s} {seconds:7.3f} s  {points / seconds:12,.0f} points/s  "
              f"{raw_s / seconds:6.2f}x raw")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
