"""Weekly reports and charts over the API, and the weekly report job: a real uvicorn server on a
loopback port over a real DuckDB file, real HTTP, the service's real APScheduler and worker process.

The server runs in this process (a thread), so that the test owns the service's clock: the job
reports on the last full week *of that clock*, and a test moves it from the week the run was
made in to the next Monday. Two services of the sample fleet, three metrics, three weeks,
refreshed once.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pytest
import uvicorn
from conftest import ROOT
from test_server import READ, WRITE, free_port

from forecaster.api import create_app
from forecaster.api.reports import preferred
from forecaster.config import Settings, demand_factors, load_settings
from forecaster.errors import ConfigError
from forecaster.service import Service, descendants, report_trigger
from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store

SERVICES = ("chat-api", "code-assist")
METRICS = ("requests_per_s", "latency_p95_ms", "error_rate")
T0 = datetime(2026, 11, 26)  # Thursday of 2026-W48, just after the sample fleet's last point
NEXT_MONDAY = datetime(2026, 11, 30, 6, 0)  # 2026-W49: the last full week is 2026-W48
SVG_NS = "{http://www.w3.org/2000/svg}"


@dataclass
class Clock:
    """The service's clock, moved by the tests."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Served:
    url: str
    service: Service
    clock: Clock
    policies: Path
    run_id: int

    def client(self, token: str | None = READ) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


def fleet_points() -> pl.DataFrame:
    points = pl.read_parquet(ROOT / "data" / "fleet" / "points.parquet")
    return points.filter(pl.col("service").is_in(SERVICES) & pl.col("metric").is_in(METRICS)
                         & (pl.col("ts") >= T0 - timedelta(days=21)) & (pl.col("ts") < T0))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("reports")
    policies = tmp / "policies.toml"
    shutil.copy(ROOT / "data" / "policies.toml", policies)
    settings = Settings(policies=str(policies), read_tokens=READ, write_tokens=WRITE,
                        report_day="wed", report_time="18:30", report_timezone="Europe/Paris",
                        report_what_if="1.3,2")
    clock = Clock(T0)
    store = Store.open(tmp / "served.duckdb", now=T0, settings=settings)
    assert ingest_points_frame(store, fleet_points(), T0).rejected == 0
    service = Service(store, settings, clock)
    # the scheduler and its worker process, as `serve` starts them; no refresh tick in the test
    service.start(first_run_in=timedelta(days=3650))
    server = uvicorn.Server(uvicorn.Config(create_app(service, start_scheduler=False),
                                           host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn")
    try:
        run_id = service.begin_refresh("test")
        result = service.finish_refresh(run_id)
        assert result is not None and result.status == "published", result
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        yield Served(f"http://127.0.0.1:{server.config.port}", service, clock, policies, run_id)
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(timeout=60)
        service.stop()  # the app's lifespan stops it too; stopping twice is harmless
        store.close()


def made(served: Served, week: str | None = None) -> dict[str, object]:
    with served.client(WRITE) as http:
        answer = http.post("/v1/reports", params={"week": week} if week else None)
    assert answer.status_code == 201, answer.text
    body: dict[str, object] = answer.json()
    return body


def svg_paths(body: bytes) -> int:
    root = ET.fromstring(body)
    assert root.tag == f"{SVG_NS}svg"
    return len(root.findall(f".//{SVG_NS}path"))


def spawned_workers() -> list[int]:
    """This process's worker processes (multiprocessing's spawned children)."""
    return [pid for pid in descendants(os.getpid())
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_report_job(served: Served) -> dict[str, object]:
    """Run the weekly job on the scheduler now and wait for its state on /readyz."""
    with served.client() as http:
        before = http.get("/readyz").json()["report_job"]["runs"]
        served.service.run_job_now("report")
        deadline = time.monotonic() + 120
        while True:
            job: dict[str, object] = http.get("/readyz").json()["report_job"]
            if job["runs"] == before + 1:
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.2)


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "raw", "problem"), [
    ("report_day", "monday", "report_day = 'monday' is not a known day of the week; known: mon, "
                             "tue, wed, thu, fri, sat, sun"),
    ("report_time", "6:00", "report_time = '6:00' is not a time of day; write HH:MM"),
    ("report_time", "24:00", "report_time = '24:00' is not a time of day"),
    ("report_timezone", "Mars/Olympus", "report_timezone = 'Mars/Olympus' is not a known IANA "
                                        "time zone name; write one such as UTC, Europe/Paris"),
    ("report_timezone", "Europe", "report_timezone = 'Europe' is not a known IANA"),  # a folder
    ("report_timezone", "../../etc/passwd", "report_timezone = '../../etc/passwd' is not a known"),
    ("report_what_if", "1.3,x", "report_what_if = '1.3,x' is not a list of demand multipliers; "
                                "write numbers above 0 separated by commas"),
    ("report_what_if", "0", "report_what_if = '0' is not a list of demand multipliers"),
    ("report_what_if", "inf", "report_what_if = 'inf' is not a list"),
])
def test_bad_report_settings_name_the_value_and_what_is_allowed(name: str, raw: str,
                                                                problem: str) -> None:
    with pytest.raises(ConfigError, match=f"^settings: {problem}"):
        load_settings({f"FORECASTER_{name.upper()}": raw})


