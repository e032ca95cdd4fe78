"""The demo never loses data: it rebuilds only a database it made, and only while it holds it.

Also: read commands on a file a forecaster server holds read through that server.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, run_cli
from test_server import READ, WRITE, Server, now_utc, start_server, stop

from forecaster.errors import StoreLockedError
from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store
from forecaster.store.lock import ForeignDatabaseError


def fingerprint(path: Path) -> tuple[int, int, str]:
    """Inode, size and content hash: any rebuild, replacement or write changes one of them."""
    stat = path.stat()
    return stat.st_ino, stat.st_size, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample fleet of one service over 9 days, with no policies of its own: a quick demo."""
    data = tmp_path_factory.mktemp("data")
    made = run_cli("fleet", "--out", str(data / "fleet"), "--days", "9", "--future-days", "1")
    assert made.returncode == 0, made.stderr
    points = data / "fleet" / "points.parquet"
    pl.read_parquet(points).filter(pl.col("service") == "chat-api").write_parquet(points)
    (data / "policies.toml").write_text("")
    return data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("served"), "1h")
    yield started
    stop(started)


def test_the_demo_never_touches_the_database_of_the_settings(tmp_path: Path,
                                                             small_data: Path) -> None:
    real = tmp_path / "real.duckdb"
    with Store.open(real, now=now_utc()) as store:
        store.add_event(service="prod", ts=now_utc(), kind="deploy", now=now_utc())
    before = fingerprint(real)
    work = tmp_path / "work"
    work.mkdir()
    first = run_cli("demo", "--data", str(small_data), cwd=work,
                    env={"FORECASTER_DB": str(real)})
    assert first.returncode == 0, first.stderr
    assert fingerprint(real) == before
    demo = work / ".demo" / "demo.duckdb"
    assert f"Building {Path('.demo/demo.duckdb')}" in first.stdout and demo.exists()
    # its own database is rebuilt from scratch, as often as asked
    again = run_cli("demo", "--data", str(small_data), "--now", "2026-11-06T00:00:00Z",
                    cwd=work, env={"FORECASTER_DB": str(real)})
    assert again.returncode == 0, again.stderr
    assert "Refreshing as of 2026-11-06 00:00 UTC" in again.stdout
    with Store.open(demo, now=now_utc()) as store:
        runs = store.runs()
        assert runs["run_id"].to_list() == [1] and runs["status"].to_list() == ["published"]
        assert store.counts()["points"] == pl.read_parquet(
            small_data / "fleet" / "points.parquet").height
    assert fingerprint(real) == before


