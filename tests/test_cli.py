"""The console command, run as a user runs it."""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, write

from forecaster.store import Store

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


def table_rows(text: str) -> list[tuple[str, ...]]:
    """(service, decision, series, action) of each row of the by-service table."""
    block = text.split("By service (most urgent series first):\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in block.splitlines()[1:]]
    return [(row[0], row[1], row[2], row[-1]) for row in rows]


def readme_rows() -> list[tuple[str, ...]]:
    """The same, from the README's first example."""
    readme = (ROOT / "README.md").read_text()
    example = readme.split("$ forecaster --db .demo/demo.duckdb interventions --by-service\n",
                           1)[1].split("```", 1)[0]
    return table_rows(example)


def test_demo_builds_the_database_from_the_shipped_data(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    result = run_cli("--db", str(db), "demo", "--data", "data")
    assert result.returncode == 0, result.stderr
    assert "54 series, 391,104 points, 2 events" in result.stdout
    for service in ("chat-api", "code-assist", "summarize", "rag-search", "embed-batch",
                    "support-bot"):
        assert f"{service}: 9 series" in result.stdout
    assert f"forecaster --db {db} interventions --json" in result.stdout  # the hint
    # the README's first example is this database's answer, table row by table row
    shown = run_cli("--db", str(db), "interventions", "--by-service")
    assert shown.returncode == 0, shown.stderr
    assert readme_rows() == table_rows(shown.stdout)
    # rebuilds its own database from scratch; as of just before the sample incident, its
    # precursors show
    again = run_cli("--db", str(db), "demo", "--data", "data", "--now", "2026-11-22T08:00:00Z")
    assert again.returncode == 0 and "391104 points stored" in again.stdout
    assert "Precursor anomalies:" in again.stdout
    found = run_cli("--db", str(db), "anomalies", "--precursors", "--json")
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert rows and {row["service"] for row in rows} == {"rag-search"}
    assert all(row["precursor"] and row["corroborated_by"] for row in rows)
    assert all(row["ts"].endswith("Z") for row in rows)  # UTC, written as the API writes it
    text = run_cli("--db", str(db), "anomalies", "--since", "2026-11-22T00:00:00Z",
                   "--service", "rag-search").stdout
    assert "precursor, with" in text and "rag-search:error_rate" in text


HEAVY = ("statsforecast", "pyod", "sklearn")


def imported_modules(*args: str) -> set[str]:
    """Every module a Python run imports, from ``-X importtime``."""
    run = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True,
                         text=True, cwd=ROOT, timeout=120,
                         env={k: v for k, v in os.environ.items()
                              if not k.startswith("FORECASTER_")})
    assert run.returncode == 0, run.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in run.stderr.splitlines()
            if line.startswith("import time:") and "|" in line} - {"package"}


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_command_line_imports_nothing_heavy_until_a_command_needs_it(
        refreshed: Path) -> None:
    loaded = top_level(imported_modules("-c", "import forecaster.cli"))
    assert "forecaster" in loaded  # the check sees our own imports
    assert not loaded & {*HEAVY, "duckdb", "polars", "numpy", "fastapi"}, loaded
    helped = top_level(imported_modules("-m", "forecaster", "--help"))
    assert not helped & {*HEAVY, "duckdb", "polars", "numpy", "fastapi"}, helped
    reading = top_level(imported_modules("-m", "forecaster", "--db", str(refreshed),
                                         "interventions"))
    assert "duckdb" in reading and not reading & set(HEAVY), reading & set(HEAVY)
    summing = top_level(imported_modules("-m", "forecaster", "--db", str(refreshed), "summary"))
    assert "duckdb" in summing and not summing & set(HEAVY), summing & set(HEAVY)
    assert not top_level(imported_modules("-c", "import forecaster")) & {*HEAVY, "duckdb"}


def test_the_time_units_of_the_parser_are_those_ingest_knows() -> None:
    from forecaster.cli import TIME_UNIT_NAMES
    from forecaster.sources.files import TIME_UNITS

    assert set(TIME_UNIT_NAMES) == set(TIME_UNITS)


def test_the_package_still_offers_its_names_lazily(tmp_path: Path) -> None:
    import forecaster

    for name in forecaster.__all__:
        assert getattr(forecaster, name) is not None, name
    with pytest.raises(AttributeError, match="nothing_here"):
        forecaster.nothing_here  # noqa: B018
    with forecaster.open_store(tmp_path / "lazy.duckdb") as store:
        assert store.counts()["points"] == 0