def test_report_settings_are_read_and_make_the_trigger() -> None:
    settings = load_settings({"FORECASTER_REPORT_DAY": "fri", "FORECASTER_REPORT_TIME": "23:45",
                              "FORECASTER_REPORT_TIMEZONE": "America/New_York",
                              "FORECASTER_REPORT_WHAT_IF": " 1.5 , 2 "})
    assert demand_factors(settings.report_what_if) == (1.5, 2.0)
    assert demand_factors("") == () and demand_factors(Settings().report_what_if) == (1.3,)
    trigger = report_trigger(settings)
    after = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # a Sunday
    first = trigger.get_next_fire_time(None, after)
    # Friday 23:45 in New York (UTC-5 in winter) is Saturday 04:45 UTC
    assert first == datetime(2026, 12, 5, 4, 45, tzinfo=UTC)
    assert trigger.get_next_fire_time(first, first + timedelta(seconds=1)) - first == timedelta(
        days=7)
    default = report_trigger(Settings()).get_next_fire_time(None, after)
    assert default == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # Monday 06:00 UTC


# -- making, listing and serving reports -----------------------------------------------------


def test_making_a_report_needs_a_write_token_and_reading_one_a_token(served: Served) -> None:
    with served.client(token=None) as anonymous:
        for method, path in (("GET", "/v1/reports"), ("GET", "/v1/reports/latest"),
                             ("GET", "/v1/reports/2026-W48"), ("POST", "/v1/reports")):
            answer = anonymous.request(method, path)
            assert answer.status_code == 401, (method, path)
            assert "bearer" in answer.json()["error"]["message"]
    with served.client(token="guess") as wrong:
        assert wrong.post("/v1/reports").status_code == 401
    with served.client(READ) as reader:
        forbidden = reader.post("/v1/reports")
        assert forbidden.status_code == 403
        assert "write_tokens" in forbidden.json()["error"]["message"]


