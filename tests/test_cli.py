"""The console command, run as a user runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import run_cli, write

GOOD = "ts,service,metric,value\n2026-11-01T00:00:00Z,a,latency_p95_ms,120\n"
BAD = GOOD + "later,a,latency_p95_ms,1\n2026-11-01T00:10:00Z,a,latency_p95_ms,nan\n"


def test_ingest_prints_a_summary_and_exits_zero(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    path = write(tmp_path / "good.csv", GOOD)
    result = run_cli("--db", str(db), "ingest", "points", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 rows, 1 points stored, 0 updated, 0 duplicate, 0 rejected" in result.stdout
    again = run_cli("--db", str(db), "ingest", "points", str(path))
    assert "0 points stored, 0 updated, 1 duplicate" in again.stdout


def test_rejected_rows_give_exit_one_and_an_error_file(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    path = write(tmp_path / "bad.csv", BAD)
    errors = tmp_path / "errors.csv"
    result = run_cli("--db", str(db), "ingest", "points", str(path), "--errors", str(errors))
    assert result.returncode == 1
    assert "1 points stored" in result.stdout and "2 rejected" in result.stdout
    assert f"{path}: row 2: ts: cannot read 'later'" in result.stderr
    with errors.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "row", "field", "message"]
    assert [(r[1], r[2]) for r in rows[1:]] == [("2", "ts"), ("3", "value")]
    strict = run_cli("--db", str(tmp_path / "s.duckdb"), "ingest", "points", str(path),
                     "--strict")
    assert strict.returncode == 1 and "strict: nothing stored" in strict.stdout


def test_an_unusable_file_is_refused_by_name_and_the_others_still_load(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    good = write(tmp_path / "good.csv", GOOD)
    odd = write(tmp_path / "odd.csv", "when,what\n1,2\n")
    result = run_cli("--db", str(db), "ingest", "points", str(odd), str(good))
    assert result.returncode == 1
    assert f"refused: {odd}: unknown column 'when'" in result.stderr
    assert "1 points stored" in result.stdout
    summary = run_cli("--db", str(db), "summary")
    assert summary.returncode == 0 and "a: 1 series, 1 points" in summary.stdout


def test_request_logs_with_renamed_columns(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    log = write(tmp_path / "log.csv", "when,ms,code\n2026-11-01T00:00:01Z,100,200\n"
                "2026-11-01T00:00:02Z,300,503\n")
    result = run_cli("--db", str(db), "ingest", "requests", str(log), "--service", "gw",
                     "--column", "ts=when", "--column", "latency_ms=ms",
                     "--column", "status=code")
    assert result.returncode == 0, result.stderr
    assert "2 new requests" in result.stdout
    summary = run_cli("--db", str(db), "summary").stdout
    assert "gw: 5 series" in summary and "error_rate" in summary


def test_bad_settings_and_usage_exit_two(tmp_path: Path) -> None:
    result = run_cli("--db", str(tmp_path / "c.duckdb"), "summary",
                     env={"FORECASTER_DUCKDB_THREADS": "lots"})
    assert result.returncode == 2 and "duckdb_threads = 'lots' is not an integer" in result.stderr
    bad = run_cli("ingest", "points", "x.csv", "--column", "nonsense")
    assert bad.returncode == 2 and "is not NAME=SOURCE_COLUMN" in bad.stderr


def test_demo_builds_the_database_from_the_shipped_data(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    result = run_cli("--db", str(db), "demo", "--data", "data")
    assert result.returncode == 0, result.stderr
    assert "54 series, 391,104 points, 2 events" in result.stdout
    for service in ("chat-api", "code-assist", "summarize", "rag-search", "embed-batch",
                    "support-bot"):
        assert f"{service}: 9 series" in result.stdout
    # rebuilds from scratch; as of just before the sample incident, its precursors show
    again = run_cli("--db", str(db), "demo", "--data", "data", "--now", "2026-11-22T08:00:00Z")
    assert again.returncode == 0 and "391104 points stored" in again.stdout
    assert "Precursor anomalies:" in again.stdout
    found = run_cli("--db", str(db), "anomalies", "--precursors", "--json")
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert rows and {row["service"] for row in rows} == {"rag-search"}
    assert all(row["precursor"] and row["corroborated_by"] for row in rows)
    text = run_cli("--db", str(db), "anomalies", "--since", "2026-11-22T00:00:00Z",
                   "--service", "rag-search").stdout
    assert "precursor, with" in text and "rag-search:error_rate" in text
