"""A readable per-service summary of what is stored."""

from __future__ import annotations

import math

import polars as pl


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