def test_a_report_made_now_is_kept_listed_and_served_as_html_or_json(served: Served) -> None:
    kept = made(served)  # default: the newest run's week
    assert kept["week"] == "2026-W48" and kept["run_id"] == served.run_id
    assert kept["url"] == "/v1/reports/2026-W48"
    assert kept["week_start"] == "2026-11-23T00:00:00Z" and kept["as_of"] == "2026-11-26T00:00:00Z"
    with served.client() as http:
        listed = http.get("/v1/reports").json()["items"]
        assert [r["week"] for r in listed] == ["2026-W48"]
        assert listed[0]["url"] == kept["url"] and listed[0]["made_at"] == kept["made_at"]
        page = http.get("/v1/reports/latest")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["vary"] == "Accept" and page.headers["cache-control"] == "no-cache"
        html = page.text
        assert "<h1>Capacity planning, week 2026-W48</h1>" in html and html.count("<svg") >= 5
        assert listed[0]["html_bytes"] == kept["html_bytes"] == len(page.content)
        same = http.get("/v1/reports/2026-W48")
        assert same.content == page.content and same.headers["etag"] == page.headers["etag"]
        figures = http.get("/v1/reports/2026-W48", headers={"Accept": "application/json"})
        assert figures.headers["content-type"] == "application/json"
        assert figures.headers["etag"] != page.headers["etag"]  # another representation
        body = figures.json()
        assert (body["week"], body["run_id"], body["factors"]) == ("2026-W48", served.run_id,
                                                                   [1.3, 2.0])
        assert sorted(p["service"] for p in body["plans"]) == sorted(SERVICES)
        # the report's dates are the API's, for the same run, written the same way
        answers = http.get("/v1/interventions").json()
        assert answers["run_id"] == body["run_id"]
        by_uid = {a["unique_id"]: a for a in answers["items"]}
        assert body["risks"]
        for risk in body["risks"]:
            api = by_uid[risk["unique_id"]]
            for key in ("decision", "eta_p10", "eta_p50", "eta_p90", "act_by", "p_breach"):
                assert risk[key] == api[key], (risk["unique_id"], key)
        again = http.get("/v1/reports/latest", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304 and not again.content


@pytest.mark.parametrize(("accept", "media"), [
    ("application/json", "application/json"),
    ("text/html;q=0.5, application/json", "application/json"),
    ("application/*", "application/json"),
    ("text/html;q=0, */*", "application/json"),
    ("*/*", "text/html; charset=utf-8"),
    ("text/*, application/json;q=0.9", "text/html; charset=utf-8"),
    ("application/json, text/html", "text/html; charset=utf-8"),  # a tie: the page
    ("", "text/html; charset=utf-8"),
])
def test_the_accept_header_chooses_the_page_or_the_figures(served: Served, accept: str,
                                                           media: str) -> None:
    if "2026-W48" not in _kept(served):
        made(served)
    with served.client() as http:
        answer = http.get("/v1/reports/2026-W48", headers={"Accept": accept})
    assert answer.status_code == 200 and answer.headers["content-type"] == media


def _kept(served: Served) -> list[str]:
    with served.client() as http:
        return [r["week"] for r in http.get("/v1/reports").json()["items"]]


@pytest.mark.parametrize("accept", ["image/png", "text/plain, application/xml",
                                    "application/json;q=0, text/html;q=0"])
def test_an_accept_that_allows_neither_gets_406(served: Served, accept: str) -> None:
    with served.client() as http:
        answer = http.get("/v1/reports/latest", headers={"Accept": accept})
    assert answer.status_code == 406
    error = answer.json()["error"]
    assert error["status"] == 406 and "text/html" in error["message"]
    assert "application/json" in error["message"] and accept[:20] in error["message"]


def test_preferred_takes_the_most_specific_range_of_each_offer() -> None:
    offers = ("text/html", "application/json")
    assert preferred(None, offers) == "text/html"
    assert preferred("*/*;q=0.1, application/json;q=0.2", offers) == "application/json"
    assert preferred("*/*, text/html;q=0", offers) == "application/json"
    assert preferred("TEXT/HTML", offers) == "text/html"
    assert preferred("application/json;q=junk", offers) == "application/json"
    assert preferred("image/*, audio/*", offers) is None


def test_an_absent_week_is_404_naming_it_and_the_kept_weeks(served: Served) -> None:
    if "2026-W48" not in _kept(served):
        made(served)
    with served.client() as http:
        absent = http.get("/v1/reports/2026-W40")
        assert absent.status_code == 404
        message = absent.json()["error"]["message"]
        assert "2026-W40" in message and "kept: 2026-W48" in message
    with served.client(WRITE) as writer:
        no_run = writer.post("/v1/reports", params={"week": "2026-W40"})
        assert no_run.status_code == 404
        message = no_run.json()["error"]["message"]
        assert message.startswith("week 2026-W40: no run was published from 2026-09-28")


@pytest.mark.parametrize(("week", "says"), [
    ("2026-48", "is not of the form YYYY-Www"), ("W48-2026", "is not of the form YYYY-Www"),
    ("2026-W54", "does not exist: 2026 has weeks 01 to 53"),
    ("2025-W53", "does not exist: 2025 has weeks 01 to 52"),
    ("0000-W01", "is outside the years 1970 to 2199 (YYYY-Www"),
    ("2300-W01", "is outside the years 1970 to 2199"),
])
def test_a_malformed_week_is_422_saying_the_form(served: Served, week: str, says: str) -> None:
    with served.client(WRITE) as http:
        for answer in (http.get(f"/v1/reports/{week}"),
                       http.post("/v1/reports", params={"week": week})):
            assert answer.status_code == 422, answer.text
            assert says in answer.json()["error"]["message"]


# -- charts ----------------------------------------------------------------------------------


def test_a_series_chart_is_svg_with_drawn_paths_and_the_runs_etag(served: Served) -> None:
    with served.client() as http:
        chart = http.get("/v1/series/chat-api:latency_p95_ms/chart.svg")
        assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
        assert chart.headers["etag"] == f'"run-{served.run_id}"'
        assert chart.headers["cache-control"].startswith("max-age=")
        assert svg_paths(chart.content) > 20  # history, fan, limit, axes, glyphs as paths
        same = http.get("/v1/series/chat-api:latency_p95_ms/chart.svg",
                        headers={"If-None-Match": chart.headers["etag"]})
        assert same.status_code == 304 and not same.content
        other = http.get("/v1/series/code-assist:error_rate/chart.svg")
        assert other.status_code == 200 and other.content != chart.content
        missing = http.get("/v1/series/chat-api:nothing/chart.svg")
        assert missing.status_code == 404 and "chat-api:nothing" in missing.text
        malformed = http.get("/v1/series/no-colon/chart.svg")
        assert malformed.status_code == 422 and malformed.json()["error"]["status"] == 422


def test_a_service_chart_draws_demand_against_its_learned_capacity(served: Served) -> None:
    with served.client() as http:
        chart = http.get("/v1/services/chat-api/chart.svg")
        assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
        assert chart.headers["etag"] == f'"run-{served.run_id}"'
        assert svg_paths(chart.content) > 20
        # the capacity is the report's for the same run and seed: the report shows this chart
        again = http.get("/v1/services/chat-api/chart.svg")
        assert again.content == chart.content
        missing = http.get("/v1/services/no-such-service/chart.svg")
        assert missing.status_code == 404 and "no-such-service" in missing.text
        bad = http.get("/v1/services/a%20b/chart.svg")
        assert bad.status_code == 422


# -- the weekly job --------------------------------------------------------------------------


def test_the_job_is_scheduled_at_the_report_day_and_time_in_its_time_zone(
        served: Served) -> None:
    with served.client() as http:
        job = http.get("/readyz").json()["report_job"]
    at = datetime.fromisoformat(job["next_report_at"].replace("Z", "+00:00"))
    local = at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.strftime("%a"), local.hour, local.minute) == ("Wed", 18, 30)
    assert timedelta(0) < at - datetime.now(UTC) <= timedelta(days=7)


