"""Readable text views: what is stored, and a run's answers."""

from __future__ import annotations

import json
import math
from datetime import datetime

import polars as pl

from forecaster.wording import relative_time


def _fmt(value: float | None, unit: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "1/s":
        return f"{value:,.1f}/s"
    magnitude = abs(value)
    if magnitude != 0 and magnitude < 0.1:
        return f"{value:.4f}"
    return f"{value:,.3f}" if magnitude < 10 else f"{value:,.1f}"


def _change(recent: float | None, before: float | None) -> str:
    if recent is None or before is None or before == 0:
        return "-"
    return f"{(recent / before - 1.0) * 100.0:+.1f}%"


def render_summary(summary: pl.DataFrame) -> str:
    """Render :meth:`Store.series_summary` as text, one block per service.

    Args:
        summary: One row per series (service, metric, unit, points, first_ts, last_ts,
            last_value, mean_last_day, mean_week_before, min_value, max_value).

    Returns:
        The text, ending with a newline; a hint when nothing is stored.
    """
    if summary.is_empty():
        return "No points stored yet. Add some with `forecaster ingest points FILE`.\n"
    lines: list[str] = []
    header = (f"  {'metric':<24} {'points':>7} {'last':>12} {'mean 24h':>12} "
              f"{'vs 7d ago':>10} {'min':>12} {'max':>12}")
    for key, block in summary.group_by("service", maintain_order=True):
        service = str(key[0])
        first = block.select(pl.col("first_ts").min()).item()
        last = block.select(pl.col("last_ts").max()).item()
        lines.append(f"{service}: {block.height} series, {block['points'].sum():,} points, "
                     f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC")
        lines.append(header)
        for row in block.iter_rows(named=True):
            unit = row["unit"]
            lines.append(
                f"  {row['metric']:<24} {row['points']:>7,} {_fmt(row['last_value'], unit):>12} "
                f"{_fmt(row['mean_last_day'], unit):>12} "
                f"{_change(row['mean_last_day'], row['mean_week_before']):>10} "
                f"{_fmt(row['min_value'], unit):>12} {_fmt(row['max_value'], unit):>12}")
        lines.append("")
    return "\n".join(lines)


def _eta(row: dict[str, object], now: datetime) -> str:
    p10, p50, p90 = (row[k] for k in ("eta_p10", "eta_p50", "eta_p90"))
    if p50 is None and p10 is None:
        return "-"
    return (f"{relative_time(p50, now)} [{relative_time(p10, now)} to "  # type: ignore[arg-type]
            f"{relative_time(p90, now) if p90 else 'later'}]")  # type: ignore[arg-type]


def service_answers(interventions: pl.DataFrame) -> pl.DataFrame:
    """Each service's most urgent series (the frame comes ranked, most urgent first)."""
    return interventions.unique(subset="service", keep="first", maintain_order=True)


def _series_count(run: dict[str, object], shown: int) -> int:
    """How many series the run answered for (its detail says; the frame shown may be one row per
    service)."""
    detail = run.get("detail")
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            detail = None
    count = detail.get("series") if isinstance(detail, dict) else None
    return count if isinstance(count, int) else shown


def render_interventions(interventions: pl.DataFrame, run: dict[str, object] | None,
                         now: datetime, show_all: bool = False) -> str:
    """Render a run's answers: one line per service, then the series that need attention.

    Args:
        interventions: :meth:`Store.interventions`, ranked.
        run: The run's row from :meth:`Store.runs`, for the header.
        now: Times are shown relative to this.
        show_all: Also list the series that are ``ok``.
    """
    if run is None or interventions.is_empty():
        return "No published run yet. Run `forecaster refresh` first.\n"
    lines = [f"Run {run['run_id']} as of {run['as_of']:%Y-%m-%d %H:%M} UTC: "  # type: ignore[str-format]
             f"{_series_count(run, interventions.height)} series with a policy.", "",
             "By service (most urgent series first):",
             f"  {'service':<13} {'decision':<9} {'series':<24} {'p':>5}  "
             f"{'eta p50 [p10 to p90]':<26} {'act by':<8} action"]
    for row in service_answers(interventions).iter_rows(named=True):
        p = "-" if row["p_breach"] is None else f"{row['p_breach']:.2f}"  # none when stale
        lines.append(f"  {row['service']:<13} {row['decision']:<9} {row['metric']:<24} "
                     f"{p:>5}  {_eta(row, now):<26} "
                     f"{relative_time(row['act_by'], now):<8} {row['action']}")
    shown = interventions if show_all else interventions.filter(pl.col("decision") != "ok")
    if shown.height:
        lines += ["", "Series:" if show_all else "Series that need attention:"]
        for row in shown.iter_rows(named=True):
            model = f", model {row['model']}" if row["model"] is not None else ""
            lines.append(f"  {row['unique_id']} [{row['decision']}{model}]")
            lines.append(f"    {row['reason']}")
    ok = interventions.filter(pl.col("decision") == "ok").height
    if not show_all:
        lines += ["", f"{ok} series ok (--all lists them)."]
    return "\n".join(lines) + "\n"


def render_anomalies(anomalies: pl.DataFrame, run: dict[str, object] | None) -> str:
    """Render a run's anomalies, newest first, precursors marked.

    Args:
        anomalies: :meth:`Store.anomalies`.
        run: The run's row, for the header.
    """
    if run is None:
        return "No published run yet. Run `forecaster refresh` first.\n"
    precursors = int(anomalies["precursor"].sum()) if anomalies.height else 0
    lines = [f"Run {run['run_id']} as of {run['as_of']:%Y-%m-%d %H:%M} UTC: "  # type: ignore[str-format]
             f"{anomalies.height} anomalies, {precursors} precursors "
             "(corroborated by another kind of metric of the service)."]
    for row in anomalies.iter_rows(named=True):
        mark = f"precursor, with {row['corroborated_by']}" if row["precursor"] else "alone"
        lines.append(f"  {row['ts']:%Y-%m-%d %H:%M}  {row['unique_id']:<36} "
                     f"{row['score']:.4f}  {mark}")
        lines.append(f"    {row['detail']}")
    return "\n".join(lines) + "\n"


def render_backtest(figures: dict[str, dict[str, float | int | None]]) -> str:
    """Render :func:`forecaster.backtest.score`'s figures, one line per method."""

    def cell(value: float | int | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    lines = [f"{'method':<20} {'cut-offs':>8} {'crossed':>7} {'ETA MAE h':>9} {'coverage':>8} "
             f"{'of crossed':>10} {'given int':>9} {'Brier':>6} {'false alarms':>12} "
             f"{'missed':>6} {'lead h':>6}"]
    for method, f in figures.items():
        lines.append(f"{method:<20} {f['cutoffs']:>8} {f['with_crossing']:>7} "
                     f"{cell(f['eta_mae_h']):>9} {cell(f['coverage']):>8} "
                     f"{cell(f['coverage_crossed']):>10} {cell(f['coverage_given_interval']):>9} "
                     f"{cell(f['brier']):>6} {f['false_alarms']:>12} {f['missed']:>6} "
                     f"{cell(f['lead_h_median']):>6}")
    return "\n".join(lines) + "\n"
