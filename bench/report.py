"""Time to make the weekly capacity-planning report, against the refresh of the same data in the
same run (the ratio is the comparable figure: these machines are shared and noisy).

The sample fleet (data/fleet: 6 services, 54 series, 42 with a policy) is loaded as it is and as
``--copies`` renamed copies of its services (copy k of ``chat-api`` is ``chat-api-k``), so a
fleet of 1,000 series is ``--copies 19``. For each size: one refresh as of the end of the data
(statsforecast model selection, forecasts, anomalies, time to intervention), then the report of
that week (capacity fits per service, demand paths, every chart, HTML and JSON).

Usage:
    python bench/report.py [--copies 1,4]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecaster.config import Settings  # noqa: E402
from forecaster.pipeline import run_once  # noqa: E402
from forecaster.policies import Policy, load_policies  # noqa: E402
from forecaster.report.gather import make  # noqa: E402
from forecaster.sources.files import ingest_points_frame  # noqa: E402
from forecaster.store import Store  # noqa: E402

DATA = ROOT / "data"


def fleet(copies: int) -> tuple[pl.DataFrame, tuple[Policy, ...]]:
    points = pl.read_parquet(DATA / "fleet" / "points.parquet")
    policies = load_policies(DATA / "policies.toml")
    if copies == 1:
        return points, policies
    frames = [points.with_columns((pl.col("service") + f"-{k}").alias("service"))
              for k in range(copies)]
    per_service = [p for p in policies if p.service is not None]
    general = tuple(p for p in policies if p.service is None)
    renamed = tuple(Policy(p.metric, p.limit, p.direction, p.action, p.lead_time,
                           service=f"{p.service}-{k}", freq=p.freq, horizon=p.horizon)
                    for k in range(copies) for p in per_service)
    return pl.concat(frames), general + renamed


def measure(copies: int, folder: Path) -> dict[str, object]:
    points, policies = fleet(copies)
    truth = json.loads((DATA / "fleet" / "truth.json").read_text())
    as_of = datetime.fromisoformat(truth["end"])
    settings = Settings(db=folder / f"bench-{copies}.duckdb")
    with Store.open(settings.db, now=as_of, settings=settings) as store:
        ingest_points_frame(store, points, now=as_of)
        started = time.perf_counter()
        result = run_once(store, settings, policies, as_of, trigger="bench")
        refresh_s = time.perf_counter() - started
        assert result.status == "published", result.error
        started = time.perf_counter()
        made = make(store, policies, None, as_of, (1.3,), settings.seed)
        report_s = time.perf_counter() - started
    series = points.select("service", "metric").unique().height
    return {"copies": copies, "series": series,
            "services": len(made.report.plans), "refresh_s": round(refresh_s, 1),
            "report_s": round(report_s, 1), "report_per_refresh": round(report_s / refresh_s, 3),
            "html_mb": round(len(made.html.encode()) / 1e6, 2),
            "json_kb": round(len(made.json.encode()) / 1e3, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", default="1,4",
                        help="comma-separated fleet copies to measure (19 gives 1,026 series)")
    args = parser.parse_args()
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for copies in (int(c) for c in args.copies.split(",")):
            row = measure(copies, Path(tmp))
            print(f"{row['series']} series ({row['services']} services): refresh "
                  f"{row['refresh_s']} s, report {row['report_s']} s (ratio "
                  f"{row['report_per_refresh']}), HTML {row['html_mb']} MB", file=sys.stderr)
            figures.append(row)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