def test_the_weekly_job_keeps_the_last_full_weeks_report(served: Served) -> None:
    served.clock.now = NEXT_MONDAY
    workers = spawned_workers()
    assert workers  # the service's worker process
    before = sum(cpu_seconds(pid) for pid in workers), os.times()
    job = run_report_job(served)
    after = sum(cpu_seconds(pid) for pid in workers), os.times()
    # the capacity fits and the charts ran in the worker process, not in the API's
    own = (after[1].user + after[1].system) - (before[1].user + before[1].system)
    assert after[0] - before[0] > 1.0 and after[0] - before[0] > own, (before, after)
    assert job["last_ok"] is True and job["last_week"] == "2026-W48", job
    assert job["last_error"] is None and job["making"] is None
    with served.client() as http:
        listed = http.get("/v1/reports").json()["items"]
        [kept] = [r for r in listed if r["week"] == "2026-W48"]
        assert kept["made_at"] == "2026-11-30T06:00:00Z"  # made by the job, at its clock
        figures = http.get("/v1/reports/2026-W48", headers={"Accept": "application/json"}).json()
        assert figures["made_at"] == "2026-11-30T06:00:00Z" and figures["run_id"] == served.run_id
    assert served.service.report_status.last_run_id == served.run_id


def test_a_week_without_a_run_is_skipped_with_the_reason(served: Served) -> None:
    served.clock.now = datetime(2026, 12, 14, 6, 0)  # the last full week, 2026-W50, has no run
    before = served.service.report_status.skipped
    job = run_report_job(served)
    assert job["skipped"] == before + 1 and job["last_week"] == "2026-W50"
    assert job["last_skip"].startswith("week 2026-W50: no run was published from 2026-12-07")
    assert "2026-11-26 00:00" in job["last_skip"]  # the newest run before its end
    assert "2026-W50" not in _kept(served)


