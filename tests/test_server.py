"""The service: a real uvicorn server on a loopback port, real HTTP, real APScheduler jobs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from conftest import ROOT, run_cli
from prometheus_client.parser import text_string_to_metric_families

from forecaster.client import RemoteError, RemoteStore
from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store
from forecaster.types import DECISIONS

READ, WRITE = "read-token-1", "write-token-1"
MAX_BYTES = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def build_db(path: Path, days: int = 8) -> None:
    """Two services, three metrics each, every 5 minutes up to now; svc-b's latency climbs."""
    end = now_utc().replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % 5)
    n = days * 288
    ts = [end - timedelta(minutes=5 * (n - 1 - i)) for i in range(n)]
    rng = np.random.default_rng(3)
    day = np.sin(2 * np.pi * np.arange(n) / 288)
    frames = []
    for service, growth in (("svc-a", 0.0), ("svc-b", 0.08)):
        trend = np.exp(growth * np.arange(n) / 288)
        metrics = {
            "latency_p95_ms": 600 * trend * (1 + 0.1 * day) * rng.lognormal(0, 0.05, n),
            "error_rate": np.clip(0.01 + 0.002 * rng.standard_normal(n), 0, 1),
            "requests_per_s": 50 * (1 + 0.3 * day) * rng.lognormal(0, 0.05, n),
        }
        for metric, values in metrics.items():
            frames.append(pl.DataFrame({"ts": ts, "service": service, "metric": metric,
                                        "value": values}))
    with Store.open(path, now=end) as store:
        report = ingest_points_frame(store, pl.concat(frames), now=end)
        assert report.rejected == 0


@dataclass
class Server:
    url: str
    db: Path
    policies: Path
    process: subprocess.Popen[str]
    log: Path

    def client(self, token: str | None = READ) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def output(self) -> str:
        return self.log.read_text()


