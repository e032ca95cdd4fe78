"""The weekly capacity-planning report of the demo: written, kept, right about the sample fleet's
known capacity, and readable in a real browser (headless Chromium)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import ROOT, run_cli
from debian import installed
from test_capacity import _law_capacity

from forecaster.report.week import parse_week
from forecaster.store import Store

FLEET = ROOT / "data" / "fleet"
OUTPUT = ROOT / "tests" / "output"
P95_LIMIT = 1500.0  # the built-in policy of latency_p95_ms (forecaster.policies)


@dataclass
class Demo:
    folder: Path
    stdout: str
    page: Path
    figures: dict[str, Any]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The demo on the shipped sample fleet, as `make demo` runs it (without --serve)."""
    work = tmp_path_factory.mktemp("demo")
    done = run_cli("demo", "--data", str(ROOT / "data"), cwd=work)
    assert done.returncode == 0, done.stderr
    pages = sorted((work / ".demo").glob("report-*.html"))
    assert len(pages) == 1, done.stdout
    figures = json.loads(pages[0].with_suffix(".json").read_text())
    return Demo(work / ".demo", done.stdout, pages[0], figures)


def _plan(figures: dict[str, Any], service: str) -> dict[str, Any]:
    return next(p for p in figures["plans"] if p["service"] == service)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", ""))


def test_the_demo_writes_and_keeps_its_report(demo: Demo) -> None:
    assert f"report: {Path('.demo') / demo.page.name}" in demo.stdout
    figures = demo.figures
    week = parse_week(figures["week"])
    as_of = _time(figures["as_of"])
    assert as_of is not None and week.start <= as_of < week.end
    assert figures["format"] == 1 and figures["run_id"] == 1
    with Store.open(demo.folder / "demo.duckdb", now=datetime(2026, 11, 29),
                    read_only=True) as store:
        kept = store.reports()
        assert kept["week"].to_list() == [figures["week"]]
        report = store.report(figures["week"])
        assert report is not None and report["html"] == demo.page.read_text()
        assert json.loads(report["figures"]) == figures
        # the report's dates are the run's, as published (JSON times as the API writes them)
        answers = {r["unique_id"]: r for r in store.interventions(1).iter_rows(named=True)}
    assert figures["risks"], "the sample fleet has series at risk"
    for risk in figures["risks"]:
        answer = answers[risk["unique_id"]]
        for key in ("eta_p10", "eta_p50", "eta_p90", "act_by"):
            assert _time(risk[key]) == answer[key], (risk["unique_id"], key)
        assert risk["decision"] == answer["decision"]
    # ranked: the ones that must start first first
    order = ["breached", "act_now", "schedule", "watch"]
    ranks = [(order.index(r["decision"]), r["act_by"] or "~") for r in figures["risks"]]
    assert ranks == sorted(ranks)


def test_embed_batch_capacity_and_saturation_hold_the_generators_truth(demo: Demo) -> None:
    """The learned capacity of embed-batch for its p95 limit holds the load the generator's law
    gives at the end of the history, and the demand-driven saturation interval holds the first
    hidden future time demand passed that load (data/fleet/future.parquet)."""
    plan = _plan(demo.figures, "embed-batch")
    assert plan["binding"] == "latency_p95_ms"
    p95 = next(one for one in plan["limited"] if one["metric"] == "latency_p95_ms")
    truth = _law_capacity("embed-batch", 28.0, P95_LIMIT)
    cap = p95["capacity"]
    assert cap["p10"] <= truth <= cap["p90"], (cap, truth)
    assert plan["stated_capacity"] == 460.0
    future = pl.read_parquet(FLEET / "future.parquet").filter(
        pl.col("service") == "embed-batch", pl.col("metric") == "requests_per_s").sort("ts")
    first_over = future.filter(pl.col("value") > truth)["ts"][0]
    sat = plan["saturation"]
    low, high = _time(sat["eta_p10"]), _time(sat["eta_p90"])
    assert low is not None and high is not None and low <= first_over <= high, (sat, first_over)
    assert 0.0 <= sat["p_saturation"] <= 1.0
    assert _time(sat["act_by"]) == low - timedelta(days=1)  # the demand policy's lead time
    room = plan["headroom"]
    assert room["growth_per_week"] == pytest.approx(1.025 ** 7 - 1, abs=0.03)


def test_the_what_if_at_factor_one_is_the_plain_answer(demo: Demo) -> None:
    planned = [p for p in demo.figures["plans"] if p["what_if"]]
    assert planned, "some service has a learned capacity"
    for plan in planned:
        plain = plan["what_if"][0]
        assert plain["factor"] == 1.0
        assert plain["saturation"] == plan["saturation"]
        assert plain["headroom_peak"] == plan["headroom"]["headroom_peak"]
        assert plain["headroom_current"] == plan["headroom"]["headroom_current"]
        for scaled in plan["what_if"][1:]:
            assert scaled["factor"] > 1.0
            # more demand never leaves more headroom
            for more, base in zip(scaled["headroom_peak"], plain["headroom_peak"], strict=True):
                assert more is None or base is None or more <= base


