"""A CLI ingest of a large file killed with SIGKILL stores all of the file or none of it.

The ingest runs as a user would run it, ``python -m forecaster --db X ingest points FILE``, in a
real child process, and is killed at three moments picked by watching the files DuckDB writes
(not by guessing delays, so that a slow or busy machine still hits them):

* while it reads and checks the input (the database is open, nothing written yet);
* while it writes the points' row groups into the database file (the transaction is open);
* while it writes its commit to the write-ahead log (or, if it is too quick, after it);
* right after it reported the file stored (it then checkpoints and closes): all must be there.

Then the file must open, hold the points stored before, and either none or all of the file's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import ROOT

from forecaster.ingest_report import IngestReport
from forecaster.sources.files import ReadSpec, ingest_files
from forecaster.store import Store
from forecaster.store.lock import owner_path

NOW = datetime(2026, 11, 26, 12, 0, 0)
ROWS = 2_000_000  # a few seconds of ingest on a quiet 2-core machine, 10 s or more on a busy one
SERIES = 40  # ROWS / SERIES points each


def big_file(path: Path) -> None:
    """ROWS points of SERIES series, one a minute, values numbering the rows."""
    per = ROWS // SERIES
    ts = np.datetime64("2026-01-01T00:00:00") + (np.arange(ROWS) % per) * np.timedelta64(60, "s")
    pl.DataFrame({
        "ts": ts.astype("datetime64[us]"),
        "service": np.repeat([f"big{i}" for i in range(SERIES)], per),
        "metric": "queue_depth",
        "value": np.arange(ROWS, dtype=float),
    }).write_parquet(path)


def baseline_db(path: Path, tmp: Path) -> pl.DataFrame:
    """A database holding a few known points; returns them as stored."""
    frame = pl.DataFrame({"ts": [datetime(2026, 11, 1, 0, m) for m in range(0, 60, 5)],
                          "service": "before", "metric": "latency_p95_ms",
                          "value": [float(100 + m) for m in range(12)]})
    frame.write_csv(tmp / "before.csv")
    with Store.open(path, now=NOW) as store:
        [report] = ingest_files(store, [tmp / "before.csv"], "points", ReadSpec(), NOW)
        assert isinstance(report, IngestReport) and report.stored == 12
        return store.history()


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def wal(db: Path) -> Path:
    return db.with_name(db.name + ".wal")


def kill_when(db: Path, data: Path, moment: str) -> str:
    """Start the CLI ingest and SIGKILL it at ``moment``; return what happened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    env["PYTHONUNBUFFERED"] = "1"  # the report line must reach us when it is printed
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecaster", "--db", str(db), "ingest", "points", str(data)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if moment == "reported":
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the CLI prints its report once the ingest committed
            assert "points stored" in line, (line, proc.communicate())
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return f"killed after it reported {line.strip()!r}"
        deadline = time.monotonic() + 240
        # The owner file is written once the database is open, just before the ingest starts.
        while size(owner_path(db)) < 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        opened_db, opened_wal = size(db), size(wal(db))
        ready: Callable[[], bool] = {
            "reading": lambda: True,
            "writing": lambda: size(db) > opened_db,
            "committing": lambda: size(wal(db)) > opened_wal,
        }[moment]
        if moment == "reading":
            time.sleep(0.1)
        while not ready():
            if proc.poll() is not None:
                return "finished before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        if proc.poll() is not None:
            return "finished before the kill"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        return f"killed while {moment} (db {size(db)} bytes, wal {size(wal(db))} bytes)"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pl.DataFrame]:
    tmp = tmp_path_factory.mktemp("crash")
    big_file(tmp / "big.parquet")
    before = baseline_db(tmp / "base.duckdb", tmp)
    return tmp / "big.parquet", tmp / "base.duckdb", before


@pytest.mark.parametrize("moment", ["reading", "writing", "committing", "reported"])
def test_a_killed_ingest_stores_all_of_the_file_or_none(
    files: tuple[Path, Path, pl.DataFrame], tmp_path: Path, moment: str
) -> None:
    data, base, before = files
    db = tmp_path / "crash.duckdb"
    shutil.copy(base, db)
    what = kill_when(db, data, moment)
    with Store.open(db, now=NOW) as store:  # opens (replaying the log) without error
        counts = store.counts()
        big = counts["points"] - before.height
        print(f"\n{moment}: {what}: {big} of {ROWS} points of the file stored")
        logged = store.cursor().sql(
            "SELECT count(*) FROM ingest_log WHERE source = ?", params=[str(data)]).fetchall()
        assert store.history(service="before").equals(before)
        assert big in (0, ROWS), f"{big} of the file's {ROWS} points after the kill ({what})"
        # The log of the ingest is part of the same transaction as its points.
        assert logged == [(1 if big else 0,)]
        if big:
            sums = store.cursor().sql(
                "SELECT count(*), sum(value) FROM points JOIN series USING (series_id) "
                "WHERE service LIKE 'big%'").fetchall()
            assert sums == [(ROWS, ROWS * (ROWS - 1) / 2)]
        else:
            assert not any(s.startswith("big") for s in store.series()["service"].to_list())
    if moment in ("reading", "writing"):
        # Killed before its commit: nothing of the file may be there.
        assert big == 0 and "killed" in what, what
    if moment == "reported":
        # Acknowledged, then killed while it checkpointed and closed: all of it is there.
        assert big == ROWS, what
