"""Read what a week's report needs from a store (a file or a server: the same reads), once, and
make the report: its figures, the HTML page and the JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from forecaster.errors import InputError
from forecaster.policies import Policy, policy_for
from forecaster.report import build, html
from forecaster.report.week import Week, week_of

if TYPE_CHECKING:
    from forecaster.store import Store


@dataclass(frozen=True, slots=True)
class Made:
    """A report, ready to keep or serve.

    Attributes:
        report: Its figures.
        html: The self-contained page.
        json: The figures as JSON.
    """

    report: build.Report
    html: str
    json: str


def latest_week(store: Store) -> Week:
    """The week of the newest published run (the most recent week a report can be made for).

    Raises:
        InputError: no run has been published yet.
    """
    run = store.run()
    if run is None:
        raise InputError("no published run yet: refresh first (`forecaster refresh`)")
    return week_of(run["as_of"])


def gather(store: Store, policies: Sequence[Policy], week: Week) -> build.Inputs:
    """Everything a report of ``week`` reads, from the latest run published in it.

    Raises:
        InputError: no run was published in the week; the message names the week and the
            nearest run.
    """
    run = store.run_before(week.end)
    if run is None or run["as_of"] < week.start:
        last = store.run()
        hint = ("no run has been published yet" if last is None else
                f"the newest run before its end is from {run['as_of']:%Y-%m-%d %H:%M} UTC" if run
                else f"the oldest run is later, from {last['as_of']:%Y-%m-%d %H:%M} UTC")
        raise InputError(f"week {week.label}: no run was published from {week.start:%Y-%m-%d} "
                         f"to {week.end:%Y-%m-%d} (UTC); {hint}")
    as_of: datetime = run["as_of"]
    run_id = int(run["run_id"])
    previous_run = store.run_before(as_of - timedelta(days=7) + timedelta(microseconds=1))
    interventions = store.interventions(run_id)
    series = store.series()
    watched = {p for p in interventions["service"].unique().to_list()}
    series = series.filter(pl.col("service").is_in(sorted(watched)))
    history = store.history(start=as_of - build.HISTORY, end=as_of + timedelta(microseconds=1))
    history = history.filter(pl.col("unique_id").is_in(series["unique_id"].to_list()))
    events = store.events()
    if not events.is_empty():
        events = events.filter((pl.col("ts") >= week.start) & (pl.col("ts") < week.end))
    scoring, overall = store.reliability(as_of - build.SCORING_WINDOW)
    in_force = (policy_for(tuple(policies), s, m)
                for s, m in series.select("service", "metric").rows())
    used = tuple(dict.fromkeys(p for p in in_force if p is not None))
    return build.Inputs(
        week=week, run=run, interventions=interventions,
        forecasts=store.forecasts(run_id=run_id),
        previous_run=previous_run,
        previous=None if previous_run is None else store.interventions(int(previous_run["run_id"])),
        series=series, history=history,
        anomalies=store.anomalies_between(week.start, week.end),
        events=events, scoring=scoring, scoring_overall=overall, policies=used)


def make(store: Store, policies: Sequence[Policy], week: Week | None, made_at: datetime,
         factors: Sequence[float] = (1.3,), seed: int = 0) -> Made:
    """Gather, build and render the report of ``week`` (default: the newest run's week)."""
    for factor in factors:
        if not (math.isfinite(factor) and factor > 0):
            raise InputError(f"what-if factor {factor!r} must be a positive number, "
                             "for example 1.3 for 30% more demand")
    inputs = gather(store, policies, week if week is not None else latest_week(store))
    report = build.build(inputs, made_at, factors, seed)
    return Made(report, html.render(report, inputs), build.to_json(report))


def render(inputs: build.Inputs, made_at: datetime, factors: Sequence[float],
           seed: int) -> tuple[str, str]:
    """Build and render gathered inputs: the page and the figures as JSON. Pure (no store, no
    clock), so the service runs it in its worker process, away from the API's event loop."""
    report = build.build(inputs, made_at, factors, seed)
    return html.render(report, inputs), build.to_json(report)


def keep(store: Store, made: Made) -> None:
    """Keep a report in the store (replacing an earlier one of the same week)."""
    report = made.report
    store.save_report(week=report.week, week_start=report.start, run_id=report.run_id,
                      as_of=report.as_of, made_at=report.made_at, html=made.html,
                      figures=made.json)


def write(made: Made, folder: Path) -> Path:
    """Write ``report-YYYY-Www.html`` and ``.json`` into ``folder`` (made if missing); returns
    the HTML file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / f"report-{made.report.week}.html"
    page.write_text(made.html, encoding="utf-8")
    page.with_suffix(".json").write_text(made.json, encoding="utf-8")
    return page