def test_a_failing_job_is_recorded_and_the_service_keeps_answering(served: Served) -> None:
    good = served.policies.read_text()
    served.policies.write_text("[[policy]]\nmetric = 'latency_p95_ms'\nlimit = 'high'\n")
    served.clock.now = NEXT_MONDAY
    try:
        failures = served.service.report_status.failures
        job = run_report_job(served)
        assert job["failures"] == failures + 1 and job["last_ok"] is False
        assert "policies.toml: line 1 (policy 1): missing 'direction'" in job["last_error"]
        with served.client() as http:
            ready = http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["scheduler"]["ok"] is True
            assert ready.json()["report_job"]["failures"] == failures + 1
            assert http.get("/v1/interventions").status_code == 200
            assert http.get("/v1/reports/2026-W48").status_code == 200  # the kept one stays
            # a chart not drawn yet needs the policies too: 503 saying why, not a 500
            chart = http.get("/v1/services/code-assist/chart.svg")
            assert chart.status_code == 503, chart.text
            assert "cannot draw the chart" in chart.json()["error"]["message"]
            assert "policies.toml: line 1" in chart.json()["error"]["message"]
    finally:
        served.policies.write_text(good)
    job = run_report_job(served)  # the next run, the file mended, succeeds
    assert job["last_ok"] is True and job["last_error"] is None


def test_a_report_asked_for_while_one_is_made_gets_409(served: Served) -> None:
    answers: list[httpx.Response] = []

    def first_post() -> None:
        with served.client(WRITE) as http:
            answers.append(http.post("/v1/reports"))

    first = threading.Thread(target=first_post)
    first.start()
    deadline = time.monotonic() + 30
    while served.service.report_job()["making"] is None:  # it takes seconds once begun
        assert first.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    with served.client(WRITE) as http:
        second = http.post("/v1/reports")
    first.join()
    assert second.status_code == 409
    assert "2026-W48 is being made" in second.json()["error"]["message"]
    assert answers[0].status_code == 201


def test_the_routes_are_documented(served: Served) -> None:
    with served.client() as http:
        paths = http.get("/openapi.json").json()["paths"]
    page = paths["/v1/reports/{week}"]["get"]
    assert set(page["responses"]["200"]["content"]) == {"text/html; charset=utf-8",
                                                        "application/json"}
    assert {"304", "401", "404", "406", "422"} <= set(page["responses"])
    week = next(p for p in page["parameters"] if p["name"] == "week")
    assert week["schema"]["pattern"].startswith("^(19[7-9]")
    post = paths["/v1/reports"]["post"]
    assert {"201", "401", "403", "404", "409", "422"} <= set(post["responses"])
    for path in ("/v1/series/{uid}/chart.svg", "/v1/services/{service_name}/chart.svg"):
        chart = paths[path]["get"]
        assert list(chart["responses"]["200"]["content"]) == ["image/svg+xml"]
        assert chart["summary"] and chart["security"] == [{"bearer": []}]
    assert paths["/v1/reports"]["get"]["summary"].startswith("The kept weekly reports")
