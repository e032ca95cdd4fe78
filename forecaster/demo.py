"""The demo: build a fresh database from the shipped sample fleet and show what it holds."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TextIO

from forecaster.config import Settings
from forecaster.ingest import ReadSpec, ingest_files
from forecaster.pipeline import run_once
from forecaster.policies import load_policies
from forecaster.schema import InputError
from forecaster.store import Store
from forecaster.summary import render_anomalies, render_interventions, render_summary


def run_demo(settings: Settings, data: Path, now: datetime, out: TextIO,
             as_of: datetime | None = None) -> int:
    """Rebuild ``settings.db`` from ``data/``, refresh once and print the answers.

    Args:
        settings: Where the demo database goes, DuckDB limits, decision thresholds.
        data: The folder holding ``fleet/points.parquet``, ``fleet/truth.json`` and
            ``policies.toml``.
        now: The current time (UTC, naive), recorded with ingests.
        out: Where to print.
        as_of: The time to answer for; default the end of the sample data.

    Returns:
        A process exit status.
    """
    points = data / "fleet" / "points.parquet"
    truth_path = data / "fleet" / "truth.json"
    if not points.exists():
        raise InputError(f"{points} is missing; regenerate it with "
                         f"`forecaster fleet --out {data / 'fleet'}`")
    for stale in (settings.db, settings.db.with_name(settings.db.name + ".wal")):
        stale.unlink(missing_ok=True)
    with Store.open(settings.db, now=now, settings=settings) as store:
        print(f"Building {settings.db} from {points} ...", file=out)
        for loaded in ingest_files(store, [points], "points", ReadSpec(), now):
            print(f"  {loaded if isinstance(loaded, Exception) else loaded.summary()}",
                  file=out)
        truth = json.loads(truth_path.read_text())
        for event in truth.get("events", []):
            store.add_event(service=event["service"], ts=datetime.fromisoformat(event["ts"]),
                            kind=event["kind"], now=now, detail="from the sample fleet")
        counts = store.counts()
        print(f"  {counts['series']} series, {counts['points']:,} points, "
              f"{counts['events']} events\n", file=out)
        print(render_summary(store.series_summary()), file=out)
        print("Events:", file=out)
        for row in store.events().iter_rows(named=True):
            print(f"  {row['ts']:%Y-%m-%d %H:%M} UTC  {row['service']:<12} {row['kind']}",
                  file=out)
        note = "" if as_of else " (the end of the sample data)"
        as_of = as_of or datetime.fromisoformat(truth["end"])
        policies = load_policies(data / "policies.toml")
        print(f"\nRefreshing as of {as_of:%Y-%m-%d %H:%M} UTC{note} ...", file=out)
        result = run_once(store, settings, policies, as_of, trigger="demo")
        print(f"  {result.summary()}\n", file=out)
        print(render_interventions(store.interventions(result.run_id),
                                   store.run(result.run_id), as_of), file=out)
        print(render_anomalies(store.anomalies(run_id=result.run_id), store.run(result.run_id)),
              file=out)
    print(f"The database is {settings.db}. Try `forecaster --db {settings.db} interventions "
          f"--json` or `forecaster --db {settings.db} summary`; `forecaster demo --now "
          f"2026-11-22T08:00:00Z` answers as of just before the sample incident, when its "
          f"precursors show.", file=out)
    return 0
