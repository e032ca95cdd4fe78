"""The shipped Prometheus rules (deploy/prometheus/forecaster-rules.yml): promtool checks them and
runs their unit tests, and a real Prometheus scraping a real `forecaster serve` (with a read
token) on the demo data fires them.

The served database holds part of the demo fleet (data/fleet/points.parquet): three metrics of
embed-batch, whose demand outgrows its capacity, and of chat-api, a healthy service (six series,
so the server's first refresh takes seconds, not the minute of the whole fleet), shifted in time
by whole days so that their data ends within a day before the real clock, at the time of day
the demo's does (the server refreshes as of the real time at start; unshifted, every series
would be stale; `stale_min` is 25 hours). Prometheus
loads the shipped rules file itself, unchanged: ForecasterActNow has ``for: 0m`` (see the file's
header), so it fires at the first evaluation after the scrape that brings the answer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest
import yaml
from conftest import ROOT
from prometheus_client.parser import text_string_to_metric_families
from promserver import Prometheus, promtool, start
from test_server import free_port

from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store

RULES = ROOT / "deploy" / "prometheus" / "forecaster-rules.yml"
RULE_TESTS = RULES.with_name("forecaster-rules.test.yml")
READ = "prometheus-read-token"
SERVICES = ("embed-batch", "chat-api")
METRICS = ("requests_per_s", "latency_p95_ms", "error_rate")


def _rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_shipped_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout, done.stdout


def test_the_rules_unit_tests_pass_and_cover_every_alert() -> None:
    """forecaster-rules.test.yml checks each alert's labels and rendered annotations (act-by,
    eta, reason, last point) on synthetic series, and each recording rule's values."""
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    tested = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    alerts_tested = {case["alertname"] for test in tested for case in test["alert_rule_test"]
                     if case["exp_alerts"]}
    records_tested = {re.split(r"[{\s]", case["expr"])[0] for test in tested
                      for case in test["promql_expr_test"]}
    assert alerts_tested == {r["alert"] for r in _rules() if "alert" in r}
    assert records_tested == {r["record"] for r in _rules() if "record" in r}


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def build_demo_db(path: Path) -> None:
    """Part of the demo fleet, shifted by whole days so that its data ends at the latest time of
    day it ends at (23:55) before the real clock, its calendar as in the demo. Shifted by minutes
    instead, the answer changed with the time of day the test ran (embed-batch demand was
    act_now at 16:50 and schedule at 17:05; the cause is not pinned down yet)."""
    now = _utc_now()
    points = pl.read_parquet(ROOT / "data" / "fleet" / "points.parquet").filter(
        pl.col("service").is_in(SERVICES) & pl.col("metric").is_in(METRICS))
    end = points["ts"].max()
    assert isinstance(end, datetime)
    shifted = points.with_columns(pl.col("ts") + timedelta(days=(now - end).days))
    with Store.open(path, now=now) as store:
        report = ingest_points_frame(store, shifted, now=now)
        assert report.rejected == 0 and report.stored == points.height, report.summary()


@dataclass
class Served:
    """A real `forecaster serve` and a real Prometheus scraping it with the shipped rules."""

    url: str
    forecaster: subprocess.Popen[str]
    log: Path
    prometheus: Prometheus

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {READ}"},
                         timeout=30)


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("prometheus-rules")
    db = tmp / "served.duckdb"
    build_demo_db(db)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    # the data ends up to a day before the server's clock: not stale before 25 hours
    env.update({"FORECASTER_READ_TOKENS": READ, "FORECASTER_REFRESH_EVERY": "1h",
                "FORECASTER_STALE_MIN": "25h",
                "FORECASTER_POLICIES": str(ROOT / "data" / "policies.toml")})
    log = tmp / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "forecaster", "--db", str(db), "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:  # the first refresh, at start, as of the real time
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no run published:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/readyz", timeout=5).json().get("last_published_run"):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        config = f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: forecaster
    authorization:
      type: Bearer
      credentials: {READ}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""
        prometheus = start(tmp / "prometheus", config)
    except BaseException:
        _stop(process)
        raise
    yield Served(url, process, log, prometheus)
    prometheus.stop()
    _stop(process)


