"""Load on the HTTP API: requests per second and latency of ``GET /v1/interventions`` (and with
``If-None-Match``) from concurrent clients on loopback while a refresh runs, beside
``GET /healthz`` (the framework's floor) in the same run.

A real server (``forecaster serve``, uvicorn) is started on the sample fleet (54 series); after
its first refresh, each phase starts a refresh with ``POST /v1/runs`` and loads the API while it
runs. The clients are one asyncio process with ``--clients`` keep-alive connections (a minimal
HTTP/1.1 client) on the same two cores as the server and the refresh's worker process, so the
figures include the clients' own cost and the refresh's competition for the cores.

Usage:
    python bench/api.py [--clients 4] [--seconds 8]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecaster.sources.files import ReadSpec, ingest_files  # noqa: E402
from forecaster.store import Store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _one_connection(host: str, port: int, request: bytes, stop_at: float,
                          latencies: list[float], statuses: dict[int, int]) -> None:
    # A minimal keep-alive HTTP/1.1 client: the clients share the machine with the server, so
    # they must cost as little as possible (httpx costs several times the server's work).
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def load(url: str, path: str, headers: dict[str, str], clients: int,
               seconds: float) -> dict[str, object]:
    host, port = url.removeprefix("http://").split(":")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(*(_one_connection(host, int(port), request, started + seconds,
                                           latencies, statuses) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    truth = json.loads((ROOT / "data" / "fleet" / "truth.json").read_text())
    end = datetime.fromisoformat(truth["end"])
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        with Store.open(db, now=end) as store:
            ingest_files(store, [ROOT / "data" / "fleet" / "points.parquet"], "points",
                         ReadSpec(), end)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
        env.update({"FORECASTER_REFRESH_EVERY": "1h",
                    "FORECASTER_POLICIES": str(ROOT / "data" / "policies.toml")})
        log = Path(tmp) / "server.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "forecaster", "--db", str(db), "serve", "--port", str(port)],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            figures = run_phases(url, args.clients, args.seconds, server, log)
        finally:
            server.terminate()
            server.wait(timeout=120)
    print(json.dumps(figures))


def run_phases(url: str, clients: int, seconds: float, server: subprocess.Popen[bytes],
               log: Path) -> dict[str, object]:
    http = httpx.Client(base_url=url, timeout=60)
    deadline = time.monotonic() + 600
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start:\n{log.read_text()}")
        try:
            if http.get("/readyz").json().get("last_published_run"):
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    etag = http.get("/v1/interventions").headers["etag"]

    def during_refresh(path: str, headers: dict[str, str]) -> dict[str, object]:
        run_id = http.post("/v1/runs").json()["run_id"]
        result: dict[str, object] = asyncio.run(load(url, path, headers, clients, seconds))
        status = http.get(f"/v1/runs/{run_id}").json()["status"]
        result["refresh_still_running_at_end"] = status == "running"
        while http.get(f"/v1/runs/{run_id}").json()["status"] == "running":
            time.sleep(0.5)
        return result

    idle_health = asyncio.run(load(url, "/healthz", {}, clients, seconds))
    idle = asyncio.run(load(url, "/v1/interventions", {}, clients, seconds))
    busy = during_refresh("/v1/interventions", {})
    etag = http.get("/v1/interventions").headers["etag"]
    busy_304 = during_refresh("/v1/interventions", {"If-None-Match": etag})
    busy_health = during_refresh("/healthz", {})
    http.close()
    return {
        "clients": clients, "seconds_per_phase": seconds,
        "healthz_idle": idle_health, "interventions_idle": idle,
        "interventions_during_refresh": busy,
        "interventions_if_none_match_during_refresh": busy_304,
        "healthz_during_refresh": busy_health,
        "p99_ratio_interventions_to_healthz_during_refresh": round(
            busy["p99_ms"] / busy_health["p99_ms"], 2),  # type: ignore[operator]
    }


if __name__ == "__main__":
    main()
