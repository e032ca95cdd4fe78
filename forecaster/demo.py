"""The demo: build its own database from the shipped sample fleet and show what it holds.

The demo rebuilds only databases it made (a marker inside the file says so) and only while it
holds the file's lock, so it can never delete a user's data or a file a server is serving.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from forecaster.config import Settings, demand_factors
from forecaster.errors import InputError
from forecaster.policies import load_policies
from forecaster.sources.files import ReadSpec, ingest_files
from forecaster.store import Store
from forecaster.store.lock import ForeignDatabaseError
from forecaster.summary import render_anomalies, render_interventions, render_summary

DEMO_DB = Path(".demo/demo.duckdb")
MAKER = "demo"


class DemoRunFailed(RuntimeError):
    """The demo's refresh ran and failed; the message is the run's error."""


def open_demo_db(db: Path, now: datetime, settings: Settings) -> Store:
    """Open ``db`` empty for the demo: created, or rebuilt only if the demo made it.

    Raises:
        StoreLockedError: another process (a server, say) holds the file; it is untouched.
        ForeignDatabaseError: the file was not made by the demo; it is untouched.
    """
    try:
        return Store.rebuild(db, maker=MAKER, now=now, settings=settings)
    except ForeignDatabaseError as exc:
        raise ForeignDatabaseError(
            f"{exc}. The demo only rebuilds databases it made itself, so it leaves this one "
            f"alone: run the demo without --db (it builds {DEMO_DB}) or give --db a new file "
            "name.") from None


def run_demo(settings: Settings, data: Path, clock: Callable[[], datetime], out: TextIO,
             as_of: datetime | None = None) -> datetime:
    """Rebuild the demo database ``settings.db`` from ``data/``, refresh once, print the answers.

    Args:
        settings: Where the demo database goes, DuckDB limits, decision thresholds.
        data: The folder holding ``fleet/points.parquet``, ``fleet/truth.json`` and
            ``policies.toml``.
        clock: The current time (UTC, naive), recorded with ingests and the run.
        out: Where to print.
        as_of: The time to answer for; default the end of the sample data.

    Returns:
        The time the answers are for.

    Raises:
        InputError: the sample data is missing.
        StoreLockedError: another process holds the database.
        ForeignDatabaseError: the database exists and the demo did not make it.
        DemoRunFailed: the refresh failed (the database holds the data and the failed run).
    """
    points = data / "fleet" / "points.parquet"
    truth_path = data / "fleet" / "truth.json"
    for needed in (points, truth_path, data / "policies.toml"):
        if not needed.exists():
            raise InputError(f"{needed} is missing; regenerate the sample fleet with "
                             f"`forecaster fleet --out {data / 'fleet'}`")
    now = clock()
    truth = json.loads(truth_path.read_text())
    with open_demo_db(settings.db, now, settings) as store:
        print(f"Building {settings.db} from {points} ...", file=out)
        for loaded in ingest_files(store, [points], "points", ReadSpec(), now):
            print(f"  {loaded if isinstance(loaded, Exception) else loaded.summary()}",
                  file=out)
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
        # Imported here, once the file is ours: a refused demo answers without loading the
        # forecasting stack.
        from forecaster.pipeline import run_once

        print(f"\nRefreshing as of {as_of:%Y-%m-%d %H:%M} UTC{note} ...", file=out)
        result = run_once(store, settings, policies, as_of, trigger="demo", clock=clock)
        print(f"  {result.summary()}\n", file=out)
        if result.status != "published":
            raise DemoRunFailed(result.error or "unknown error")
        print(render_interventions(store.interventions(result.run_id),
                                   store.run(result.run_id), as_of), file=out)
        print(render_anomalies(store.anomalies(run_id=result.run_id), store.run(result.run_id)),
              file=out)
        from forecaster.report.gather import keep, make, write

        made = make(store, policies, None, clock(), demand_factors(settings.report_what_if),
                    settings.seed)
        keep(store, made)
        page = write(made, settings.db.parent)
        print(f"The weekly capacity-planning report: {page} (figures in "
              f"{page.with_suffix('.json').name}); open it in a browser.\n", file=out)
    return as_of


def try_hint(db: Path, url: str | None = None) -> str:
    """Commands to try on the demo database, true whether or not a server holds it (the read
    commands then read through the server; a rebuild waits until it stops)."""
    where = f" (while the server at {url} holds the file they read through it)" if url else ""
    flag = "" if db == DEMO_DB else f" --db {db}"
    when = "Once the server is stopped, " if url else ""
    return (f"The database is {db}. Try{where}:\n"
            f"  forecaster --db {db} interventions --by-service\n"
            f"  forecaster --db {db} interventions --json\n"
            f"  forecaster --db {db} anomalies --precursors\n"
            f"{when}`forecaster{flag} demo --now 2026-11-22T08:00:00Z` rebuilds it as of just "
            "before the sample incident, when its precursors show.")