def _wait_for(served: Served, promql: str, timeout: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := served.prometheus.query(promql):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql} stayed empty for {timeout} s; Prometheus targets: "
                         f"{httpx.get(f'{served.prometheus.url}/api/v1/targets').text[:2000]}")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_prometheus_scrapes_the_answers_with_a_read_token(served: Served) -> None:
    answers = served.get("/v1/interventions").json()
    as_of = _epoch(served.get(f"/v1/runs/{answers['run_id']}").json()["as_of"])
    item = next(i for i in answers["items"] if i["unique_id"] == "embed-batch:requests_per_s")
    eta = _wait_for(served, 'forecaster_eta_seconds{series="embed-batch:requests_per_s"}')
    got = {s["metric"]["quantile"]: float(s["value"][1]) for s in eta}  # type: ignore[index]
    want = {q: _epoch(item[f"eta_{p}"]) - as_of
            for q, p in (("0.1", "p10"), ("0.5", "p50"), ("0.9", "p90")) if item[f"eta_{p}"]}
    assert got.keys() == want.keys() and "0.5" in got
    assert all(abs(got[q] - want[q]) < 1e-3 for q in got), (got, want)
    p = _wait_for(served, 'forecaster_p_breach{series="embed-batch:requests_per_s"}')
    assert len(p) == 1 and abs(float(p[0]["value"][1]) - item["p_breach"]) < 1e-9  # type: ignore[index]
    p_all = served.prometheus.query('forecaster_p_breach{service=~"embed-batch|chat-api"}')
    assert {s["metric"]["series"] for s in p_all} == {  # type: ignore[index]
        i["unique_id"] for i in answers["items"] if i["p_breach"] is not None}
    up = served.prometheus.query('up{job="forecaster"}')
    assert [float(s["value"][1]) for s in up] == [1.0]  # type: ignore[index]


def _to_second(text: str) -> datetime:
    """An API time rounded to the nearest second, as Prometheus' round() gives it."""
    exact = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (exact + timedelta(microseconds=500_000)).replace(microsecond=0)


def test_the_shipped_act_now_alert_fires_with_action_act_by_and_reason(served: Served) -> None:
    answers = served.get("/v1/interventions").json()["items"]
    act_now = {i["unique_id"]: i for i in answers if i["decision"] == "act_now"}
    # the demo's growing demand: embed-batch must scale out now; chat-api is healthy
    assert "embed-batch:requests_per_s" in act_now
    assert not [i for i in answers if i["service"] == "chat-api" and i["decision"] != "ok"
                and i["decision"] != "watch"]
    firing = _wait_for(served, 'ALERTS{alertname="ForecasterActNow", alertstate="firing"}')
    labels = {s["metric"]["series"]: s["metric"] for s in firing}  # type: ignore[index]
    assert labels.keys() == act_now.keys()
    for uid, item in act_now.items():
        assert labels[uid]["action"] == item["action"] == "scale_out"
        assert (labels[uid]["service"], labels[uid]["metric"]) == (item["service"],
                                                                   item["metric"])
        assert labels[uid]["severity"] == "critical" and labels[uid]["category"] == "forecast"
    # annotations, rendered by Prometheus from the recording rules and the reason series
    body = httpx.get(f"{served.prometheus.url}/api/v1/alerts", timeout=30).json()
    alerts = {a["labels"]["series"]: a for a in body["data"]["alerts"]
              if a["labels"]["alertname"] == "ForecasterActNow" and a["state"] == "firing"}
    for uid, item in act_now.items():
        notes = alerts[uid]["annotations"]
        # the recording rules round times to the second (an eta clamped to the run's as-of time
        # carries its fraction of a second)
        act_by = _to_second(item["act_by"])
        assert notes["act_by"].startswith(f"{act_by:%Y-%m-%d %H:%M:%S} +0000 UTC ("), notes
        eta_p50 = _to_second(item["eta_p50"])
        assert notes["eta"].startswith(f"p50 {eta_p50:%Y-%m-%d %H:%M:%S} +0000 UTC (in "), notes
        assert notes["reason"] == item["reason"] and notes["reason"]
        assert notes["summary"] == (f"{item['service']}: scale_out now, {item['metric']} is "
                                    "forecast to cross its limit")
    # nothing in the demo is breached, stale or failing: those alerts stay quiet
    quiet = served.prometheus.query(
        'ALERTS{alertname=~"ForecasterBreached|ForecasterStale|ForecasterRefresh.*|'
        'ForecasterNoPublishedRun|ForecasterDown"}')
    assert quiet == []


def test_every_metric_the_rules_read_is_served(served: Served) -> None:
    """The rules read forecaster's own series by name: each one is on the live /metrics."""
    text = served.get("/metrics").text
    served_names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    read = set(re.findall(r"(?<![:\w])forecaster_[a-z0-9_]+", RULES.read_text()))
    # the pulled sources' series exist only where sources are configured (this server has none;
    # tests/test_prometheus_pull.py reads them from a service that pulls)
    pulled = {name for name in read if name.startswith("forecaster_source_")}
    assert pulled == {"forecaster_source_last_pull_ok"}
    assert read - pulled and read - pulled <= served_names, read - pulled - served_names
    loaded = httpx.get(f"{served.prometheus.url}/api/v1/rules", timeout=30).json()
    groups = loaded["data"]["groups"]
    assert {g["file"] for g in groups} == {str(RULES)}
    assert sum(len(g["rules"]) for g in groups) == len(_rules())
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
