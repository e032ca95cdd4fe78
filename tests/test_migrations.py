"""Versioned migrations on real DuckDB files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from forecaster.errors import SchemaVersionError
from forecaster.store import LATEST_VERSION, Store, current_version, migrate, migrations


def test_a_new_file_gets_every_migration(store: Store, now: datetime) -> None:
    assert store.schema_version == LATEST_VERSION
    rows = store.cursor().sql("SELECT version, description FROM schema_version "
                              "ORDER BY version").fetchall()
    assert rows == [(v, d) for v, d, _ in migrations.MIGRATIONS]
    tables = {t for (t,) in store.cursor().sql(
        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
    assert {"series", "points", "runs", "run_series", "forecasts", "anomalies",
            "interventions", "events", "requests", "ingest_log"} <= tables


def test_an_older_file_is_upgraded_and_keeps_its_data(db_path: Path, now: datetime) -> None:
    # A file as the first release wrote it: schema version 1, with a series and a point.
    con = duckdb.connect(str(db_path))
    assert migrate(con, now, target=1) == (0, 1)
    con.execute("INSERT INTO series (service, metric, unit, kind) "
                "VALUES ('old', 'latency_p95_ms', 'ms', 'latency')")
    con.execute("INSERT INTO points VALUES (1, TIMESTAMP '2026-01-01 00:00:00', 42.0)")
    con.close()
    with Store.open(db_path, now=now) as store:
        assert store.schema_version == LATEST_VERSION
        assert store.history()["y"].to_list() == [42.0]
        assert store.counts()["requests"] == 0  # a table of a later migration now exists
    with Store.open(db_path, now=now) as store:  # opening again changes nothing
        assert store.schema_version == LATEST_VERSION


def test_a_newer_file_is_refused_with_a_clear_message(db_path: Path, now: datetime) -> None:
    with Store.open(db_path, now=now):
        pass
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO schema_version VALUES (?, 'from the future', ?)",
                [LATEST_VERSION + 5, now])
    con.close()
    with pytest.raises(SchemaVersionError) as info:
        Store.open(db_path, now=now)
    message = str(info.value)
    assert f"schema version {LATEST_VERSION + 5}" in message
    assert f"up to {LATEST_VERSION}" in message and "Upgrade forecaster" in message
    con = duckdb.connect(str(db_path))
    assert current_version(con) == LATEST_VERSION + 5  # the file was left as it was
    con.close()


def test_a_failed_step_leaves_the_file_at_the_previous_version(
    db_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = duckdb.connect(str(db_path))
    migrate(con, now, target=1)
    broken = [*migrations.MIGRATIONS[:1], (2, "broken", ["CREATE TABLE runs (x INTEGER)",
                                                  "THIS IS NOT SQL"])]
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    with pytest.raises(duckdb.Error):
        migrate(con, now, target=2)
    assert current_version(con) == 1
    assert con.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'"
                   ).fetchall() == [(0,)]
    con.close()


def test_read_only_open_of_an_older_file_says_how_to_upgrade(db_path: Path,
                                                              now: datetime) -> None:
    con = duckdb.connect(str(db_path))
    migrate(con, now, target=1)
    con.close()
    with pytest.raises(SchemaVersionError, match="open it writable once to upgrade it"):
        Store.open(db_path, now=now, read_only=True)
    with Store.open(db_path, now=now):
        pass
    with Store.open(db_path, now=now, read_only=True) as store:
        assert store.schema_version == LATEST_VERSION
