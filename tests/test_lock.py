"""A second process on a held database gets a clear message, never a raw lock error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, write

from forecaster.errors import StoreLockedError
from forecaster.store import Store, lock

HOLDER = textwrap.dedent("""
    import sys, time
    from datetime import datetime
    from forecaster.store import Store
    store = Store.open(sys.argv[1], now=datetime(2026, 11, 26), server_url=sys.argv[2] or None)
    print("ready", flush=True)
    sys.stdin.read()  # hold the file until the test closes our stdin
    store.close()
""")


def hold(db: Path, url: str = "") -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def test_second_process_is_told_who_holds_the_file(db_path: Path, now: datetime) -> None:
    holder = hold(db_path)
    try:
        with pytest.raises(StoreLockedError) as info:
            Store.open(db_path, now=now)
        message = str(info.value)
        assert f"process {holder.pid}" in message
        assert "only one process" in message and "Conflicting lock" not in message
        with pytest.raises(StoreLockedError):
            Store.open(db_path, now=now, read_only=True)  # not even read-only
    finally:
        release(holder)
    with Store.open(db_path, now=now) as store:  # released: usable again
        assert store.counts()["points"] == 0


def test_the_cli_names_a_serving_holder_and_its_address(db_path: Path, tmp_path: Path) -> None:
    holder = hold(db_path, "http://127.0.0.1:8765")
    try:
        points = write(tmp_path / "p.csv", "ts,service,metric,value\n2026-11-01T00:00:00Z,a,m,1\n")
        result = run_cli("--db", str(db_path), "ingest", "points", str(points))
    finally:
        release(holder)
    assert result.returncode == 3
    assert f"process {holder.pid}" in result.stderr
    assert "http://127.0.0.1:8765" in result.stderr and "HTTP API" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_read_through_a_server_that_does_not_answer_says_so(db_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    holder = hold(db_path, f"http://127.0.0.1:{port}")
    try:
        result = run_cli("--db", str(db_path), "interventions")
    finally:
        release(holder)
    assert result.returncode == 3
    assert "reading through its HTTP API" in result.stderr
    assert "Reading through it failed" in result.stderr and f"process {holder.pid}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_record_left_by_a_dead_server_is_not_followed(db_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock.owner_path(db_path).write_text(json.dumps(
        {"pid": int(dead.stdout), "command": "forecaster serve", "url": "http://127.0.0.1:9"}))
    assert lock.read_owner(db_path) is not None
    assert lock.serving_owner(db_path) is None
