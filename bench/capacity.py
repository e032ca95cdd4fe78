"""Capacity on the sample fleet: learned effective capacity (p95 limit 1500 ms) per service
against the generator's law, headroom and runway, and each service's demand-driven saturation
against the hidden future (data/fleet/future.parquet).

The law (forecaster.fleet._series): p95 = p50_ms * 2.3 * (1 + 0.2 u / (1 - u)) * creep with
median-1 noise, u = rps / capacity_rps, so the true capacity at the end of the history is
u = v / (1 + v) with v = (limit / base - 1) / 0.2. The generator clips u at 0.95: where the law's
crossing lies past that (embed-batch: 440/s against a clip at 437/s) the median p95 stops short
of the limit and the observed first breach waits for noise.

Usage:
    python bench/capacity.py [--paths 500] [--seed 1]

The last line printed is one JSON object.
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

from forecaster.engine.capacity import (  # noqa: E402
    demand_paths,
    effective_capacity,
    fit_curve,
    headroom,
    saturation,
    what_if,
)
from forecaster.fleet import SERVICES  # noqa: E402

LIMIT = 1500.0
STEP = timedelta(minutes=5)


def law_capacity(name: str, t_days: float, limit: float) -> float:
    spec = next(s for s in SERVICES if s.name == name)
    creep = ((1 + spec.creep_per_day) ** (t_days - spec.creep_start_day)
             if t_days > spec.creep_start_day else 1.0)
    v = (limit / (spec.p50_ms * 2.3 * creep) - 1.0) / 0.2
    return spec.capacity_rps * v / (1.0 + v)


def fmt(value: float | None, digits: int = 1) -> str:
    return "beyond" if value is None else f"{value:.{digits}f}"


def when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%a %d %b %H:%M}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fleet = ROOT / "data" / "fleet"
    truth = json.loads((fleet / "truth.json").read_text())
    days = (datetime.fromisoformat(truth["end"]) - datetime.fromisoformat(truth["start"])).days
    points = pl.read_parquet(fleet / "points.parquet")
    future = pl.read_parquet(fleet / "future.parquet")
    crossings = {c["unique_id"]: c for c in truth["crossings"]}
    rows = []
    started = time.perf_counter()
    for i, spec in enumerate(SERVICES):
        wide = (points.filter(pl.col("service") == spec.name,
                              pl.col("metric").is_in(["requests_per_s", "latency_p95_ms"]))
                .pivot(on="metric", index="ts", values="value").sort("ts"))
        ts, load = wide["ts"].to_numpy(), wide["requests_per_s"].to_numpy()
        t0 = time.perf_counter()
        curve = fit_curve(ts, load, wide["latency_p95_ms"].to_numpy(),
                          np.random.default_rng([args.seed, i]))
        cap = effective_capacity(curve, LIMIT)
        fit_s = time.perf_counter() - t0
        room = headroom(ts, load, cap)
        ds, paths = demand_paths(ts, load, STEP, 14 * 288, args.paths,
                                 np.random.default_rng([args.seed, i, 1]))
        sat = saturation(paths, ds, STEP, cap, timedelta(days=1))
        whatif = what_if(paths, ds, STEP, cap, room.current_load, room.peak_load, [1.2],
                         timedelta(days=1))[0]
        law = law_capacity(spec.name, days - 1 / 288, LIMIT)
        fut = future.filter(pl.col("service") == spec.name,
                            pl.col("metric") == "requests_per_s").sort("ts")
        over = fut.filter(pl.col("value") > law)["ts"]
        demand_truth = over[0] if over.len() else None
        latency_truth = crossings[f"{spec.name}:latency_p95_ms"]["first_crossing_after_end"]
        low = cap.p10 if cap.p10 is not None else float("inf")
        high = cap.p90 if cap.p90 is not None else float("inf")
        sat_cover = (None if demand_truth is None or sat.eta_p10 is None
                     else sat.eta_p10 <= demand_truth <= (sat.eta_p90 or datetime.max))
        rows.append({
            "service": spec.name, "law_capacity": round(law, 1),
            "capacity": [None if v is None else round(v, 1) for v in (cap.p10, cap.p50, cap.p90)],
            "covered": low <= law <= high, "status": cap.status, "method": cap.method,
            "p_beyond": round(cap.p_beyond, 3), "load_max": round(cap.load_max, 1),
            "policy_capacity": spec.capacity_rps,
            "current": round(room.current_load, 1), "peak": round(room.peak_load, 1),
            "headroom_peak": [None if v is None else round(v, 3) for v in room.headroom_peak],
            "growth_per_week": round(room.growth_per_week, 4),
            "runway_weeks": [None if v is None else round(v, 2) for v in room.runway_weeks],
            "saturation": [when(v) for v in (sat.eta_p10, sat.eta_p50, sat.eta_p90)],
            "p_saturation": round(sat.p_saturation, 3), "act_by": when(sat.act_by),
            "saturation_x1.2": when(whatif.saturation.eta_p50),
            "demand_passes_law": when(demand_truth), "saturation_covers": sat_cover,
            "latency_first_crossing": latency_truth, "fit_s": round(fit_s, 3),
        })
        print(f"{spec.name:12s} law {law:6.1f}  learned {fmt(cap.p10)} / {fmt(cap.p50)} / "
              f"{fmt(cap.p90)} ({cap.status}, {cap.method}, seen up to {cap.load_max:.0f}; "
              f"policy {spec.capacity_rps})  headroom@peak {fmt(room.headroom_peak[1], 3)}  "
              f"growth/wk {room.growth_per_week:+.1%}  runway wk {fmt(room.runway_weeks[0], 1)}"
              f"..{fmt(room.runway_weeks[2], 1)}", file=sys.stderr)
        print(f"{'':12s} saturation {when(sat.eta_p10)} / {when(sat.eta_p50)} / "
              f"{when(sat.eta_p90)} p={sat.p_saturation:.2f} act by {when(sat.act_by)}; truth: "
              f"demand > law {when(demand_truth)}, p95 > 1500 {latency_truth}", file=sys.stderr)
    figures = {
        "services": len(rows), "covered": sum(r["covered"] for r in rows),
        "seconds": round(time.perf_counter() - started, 2), "rows": rows,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
