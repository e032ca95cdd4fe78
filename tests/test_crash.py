"""A real server killed with SIGKILL: acknowledged rows survive, no process of its tree outlives
it, the interrupted run is failed when the file is next opened, and the next refresh publishes.

Linux only: the process tree is read from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from test_server import READ, WRITE, Server, build_db, free_port, now_utc

from forecaster.config import Settings
from forecaster.pipeline import run_once
from forecaster.policies import load_policies
from forecaster.store import Store

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="reads the process tree from /proc (Linux)")


def launch(db: Path, tmp: Path, extra_env: dict[str, str] | None = None) -> Server:
    """``forecaster serve`` on an existing file, with tokens, refreshing at start and hourly."""
    policies = tmp / "policies.toml"
    policies.write_text("")  # the built-in policies only
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    env.update({"FORECASTER_REFRESH_EVERY": "1h", "FORECASTER_POLICIES": str(policies),
                "FORECASTER_READ_TOKENS": READ, "FORECASTER_WRITE_TOKENS": WRITE,
                **(extra_env or {})})
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "forecaster", "--db", str(db), "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    return Server(f"http://127.0.0.1:{port}", db, policies, process, log)


def wait_until(server: Server, ready: Callable[[httpx.Client], bool],
               timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    with server.client(WRITE) as http:
        while time.monotonic() < deadline:
            assert server.process.poll() is None, server.output()
            try:
                if ready(http):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    server.process.kill()
    raise AssertionError(f"timed out:\n{server.output()}")


def runs(http: httpx.Client) -> list[dict[str, object]]:
    answer: list[dict[str, object]] = http.get("/v1/runs", params={"limit": 50}).json()["items"]
    return answer


def stat(pid: int) -> tuple[int, str, int] | None:
    """(parent id, state, start time) of a live process, from /proc; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0], int(fields[19])


def tree(root: int) -> dict[int, int]:
    """The processes below ``root``, each with its start time (to tell a reused id)."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        found = stat(int(entry.name))
        if found is not None:
            children.setdefault(found[0], []).append(int(entry.name))
            started[int(entry.name)] = found[2]
    out: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = started[child]
            todo.append(child)
    return out


def depth(processes: dict[int, int], root: int) -> int:
    """How deep the deepest of ``processes`` sits below ``root``."""
    deepest = 0
    for pid in processes:
        level, at = 0, pid
        while at != root and level < 10:
            found = stat(at)
            if found is None:
                break
            at, level = found[0], level + 1
        deepest = max(deepest, level if at == root else 0)
    return deepest


def command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(processes: dict[int, int]) -> list[int]:
    """Those still running (a zombie has ended; a reused id is another process)."""
    out = []
    for pid, started in processes.items():
        found = stat(pid)
        if found is not None and found[1] != "Z" and found[2] == started:
            out.append(pid)
    return out


def test_an_acknowledged_batch_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "served.duckdb"
    build_db(db, days=2)
    server = launch(db, tmp_path)
    wait_until(server, lambda http: http.get("/healthz").status_code == 200)
    end = now_utc().replace(second=0, microsecond=0)
    sent = []
    with server.client(WRITE) as http:
        for batch in range(4):
            rows = [{"ts": (end - timedelta(minutes=5 * i)).isoformat() + "Z",
                     "service": "svc-ack", "metric": f"queue_{batch}", "value": float(i)}
                    for i in range(400)]
            answer = http.post("/v1/points", json=rows)
            assert answer.status_code == 200 and answer.json()["stored"] == 400, answer.text
            sent.extend(rows)
    server.process.send_signal(signal.SIGKILL)  # right after the last acknowledgement
    server.process.wait(timeout=30)
    with Store.open(db, now=now_utc()) as store:
        kept = store.history(service="svc-ack")
    assert kept.height == len(sent) == 1600
    assert set(kept.select("unique_id", "ds", "y").iter_rows()) == {
        (f"svc-ack:{r['metric']}", datetime.fromisoformat(str(r["ts"])[:-1]), r["value"])
        for r in sent}


def test_a_server_killed_during_a_refresh_leaves_no_process_and_no_ghost_run(
        tmp_path: Path) -> None:
    db = tmp_path / "served.duckdb"
    build_db(db, days=3)
    with Store.open(db, now=now_utc()) as store:  # the run a server serves, made here (faster)
        previous = run_once(store, Settings(), load_policies(None), now_utc(),
                            clock=now_utc).run_id
    # two statsforecast processes, so that the worker forks helpers of its own; models chosen
    # anew (cross-validation) at every run, so that they are busy for a while
    env = {"FORECASTER_FORECAST_JOBS": "2", "FORECASTER_SELECTION_MAX_AGE": "1s"}
    server = launch(db, tmp_path, env)
    try:
        wait_until(server, lambda http: any(r["status"] == "running" for r in runs(http)))
        with server.client(READ) as http:
            [run_id] = [r["run_id"] for r in runs(http) if r["status"] == "running"]
            assert http.get("/v1/interventions").json()["run_id"] == previous
        # kill when the worker's own helpers run: server -> worker -> helper
        deadline = time.monotonic() + 60
        seen: dict[int, int] = {}
        while depth(seen, server.process.pid) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
            seen.update(tree(server.process.pid))
        assert depth(seen, server.process.pid) >= 2, (seen, server.output())
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(seen), f"outlived their server: {alive(seen)} of {sorted(seen)}"

    with Store.open(db, now=now_utc(), read_only=True) as store:  # the file opens
        assert store.latest_run_id() == previous  # still the one served
        ghost = store.run(run_id)
        assert ghost is not None and ghost["status"] == "running"  # until a writer opens it

    again = launch(db, tmp_path)
    try:
        wait_until(again, lambda http: any(r["status"] == "published" and r["run_id"] > run_id
                                           for r in runs(http)))
        with again.client(READ) as http:
            [failed] = [r for r in runs(http) if r["run_id"] == run_id]
            assert failed["status"] == "failed"
            assert str(failed["error"]).startswith(
                "interrupted: the process that ran it stopped before it finished")
            assert http.get("/v1/interventions").json()["run_id"] > run_id  # the next published
            assert "forecaster_runs_interrupted 1.0" in http.get("/metrics").text
        assert f"run(s) {run_id} were left running" in again.output()
    finally:
        again.process.terminate()
        again.process.wait(timeout=60)


def test_a_worker_made_outside_the_main_thread_dies_with_its_parent(tmp_path: Path) -> None:
    # The worker the service re-makes after a crashed one is started from a refresh thread, so
    # the kernel's parent-death signal cannot be used (it would fire when that thread ends); its
    # watchdog must notice the parent's death and take its own children (here a shell running
    # `sleep`, which no fork hook reaches) with it.
    script = (
        "import os, sys, threading, time\n"
        "from forecaster.service import _compute_pool\n"
        "made = []\n"
        "maker = threading.Thread(target=lambda: made.append(_compute_pool()))\n"
        "maker.start(); maker.join()\n"
        "made[0].submit(os.system, 'sleep 300')\n"
        "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        seen: dict[int, int] = {}
        while time.monotonic() < deadline:
            seen.update(tree(parent.pid))
            if any(command(pid).startswith(b"sleep") for pid in alive(seen)):
                break
            assert parent.poll() is None
            time.sleep(0.1)
        else:
            raise AssertionError("the worker did not start its command")
        time.sleep(1)  # the thread that made the worker is long gone: the worker lives on
        assert len(alive(seen)) == len(seen)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(seen), f"outlived their parent: {alive(seen)} of {sorted(seen)}"
