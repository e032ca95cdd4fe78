"""One refresh on a real DuckDB file: published as one run, failures isolated."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import run_cli

import forecaster.pipeline as pipeline
from forecaster.config import Settings
from forecaster.engine.calibration import LEVELS, Scored, fit_record
from forecaster.pipeline import run_once
from forecaster.policies import Policy
from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store
from forecaster.types import DECISIONS

START = datetime(2026, 11, 1)
NOW = START + timedelta(days=14)
POLICIES = (
    Policy("depth", 150.0, "above", "scale_out", timedelta(hours=6)),
    Policy("quality_score", 0.8, "below", "retrain", timedelta(hours=12)),
)


def series(service: str, metric: str, values: np.ndarray, every_min: int = 5,
           start: datetime = START) -> pl.DataFrame:
    ts = [start + timedelta(minutes=every_min * i) for i in range(values.size)]
    return pl.DataFrame({"ts": ts, "service": service, "metric": metric, "value": values})


@pytest.fixture
def fleet_store(store: Store, now: datetime) -> Store:
    rng = np.random.default_rng(7)
    n = 12 * 24 * 14
    hours = np.arange(n) / 12
    frames = [
        series("rising", "depth", 100 + 0.1 * hours + rng.normal(0, 2, n)),
        series("flat", "depth", 50 + rng.normal(0, 2, n)),
        series("hot", "depth", 140 + 0.2 * hours.clip(0, 100) + rng.normal(0, 1, n)),
        series("drift", "quality_score", np.clip(0.95 - 0.008 * hours / 24
                                                 + rng.normal(0, 0.005, n), 0, 1)),
        # short, but fresh (a series whose points stopped long ago is `stale`)
        series("tiny", "depth", np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
               start=NOW - timedelta(minutes=20)),
        series("const", "depth", np.full(n, 10.0)),
        series("gappy", "depth", 20 + rng.normal(0, 1, n // 12), every_min=60 * 3),
        series("unwatched", "gpu_temp", rng.normal(60, 1, 100)),
    ]
    for frame in frames:
        report = ingest_points_frame(store, frame, now)
        assert report.rejected == 0, report.summary()
    return store


def test_one_run_publishes_every_series_with_a_policy(fleet_store: Store) -> None:
    result = run_once(fleet_store, Settings(), POLICIES, NOW)
    assert result.status == "published" and result.failed == 0
    assert result.series == 7 and result.reselected == 7
    answers = {row["unique_id"]: row for row in fleet_store.interventions().iter_rows(named=True)}
    assert set(answers) == {"rising:depth", "flat:depth", "hot:depth", "drift:quality_score",
                            "tiny:depth", "const:depth", "gappy:depth"}
    assert answers["hot:depth"]["decision"] == "breached"
    assert answers["flat:depth"]["decision"] == "ok"
    assert answers["const:depth"]["decision"] == "ok"
    assert answers["rising:depth"]["decision"] == "schedule"
    assert answers["drift:quality_score"]["decision"] in ("schedule", "act_now")
    ranked = fleet_store.interventions()["decision"].to_list()
    assert ranked == sorted(ranked, key=DECISIONS.index)
    provenance = {r["unique_id"]: r for r in fleet_store.run_series().iter_rows(named=True)}
    assert provenance["tiny:depth"]["status"] == "fallback"
    assert "too_short" in provenance["tiny:depth"]["flags"]
    assert "constant" in provenance["const:depth"]["flags"]
    assert "gappy" in provenance["gappy:depth"]["flags"]
    assert provenance["rising:depth"]["freshness_s"] == 300.0
    assert provenance["rising:depth"]["model"] in ("MSTL", "AutoTheta", "SeasonalNaive")
    forecasts = fleet_store.forecasts("rising:depth")
    assert forecasts.height == 14 * 24
    quantiles = forecasts.select("q05", "q10", "q25", "q50", "q75", "q90", "q95").to_numpy()
    assert np.all(np.diff(quantiles, axis=1) >= 0)  # ordered at every step


def test_a_second_run_reuses_model_choices_until_they_age(fleet_store: Store) -> None:
    first = run_once(fleet_store, Settings(), POLICIES, NOW)
    second = run_once(fleet_store, Settings(), POLICIES, NOW + timedelta(hours=1))
    assert second.reselected == 0 and second.run_id == first.run_id + 1
    # two days on without new points the series would be stale (and get no model): allow 3
    aged = run_once(fleet_store, Settings(stale_min=timedelta(days=3)), POLICIES,
                    NOW + timedelta(days=2))
    assert aged.reselected == 7
    assert fleet_store.latest_run_id() == aged.run_id


def test_readers_see_only_published_runs(fleet_store: Store) -> None:
    published = run_once(fleet_store, Settings(), POLICIES, NOW)
    unfinished = fleet_store.start_run(NOW, NOW, "manual")
    assert fleet_store.latest_run_id() == published.run_id != unfinished
    assert fleet_store.interventions()["run_id"].unique().to_list() == [published.run_id]


def test_a_failing_series_is_recorded_and_the_others_published(
    fleet_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pipeline.prepare

    def flaky(unique_id: str, *args: object, **kwargs: object):  # noqa: ANN202
        if unique_id == "flat:depth":
            raise RuntimeError("disk on fire")
        return real(unique_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "prepare", flaky)
    result = run_once(fleet_store, Settings(), POLICIES, NOW)
    assert result.status == "published" and result.failed == 1
    provenance = {r["unique_id"]: r for r in fleet_store.run_series().iter_rows(named=True)}
    assert provenance["flat:depth"]["status"] == "failed"
    assert "disk on fire" in provenance["flat:depth"]["error"]
    assert "rising:depth" in fleet_store.interventions()["unique_id"].to_list()


def test_a_failed_run_is_recorded_and_never_read(
    fleet_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = run_once(fleet_store, Settings(), POLICIES, NOW)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("store went away")

    monkeypatch.setattr(pipeline, "_targets", broken)
    failed = run_once(fleet_store, Settings(), POLICIES, NOW)  # returned, not raised
    assert failed.status == "failed" and failed.error == "OSError: store went away"
    runs = fleet_store.runs()
    assert runs["status"].to_list()[:2] == ["failed", "published"]
    assert "store went away" in runs["error"].to_list()[0]
    assert fleet_store.latest_run_id() == good.run_id


def test_future_points_are_not_used(fleet_store: Store, now: datetime) -> None:
    before = run_once(fleet_store, Settings(), POLICIES, NOW)
    answer = fleet_store.interventions(before.run_id).filter(pl.col("unique_id") == "rising:depth")
    later = series("rising", "depth", np.full(500, 999.0))
    later = later.with_columns(pl.col("ts") + timedelta(days=14, minutes=5))
    ingest_points_frame(fleet_store, later, now)
    after = run_once(fleet_store, Settings(), POLICIES, NOW)
    again = fleet_store.interventions(after.run_id).filter(pl.col("unique_id") == "rising:depth")
    columns = ["decision", "p_breach", "eta_p10", "eta_p50", "eta_p90", "act_by", "reason"]
    assert again.select(columns).equals(answer.select(columns))


def test_refresh_and_interventions_commands(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    points = tmp_path / "p.parquet"
    rng = np.random.default_rng(1)
    n = 12 * 24 * 10
    series("web", "latency_p95_ms", 800 * np.exp(0.05 * np.arange(n) / 288)
           * rng.lognormal(0, 0.03, n)).write_parquet(points)
    assert run_cli("--db", str(db), "ingest", "points", str(points)).returncode == 0
    refresh = run_cli("--db", str(db), "refresh", "--now", "2026-11-11T00:00:00Z")
    assert refresh.returncode == 0, refresh.stderr
    assert "run 1 published: 1 series, 0 failed" in refresh.stdout
    table = run_cli("--db", str(db), "interventions")
    assert "web" in table.stdout and "latency_p95_ms" in table.stdout
    data = json.loads(run_cli("--db", str(db), "interventions", "--json").stdout)
    [item] = data
    assert item["unique_id"] == "web:latency_p95_ms" and item["run_id"] == 1
    assert item["decision"] in ("schedule", "act_now", "watch")
    assert 0 <= item["p_breach"] <= 1 and item["model"]
    by_service = json.loads(run_cli("--db", str(db), "interventions", "--json",
                                    "--by-service").stdout)
    assert [row["service"] for row in by_service] == ["web"]


def test_a_failing_model_selection_falls_back_instead_of_failing_the_run(
    fleet_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pipeline.select_models

    def flaky(items, settings):  # noqa: ANN001, ANN202
        if any(p.unique_id == "flat:depth" for p in items):
            raise RuntimeError("cross-validation blew up")
        return real(items, settings)

    monkeypatch.setattr(pipeline, "select_models", flaky)
    result = run_once(fleet_store, Settings(), POLICIES, NOW)
    assert result.status == "published" and result.failed == 0
    assert result.reselected == 6  # every series but the one whose selection failed
    provenance = {r["unique_id"]: r for r in fleet_store.run_series().iter_rows(named=True)}
    assert provenance["flat:depth"]["model"] == "RWD"
    assert provenance["flat:depth"]["status"] == "fallback"


def test_answers_go_through_the_map_learned_from_scored_estimates(fleet_store: Store) -> None:
    short = tuple(replace(p, horizon=timedelta(days=1)) for p in POLICIES)
    settings = Settings(calibration_min_weight=2)
    for days_ago in (3, 2):  # estimates whose one-day horizon has passed by NOW
        run_once(fleet_store, settings, short, NOW - timedelta(days=days_ago))
    first = fleet_store.interventions()
    live = first.filter(pl.col("decision") != "breached")
    assert live["p_breach"].to_list() == live["p_breach_raw"].to_list()  # no record yet
    passages = fleet_store.cursor().sql(
        "SELECT passage FROM interventions WHERE decision <> 'breached'").fetchall()
    assert passages and all(len(p) == len(LEVELS) for (p,) in passages)
    result = run_once(fleet_store, settings, short, NOW)
    record = [Scored(**r) for r in
              fleet_store.calibration_record(NOW - settings.reliability_window)
              .iter_rows(named=True)]
    # scored by the second run and this one: those not past their limit whose series has
    # points to the horizon's end
    assert 1 <= result.scored < len(record)
    detail = json.loads(fleet_store.run(result.run_id)["detail"])
    # one series' estimates of one day weigh 1 (here one estimate each)
    assert detail["calibration"]["weight"] == len({(r.series_id, r.as_of) for r in record})
    cal = fit_record(record, settings.calibration_prior, settings.calibration_min_weight)
    assert cal is not None
    latest = fleet_store.interventions().filter(pl.col("decision") != "breached")
    for row in latest.iter_rows(named=True):
        assert row["p_breach"] == pytest.approx(cal.level(row["p_breach_raw"]))
        assert 0.0 <= row["p_breach"] <= 1.0