def series_csv(path: Path) -> Path:
    """Ten days of one rising latency series every 5 minutes."""
    start = datetime(2026, 11, 1)
    lines = ["ts,service,metric,value"]
    for i in range(288 * 10):
        value = 800 * math.exp(0.05 * i / 288) * (1 + 0.03 * math.sin(i * 0.7))
        lines.append(f"{(start + timedelta(minutes=5 * i)).isoformat()}Z,web,latency_p95_ms,"
                     f"{value:.3f}")
    return write(path, "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with one series and one published run."""
    folder = tmp_path_factory.mktemp("refreshed")
    db = folder / "r.duckdb"
    assert run_cli("--db", str(db), "ingest", "points",
                   str(series_csv(folder / "p.csv"))).returncode == 0
    refresh = run_cli("--db", str(db), "refresh", "--now", "2026-11-11T00:00:00Z")
    assert refresh.returncode == 0, refresh.stderr
    return db


def test_json_times_are_utc_with_z_as_the_api_writes_them(refreshed: Path) -> None:
    [row] = json.loads(run_cli("--db", str(refreshed), "interventions", "--json").stdout)
    times = {k: v for k, v in row.items() if k in ("eta_p10", "eta_p50", "eta_p90", "act_by",
                                                   "next_check_at", "train_start", "train_end",
                                                   "last_point") and v is not None}
    assert {"next_check_at", "train_start", "last_point"} <= set(times), row
    assert times["last_point"] == "2026-11-10T23:55:00Z"
    for key, value in times.items():
        assert value.endswith("Z") and "+" not in value, (key, value)
        assert datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def test_a_reader_that_goes_away_ends_the_command_quietly(refreshed: Path) -> None:
    # A pipe whose reader is already gone: every write fails, as with `| head` once it is done.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    try:
        gone = subprocess.run([sys.executable, "-m", "forecaster", "--db", str(refreshed),
                               "interventions", "--json"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert gone.returncode == 141 and gone.stderr == "", gone.stderr
    # and through a shell, as a user types it
    command = (f"{shlex.quote(sys.executable)} -m forecaster --db {shlex.quote(str(refreshed))} "
               "interventions --json | head -1")
    piped = subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=ROOT,
                           env=env, timeout=120)
    assert piped.stdout == "[\n" and piped.stderr == "", piped.stderr


def test_a_failed_refresh_says_why_and_exits_four(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    assert run_cli("--db", str(db), "ingest", "points",
                   str(series_csv(tmp_path / "p.csv"))).returncode == 0
    # DuckDB cannot read the points within 1 MB: the run as a whole fails
    failed = run_cli("--db", str(db), "refresh", "--now", "2026-11-11T00:00:00Z",
                     env={"FORECASTER_DUCKDB_MEMORY_LIMIT": "1MB"})
    assert failed.returncode == 4, failed.stderr
    assert "forecaster: refresh failed: OutOfMemoryException" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert "run 1 failed" in failed.stdout
    published = run_cli("--db", str(db), "refresh", "--now", "2026-11-11T00:00:00Z")
    assert published.returncode == 0 and "run 2 published" in published.stdout
    with Store.open(db, now=datetime(2026, 11, 26)) as store:
        runs = {r["run_id"]: r for r in store.runs().to_dicts()}
        assert runs[1]["status"] == "failed" and "Out of Memory" in runs[1]["error"]
        assert runs[1]["finished_at"] is not None


def test_an_unexpected_error_is_one_line_unless_debugging(tmp_path: Path) -> None:
    # A directory where the error CSV should go: writing it fails after the ingest
    good = write(tmp_path / "bad.csv", BAD)
    (tmp_path / "errors").mkdir()
    args = ("--db", str(tmp_path / "u.duckdb"), "ingest", "points", str(good),
            "--errors", str(tmp_path / "errors"))
    quiet = run_cli(*args)
    assert quiet.returncode == 5
    [line] = quiet.stderr.strip().splitlines()[-1:]
    assert line.startswith("forecaster: unexpected error: IsADirectoryError")
    assert "FORECASTER_DEBUG=1" in line and "Traceback" not in quiet.stderr
    loud = run_cli(*args, env={"FORECASTER_DEBUG": "1"})
    assert loud.returncode == 5 and "Traceback" in loud.stderr


def test_json_output_writes_a_missing_number_as_null() -> None:
    """NaN is not JSON: a reader's parser would refuse the whole output."""
    import json

    import polars as pl

    from forecaster.cli import frame_json

    text = frame_json(pl.DataFrame({"p": [0.5, float("nan")], "uid": ["a:b", "c:d"]}))
    assert "NaN" not in text
    assert json.loads(text) == [{"p": 0.5, "uid": "a:b"}, {"p": None, "uid": "c:d"}]
