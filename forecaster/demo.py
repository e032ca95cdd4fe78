"""The demo: build a fresh database from the shipped sample fleet and show what it holds."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TextIO

from forecaster.config import Settings
from forecaster.ingest import ReadSpec, ingest_files
from forecaster.schema import InputError
from forecaster.store import Store
from forecaster.summary import render_summary


def run_demo(settings: Settings, data: Path, now: datetime, out: TextIO) -> int:
    """Rebuild ``settings.db`` from ``data/fleet`` and print a per-service summary.

    Args:
        settings: Where the demo database goes, and DuckDB limits.
        data: The folder holding ``fleet/points.parquet`` and ``fleet/truth.json``.
        now: The current time (UTC, naive).
        out: Where to print.

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
        for result in ingest_files(store, [points], "points", ReadSpec(), now):
            print(f"  {result.summary() if not isinstance(result, Exception) else result}",
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
    print(f"\nThe database is {settings.db}; explore it with "
          f"`forecaster --db {settings.db} summary`.", file=out)
    return 0