def test_a_week_without_runs_is_refused_naming_the_week(demo: Demo) -> None:
    done = run_cli("--db", str(demo.folder / "demo.duckdb"), "report", "--week", "2026-W40",
                   "--out", str(demo.folder / "elsewhere"))
    assert done.returncode == 2
    assert "week 2026-W40: no run was published from 2026-09-28 to 2026-10-05" in done.stderr
    bad = run_cli("--db", str(demo.folder / "demo.duckdb"), "report", "--week", "48")
    assert bad.returncode == 2 and "is not of the form YYYY-Www" in bad.stderr


# ---------------------------------------------------------------------------------------------
# In a real browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    [executable] = installed("chromium", "chromium")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable,
                                          args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def test_the_demo_report_reads_in_headless_chromium(demo: Demo, browser: Any) -> None:
    """No request fails (nothing is fetched: the page is self-contained), nothing is logged to
    the console as an error, and every chart has drawn content."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    failed: list[str] = []
    errors: list[str] = []
    requests: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(demo.page.as_uri(), wait_until="load")
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "demo-report.png"), full_page=True)
    charts = page.evaluate("""() => [...document.querySelectorAll('figure svg')].map(svg => {
        const box = svg.getBoundingClientRect();
        const drawn = [...svg.querySelectorAll('path')].filter(p => {
            const b = p.getBBox(); return b.width > 0 || b.height > 0; }).length;
        return {width: box.width, height: box.height, drawn};
    })""")
    headings = page.evaluate("() => [...document.querySelectorAll('h2')].map(h => h.textContent)")
    page.close()
    assert failed == [] and errors == []
    assert [url for url in requests if not url.startswith("file:")] == []
    services = {p["service"] for p in demo.figures["plans"]}
    assert len(charts) >= 1 + 2 * len(services)  # runway, and per service demand + curve at least
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 100, chart
        assert chart["drawn"] > 10, chart
    assert [h.split(".")[0] for h in headings[:7]] == [str(k) for k in range(1, 8)]
    assert (OUTPUT / "demo-report.png").stat().st_size > 50_000


@pytest.fixture(scope="module")
def went_stale(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """embed-batch refreshed at the end of its data, then a week later when its data had
    stopped: every answer of the second run is stale."""
    from forecaster.pipeline import run_once
    from forecaster.policies import load_policies
    from forecaster.report.gather import make
    from forecaster.sources.files import ingest_points_frame

    as_of = datetime(2026, 11, 26)
    points = pl.read_parquet(FLEET / "points.parquet").filter(pl.col("service") == "embed-batch")
    policies = load_policies(ROOT / "data" / "policies.toml")
    path = tmp_path_factory.mktemp("stale") / "stale.duckdb"
    with Store.open(path, now=as_of) as store:
        ingest_points_frame(store, points, now=as_of)
        for when in (as_of, as_of + timedelta(days=7)):
            from forecaster.config import Settings

            assert run_once(store, Settings(), policies, when).status == "published"
        return make(store, policies, None, as_of + timedelta(days=7), (1.3,), 0)


def test_stale_demand_gets_no_capacity_dates_and_no_all_clear(went_stale: Any) -> None:
    """Dates forecast from where the data stopped would lie before the run and read as due."""
    [plan] = went_stale.report.plans
    assert plan.problem is not None and "stale" in plan.problem
    assert plan.saturation is None and plan.headroom is None and plan.what_if == ()
    assert "series have no recent data (stale)" in went_stale.html
    assert "No series is expected to cross its limit" not in went_stale.html


def test_a_risk_whose_data_stopped_is_not_resolved(went_stale: Any) -> None:
    changes = went_stale.report.changes
    assert changes.previous_run_id == 1
    assert changes.resolved == []
    assert changes.unanswered and {c["now"] for c in changes.unanswered} == {"stale"}
    assert "embed-batch:requests_per_s" in {c["unique_id"] for c in changes.unanswered}


def test_capacity_is_learned_when_load_and_latency_timestamps_differ() -> None:
    """Separate exporters rarely share exact timestamps: each latency sample is matched with the
    nearest load sample within half a step."""
    from forecaster.policies import load_policies
    from forecaster.report import planning

    points = pl.read_parquet(FLEET / "points.parquet").filter(pl.col("service") == "embed-batch")
    history = points.select(
        (pl.col("service") + ":" + pl.col("metric")).alias("unique_id"),
        pl.when(pl.col("metric") == "requests_per_s").then(pl.col("ts"))
        .otherwise(pl.col("ts") + timedelta(seconds=30)).alias("ds"), pl.col("value").alias("y"))
    units = dict(points.select("metric", "unit").unique().rows())
    plan = planning.plan_service("embed-batch", history, units,
                                 load_policies(ROOT / "data" / "policies.toml"), (1.3,),
                                 timedelta(days=14), 0)
    assert plan.binding == "latency_p95_ms"
    capacity = plan.capacity
    truth = _law_capacity("embed-batch", 28.0, P95_LIMIT)
    assert capacity is not None and capacity.p10 is not None and capacity.p90 is not None
    assert capacity.p10 <= truth <= capacity.p90