def start_server(tmp: Path, refresh_every: str, tokens: bool = True,
                 extra_env: dict[str, str] | None = None) -> Server:
    db = tmp / "served.duckdb"
    build_db(db)
    policies = tmp / "policies.toml"
    policies.write_text("")  # the built-in policies only
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    env.update({"FORECASTER_REFRESH_EVERY": refresh_every,
                "FORECASTER_MAX_REQUEST_BYTES": str(MAX_BYTES),
                "FORECASTER_POLICIES": str(policies)})
    if tokens:
        env.update({"FORECASTER_READ_TOKENS": READ, "FORECASTER_WRITE_TOKENS": WRITE})
    env.update(extra_env or {})
    log = tmp / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "forecaster", "--db", str(db), "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    server = Server(f"http://127.0.0.1:{port}", db, policies, process, log)
    deadline = time.monotonic() + 120
    with server.client() as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, server.output()
            try:
                ready = http.get("/readyz").json()
                if ready.get("last_published_run"):
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.3)
    process.kill()
    raise AssertionError(f"server did not publish a first run:\n{server.output()}")


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose scheduler only runs at start (the interval is an hour)."""
    started = start_server(tmp_path_factory.mktemp("server"), "1h")
    yield started
    stop(started)


def wait_for_run(http: httpx.Client, run_id: int, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(f"/v1/runs/{run_id}").json()
        if run["status"] != "running":
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still running")


def test_interventions_answer_with_etag_and_304_until_a_new_run(server: Server) -> None:
    with server.client() as http:
        first = http.get("/v1/interventions")
        assert first.status_code == 200
        body = first.json()
        etag = first.headers["etag"]
        assert etag == f'"run-{body["run_id"]}"'
        assert first.headers["cache-control"].startswith("max-age=")
        assert 0 <= int(first.headers["cache-control"].split("=")[1]) <= 3600
        assert body["items"] and body["next_check_at"]
        for item in body["items"]:
            assert item["decision"] in DECISIONS
            # a stale series has no probability: nothing is extrapolated past its last point
            assert (item["p_breach"] is None if item["decision"] == "stale"
                    else 0.0 <= item["p_breach"] <= 1.0)
            assert item["run_id"] == body["run_id"] and item["unique_id"]
            assert "freshness_s" in item and "act_by" in item and "reason" in item
        same = http.get("/v1/interventions", headers={"If-None-Match": etag})
        assert same.status_code == 304 and same.headers["etag"] == etag and not same.content
        run_id = http.post("/v1/runs", headers={"Authorization": f"Bearer {WRITE}"}).json()[
            "run_id"]
        assert wait_for_run(http, run_id)["status"] == "published"
        after = http.get("/v1/interventions", headers={"If-None-Match": etag})
        assert after.status_code == 200 and after.headers["etag"] == f'"run-{run_id}"'
        assert after.json()["run_id"] == run_id


def test_filters_by_service_decision_and_probability(server: Server) -> None:
    with server.client() as http:
        every = http.get("/v1/interventions").json()["items"]
        only_b = http.get("/v1/interventions", params={"service": "svc-b"}).json()["items"]
        assert only_b and {i["service"] for i in only_b} == {"svc-b"}
        likely = http.get("/v1/interventions", params={"min_p_breach": 0.5}).json()["items"]
        assert [i["unique_id"] for i in likely] == [i["unique_id"] for i in every
                                                    if i["p_breach"] >= 0.5]
        decisions = {i["decision"] for i in every}
        picked = sorted(decisions)[0]
        chosen = http.get("/v1/interventions", params={"decision": picked}).json()["items"]
        assert chosen and {i["decision"] for i in chosen} == {picked}
        per_service = http.get("/v1/interventions", params={"by_service": True}).json()["items"]
        assert sorted(i["service"] for i in per_service) == ["svc-a", "svc-b"]
        bad = http.get("/v1/interventions", params={"decision": "panic"})
        assert bad.status_code == 422 and "panic" in bad.json()["error"]["message"]
        worse = http.get("/v1/interventions", params={"min_p_breach": 2})
        assert worse.status_code == 422 and "min_p_breach" in worse.json()["error"]["message"]


def test_tokens_and_scopes(server: Server) -> None:
    with server.client(token=None) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        missing = anonymous.get("/v1/interventions")
        assert missing.status_code == 401 and "bearer" in missing.json()["error"]["message"]
        assert missing.headers["www-authenticate"] == "Bearer"
    with server.client(token="guess") as wrong:
        assert wrong.get("/v1/interventions").status_code == 401
    with server.client(token=READ) as reader:
        forbidden = reader.post("/v1/points", json=[])
        assert forbidden.status_code == 403
        assert "write_tokens" in forbidden.json()["error"]["message"]
        assert reader.post("/v1/runs").status_code == 403
    with server.client(token=WRITE) as writer:
        assert writer.get("/v1/interventions").status_code == 200  # write implies read


def test_a_bad_batch_gets_per_row_errors_and_the_good_rows_are_stored(server: Server) -> None:
    ts = (now_utc() - timedelta(minutes=1)).replace(microsecond=0).isoformat() + "Z"
    rows = [
        {"ts": ts, "service": "svc-c", "metric": "latency_p95_ms", "value": 410.0},
        {"ts": ts, "service": "svc-c", "metric": "error_rate", "value": "lots"},
        {"ts": ts, "service": "svc-c", "metric": "requests_per_s", "value": 12.5},
        {"ts": ts, "service": "svc c!", "metric": "error_rate", "value": 0.1},
        {"ts": "yesterday", "service": "svc-c", "metric": "error_rate", "value": 0.1},
    ]
    with server.client(token=WRITE) as http:
        answer = http.post("/v1/points", json={"points": rows})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["rows"] == 5 and report["stored"] == 2 and report["rejected"] == 3
        errors = {e["row"]: e for e in report["errors"]}
        assert set(errors) == {2, 4, 5}
        assert errors[2]["field"] == "value" and "lots" in errors[2]["message"]
        assert errors[4]["field"] == "service"
        assert errors[5]["field"] == "ts"
        stored = http.get("/v1/history", params={"service": "svc-c"}).json()["items"]
        assert sorted(r["unique_id"] for r in stored) == ["svc-c:latency_p95_ms",
                                                          "svc-c:requests_per_s"]
        unusable = http.post("/v1/points", json=[{"when": ts, "what": 1}])
        assert unusable.status_code == 422 and "when" in unusable.json()["error"]["message"]
        assert http.post("/v1/points", content=b"{not json").status_code == 422


def test_request_logs_over_http_are_rolled_up(server: Server) -> None:
    base = (now_utc() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    rows = [{"ts": (base + timedelta(seconds=10 * i)).isoformat() + "Z", "service": "svc-r",
             "latency_ms": 100.0 + i, "status": 500 if i % 10 == 0 else 200}
            for i in range(30)]
    with server.client(token=WRITE) as http:
        report = http.post("/v1/requests", json=rows).json()
        assert report["requests_stored"] == 30 and report["rejected"] == 0
        history = http.get("/v1/series/svc-r:error_rate/history").json()["items"]
        assert [round(h["y"], 4) for h in history] == [0.1]


def test_an_oversized_body_is_refused_with_413(server: Server) -> None:
    row = {"ts": "2026-11-26T00:00:00Z", "service": "svc-a", "metric": "m", "value": 1.0}
    with server.client(token=WRITE) as http:
        answer = http.post("/v1/points", json=[row] * 1000)
        assert answer.status_code == 413
        assert str(MAX_BYTES) in answer.json()["error"]["message"]


def test_a_second_run_while_one_runs_gets_409(server: Server) -> None:
    with server.client(token=WRITE) as http:
        first = http.post("/v1/runs")
        assert first.status_code == 202 and first.headers["location"].endswith(
            str(first.json()["run_id"]))
        second = http.post("/v1/runs")
        assert second.status_code == 409
        assert f"run {first.json()['run_id']}" in second.json()["error"]["message"]
        wait_for_run(http, first.json()["run_id"])


def test_events_are_recorded_and_checked(server: Server) -> None:
    with server.client(token=WRITE) as http:
        done = http.post("/v1/events", json={"service": "svc-b", "ts": "2026-11-25T10:00:00Z",
                                              "kind": "scale_out", "detail": "2 more replicas"})
        assert done.status_code == 201 and done.json()["event_id"] >= 1
        bad = http.post("/v1/events", json={"service": "svc b", "ts": "2026-11-25T10:00:00Z",
                                             "kind": "deploy"})
        assert bad.status_code == 422 and "svc b" in bad.json()["error"]["message"]
        missing = http.post("/v1/events", json={"service": "svc-b", "kind": "deploy"})
        assert missing.status_code == 422 and "ts" in missing.json()["error"]["message"]


def test_series_forecast_history_services_runs_and_anomalies(server: Server) -> None:
    with server.client() as http:
        forecast = http.get("/v1/series/svc-b:latency_p95_ms/forecast").json()["items"]
        assert forecast and all(f["q05"] <= f["q50"] <= f["q95"] for f in forecast)
        sampled = http.get("/v1/series/svc-a:requests_per_s/history",
                           params={"points": 40}).json()["items"]
        assert 30 <= len(sampled) <= 41
        assert all(s["y_min"] <= s["y"] <= s["y_max"] and s["n"] >= 1 for s in sampled)
        assert http.get("/v1/series/svc-a:nothing/history").status_code == 404
        assert http.get("/v1/series/not-an-id/forecast").status_code == 422
        detail = http.get("/v1/services/svc-b").json()
        assert detail["answer"]["service"] == "svc-b" and len(detail["series"]) >= 2
        assert http.get("/v1/services/nope").status_code == 404
        runs = http.get("/v1/runs").json()["items"]
        assert runs and runs[0]["run_id"] >= runs[-1]["run_id"]
        one = http.get(f"/v1/runs/{runs[-1]['run_id']}").json()
        assert one["status"] == "published" and "timings" in one["detail"]
        assert http.get("/v1/runs/999999").status_code == 404
        anomalies = http.get("/v1/anomalies", params={"since": "2026-01-01T00:00:00Z"})
        assert anomalies.status_code == 200 and isinstance(anomalies.json()["items"], list)
        reliability = http.get("/v1/reliability").json()
        assert reliability["overall"]["scored"] == 0 and reliability["items"] == []  # too new
        assert reliability["calibration"] is None  # no record yet: answers are the raw ones
        items = http.get("/v1/interventions").json()["items"]
        assert "reliability" in items[0]
        for item in items:  # the raw share of paths, kept beside the published p_breach
            raw = item["p_breach_raw"]
            assert raw is None if item["decision"] in ("breached", "stale") else 0 <= raw <= 1
        docs = http.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert "/v1/interventions" in http.get("/openapi.json").json()["paths"]


def test_metrics_parse_as_prometheus_text(server: Server) -> None:
    with server.client() as http:
        text = http.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    p = families["forecaster_p_breach"].samples
    assert p and all(0.0 <= s.value <= 1.0 for s in p)
    decisions = families["forecaster_decision"].samples
    for service in ("svc-a", "svc-b"):
        assert sum(s.value for s in decisions if s.labels["service"] == service) == 1.0
    eta = families["forecaster_eta_seconds"].samples
    by_series: dict[str, dict[str, float]] = {}
    for s in eta:
        by_series.setdefault(s.labels["series"], {})[s.labels["quantile"]] = s.value
    for quantiles in by_series.values():  # ordered where present
        values = [quantiles[q] for q in ("0.1", "0.5", "0.9") if q in quantiles]
        assert values == sorted(values)
    assert "forecaster_refresh_runs" in families
    assert "forecaster_ingest_rows" in families and "forecaster_stored" in families


def test_the_python_client_gives_the_same_frames_as_a_file(server: Server,
                                                           tmp_path: Path) -> None:
    with Store.open(tmp_path / "empty.duckdb", now=now_utc()) as local, \
            RemoteStore(server.url, token=READ) as remote:
        for name in ("interventions", "runs", "series", "anomalies", "history", "run_series"):
            there = getattr(remote, name)()
            here = getattr(local, name)()
            assert there.schema == here.schema, name
        assert remote.interventions().height >= 4
        assert remote.history(service="svc-a", metric="error_rate").height == 8 * 288
        assert remote.forecasts("svc-b:latency_p95_ms")["q50"].is_not_null().all()
        with pytest.raises(RemoteError, match="404"):
            remote.forecasts("svc-a:nothing")


def test_the_database_is_the_servers_alone(server: Server) -> None:
    second = run_cli("--db", str(server.db), "serve", "--port", str(free_port()))
    assert second.returncode == 3
    assert f"forecaster server at {server.url}" in second.stderr
    assert "use its HTTP API" in second.stderr
    cli = run_cli("--db", str(server.db), "interventions")
    assert cli.returncode == 3 and server.url in cli.stderr


def test_no_tokens_means_loopback_only(tmp_path: Path) -> None:
    refused = run_cli("--db", str(tmp_path / "x.duckdb"), "serve", "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert "refusing to serve on 0.0.0.0 without tokens" in refused.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_the_scheduler_refreshes_on_its_interval_and_survives_a_failing_job(
        tmp_path: Path) -> None:
    drop = tmp_path / "incoming"
    drop.mkdir()
    server = start_server(tmp_path, "2s", tokens=False,
                          extra_env={"FORECASTER_INGEST_POINTS_FROM": str(drop / "*.csv")})
    try:
        with server.client(token=None) as http:
            def scheduled() -> list[dict[str, object]]:
                runs = http.get("/v1/runs", params={"limit": 1000}).json()["items"]
                return [r for r in runs if r["trigger"] == "schedule"]

            deadline = time.monotonic() + 90
            while len([r for r in scheduled() if r["status"] == "published"]) < 2:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.5)
            server.policies.write_text("[[policy]]\nmetric = 'latency_p95_ms'\nlimit = 'high'\n")
            deadline = time.monotonic() + 90
            while not [r for r in scheduled() if r["status"] == "failed"]:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.5)
            [failed, *_] = [r for r in scheduled() if r["status"] == "failed"]
            assert "policies.toml: line 1" in str(failed["error"])
            ready = http.get("/readyz")
            assert ready.status_code == 200
            job = ready.json()["refresh_job"]
            assert job["failures"] >= 1
            # a file dropped where the job looks is ingested by the next run
            (drop / "late.csv").write_text("ts,service,metric,value\n"
                                           "2026-11-20T00:00:00Z,svc-file,error_rate,0.02\n")
            server.policies.write_text("")
            deadline = time.monotonic() + 90
            while not [r for r in scheduled() if r["status"] == "published"
                       and r["run_id"] > failed["run_id"]]:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.5)
            assert http.get("/readyz").json()["scheduler"]["ok"] is True
            dropped = http.get("/v1/history", params={"service": "svc-file"}).json()["items"]
            assert [row["y"] for row in dropped] == [0.02]
            ingested = {s.name: s.value for f in text_string_to_metric_families(
                http.get("/metrics").text) for s in f.samples
                if s.labels.get("kind") == "points" and s.labels.get("outcome") == "stored"}
            assert list(ingested.values()) == [1.0]
        assert "refresh run" in server.output() and "failed" in server.output()
    finally:
        stop(server)
    assert server.process.returncode == 0, server.output()
    assert "Application shutdown complete" in server.output()
    assert not server.db.with_name(server.db.name + ".owner").exists()  # let go of the file


def test_the_demo_ends_by_serving_its_database(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    env["FORECASTER_PORT"] = str(port)
    log = tmp_path / "demo.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "forecaster", "--db", str(tmp_path / "demo.duckdb"), "demo",
         "--data", "data", "--serve"], cwd=ROOT, env=env, stdout=log.open("w"),
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        with httpx.Client(base_url=url, timeout=30) as http:
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                try:
                    if http.get("/readyz").json()["scheduler"]["ok"]:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            assert http.get("/v1/interventions").status_code == 200  # the demo's own run
        text = log.read_text()
        assert f"Serving the demo at {url}" in text and f"curl {url}/v1/interventions" in text
    finally:
        process.terminate()
        process.wait(timeout=120)
    assert process.returncode == 0, log.read_text()