def test_the_demo_refuses_a_file_it_did_not_make(tmp_path: Path) -> None:
    real = tmp_path / "real.duckdb"
    with Store.open(real, now=now_utc()) as store:
        store.add_event(service="prod", ts=now_utc(), kind="deploy", now=now_utc())
    text = tmp_path / "notes.csv"
    text.write_text("a,b\n1,2\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    refused = run_cli("--db", str(folder), "demo", "--data", str(ROOT / "data"))
    assert refused.returncode == 3 and "not a DuckDB database file" in refused.stderr
    for path in (real, text):
        before = fingerprint(path)
        refused = run_cli("--db", str(path), "demo", "--data", str(ROOT / "data"))
        assert refused.returncode == 3, refused.stderr
        assert f"{path}" in refused.stderr and "only rebuilds databases it made" in refused.stderr
        assert "Traceback" not in refused.stderr and not refused.stdout
        assert fingerprint(path) == before
        assert not path.with_name(path.name + ".wal").exists()


def test_reads_go_through_the_server_that_holds_the_file(server: Server) -> None:
    with server.client() as http:
        served = http.get("/v1/interventions").json()["items"]
    answers = run_cli("--db", str(server.db), "interventions", "--json",
                      env={"FORECASTER_READ_TOKENS": READ})
    assert answers.returncode == 0, answers.stderr
    assert "reading through its HTTP API" in answers.stderr and server.url in answers.stderr
    rows = json.loads(answers.stdout)
    assert [r["unique_id"] for r in rows] == [i["unique_id"] for i in served]
    assert all(r["act_by"] is None or r["act_by"].endswith("Z") for r in rows)
    assert [r["act_by"] for r in rows] == [i["act_by"] for i in served]
    table = run_cli("--db", str(server.db), "interventions", "--by-service",
                    env={"FORECASTER_WRITE_TOKENS": WRITE})
    assert table.returncode == 0, table.stderr
    assert "svc-a" in table.stdout and "svc-b" in table.stdout
    found = run_cli("--db", str(server.db), "anomalies", "--json",
                    env={"FORECASTER_READ_TOKENS": READ})
    assert found.returncode == 0, found.stderr
    assert isinstance(json.loads(found.stdout), list)
    # without a token the server refuses, and the command says so and why
    anonymous = run_cli("--db", str(server.db), "interventions")
    assert anonymous.returncode == 3
    assert "HTTP 401" in anonymous.stderr and "read_tokens" in anonymous.stderr
    assert "Traceback" not in anonymous.stderr


def test_the_demo_refuses_a_database_a_server_holds(server: Server, tmp_path: Path) -> None:
    inode = server.db.stat().st_ino
    refused = run_cli("--db", str(server.db), "demo", "--data", str(ROOT / "data"))
    assert refused.returncode == 3, refused.stderr
    assert f"forecaster server at {server.url}" in refused.stderr
    assert server.db.stat().st_ino == inode
    # the server still owns its file: a write it acknowledges now is there after it stops
    row = {"ts": now_utc().isoformat() + "Z", "service": "after-demo",
           "metric": "latency_p95_ms", "value": 123.0}
    with server.client(token=WRITE) as http:
        answer = http.post("/v1/points", json=[row])
        assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.text
    stop(server)
    with Store.open(server.db, now=now_utc()) as store:
        kept = store.history(service="after-demo")
        assert kept["y"].to_list() == [123.0]
        assert store.history(service="svc-a").height == 3 * 8 * 288  # build_db's


def test_only_a_database_marked_as_the_demos_is_rebuilt(tmp_path: Path) -> None:
    now = now_utc()
    made = tmp_path / "made.duckdb"
    with Store.rebuild(made, maker="demo", now=now) as store:
        store.add_event(service="demo-svc", ts=now, kind="deploy", now=now)
    with Store.rebuild(made, maker="demo", now=now) as store:  # emptied in place
        assert store.counts() == {"series": 0, "points": 0, "requests": 0, "events": 0}
    # a demo database from before the mark existed: its demo run says who made it
    older, user = tmp_path / "older.duckdb", tmp_path / "user.duckdb"
    for path, trigger in ((older, "demo"), (user, "manual")):
        with Store.open(path, now=now) as store:
            store.start_run(now, now, trigger)
    Store.rebuild(older, maker="demo", now=now).close()
    before = fingerprint(user)
    with pytest.raises(ForeignDatabaseError, match="was not made by the demo"):
        Store.rebuild(user, maker="demo", now=now)
    assert fingerprint(user) == before
    # the old demo wrote into the default database; a user who then filled it keeps it
    filled = tmp_path / "filled.duckdb"
    with Store.open(filled, now=now) as store:
        store.start_run(now, now, "demo")
        ingest_points_frame(store, pl.DataFrame({
            "ts": [now], "service": ["mine"], "metric": ["latency_p95_ms"], "value": [120.0]}),
            now=now, label="my-metrics.csv")
    before = fingerprint(filled)
    with pytest.raises(ForeignDatabaseError, match="was not made by the demo"):
        Store.rebuild(filled, maker="demo", now=now)
    assert fingerprint(filled) == before
    # and a file this process holds open is never rebuilt under it
    with Store.open(made, now=now), pytest.raises(StoreLockedError, match="this process"):
        Store.rebuild(made, maker="demo", now=now)
