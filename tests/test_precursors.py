"""Precursor anomalies: detection over the recent past, corroboration across a service's metrics,
freshness, and the sample fleet's injected precursors found before its incident."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from conftest import ROOT

from forecaster.config import Settings
from forecaster.engine.precursors import (
    Anomaly,
    PrecursorSettings,
    SeriesInput,
    corroborate,
    detect,
    evidence,
)
from forecaster.pipeline import run_once
from forecaster.policies import load_policies
from forecaster.sources.files import ReadSpec, ingest_files
from forecaster.store import Store

T0 = datetime(2026, 11, 1)
STEP = timedelta(minutes=5)
TRUTH = json.loads((ROOT / "data" / "fleet" / "truth.json").read_text())
[INCIDENT] = TRUTH["incidents"]
INCIDENT_START = datetime.fromisoformat(INCIDENT["start"])
BEFORE_INCIDENT = INCIDENT_START - timedelta(minutes=25)


IDS: dict[tuple[str, str], int] = {}


def anomaly(service: str, metric: str, kind: str, minute: int, score: float = 0.99) -> Anomaly:
    series_id = IDS.setdefault((service, metric), len(IDS) + 1)
    return Anomaly(series_id=series_id, service=service, metric=metric,
                   kind=kind, ts=T0 + timedelta(minutes=minute), score=score, features={},
                   detail=metric)


def test_only_another_kind_of_metric_of_the_same_service_corroborates() -> None:
    found = corroborate([
        anomaly("a", "error_rate", "ratio", 0),
        anomaly("a", "latency_p99_ms", "latency", 20),    # another kind, 20 min later: yes
        anomaly("a", "latency_p95_ms", "latency", 25),    # corroborated by error_rate too
        anomaly("a", "requests_per_s", "throughput", 90),  # 65+ min from the others: no
        anomaly("b", "ttft_p95_ms", "latency", 0),         # another service: no
        anomaly("c", "latency_p95_ms", "latency", 0),
        anomaly("c", "latency_p99_ms", "latency", 5),      # same kind as its neighbour: no
    ], within=timedelta(minutes=30))
    by = {(a.service, a.metric): a for a in found}
    assert by[("a", "error_rate")].corroborated_by == ("latency_p95_ms", "latency_p99_ms")
    assert by[("a", "latency_p99_ms")].corroborated_by == ("error_rate",)
    assert by[("a", "latency_p95_ms")].precursor
    assert not by[("a", "requests_per_s")].precursor
    assert not by[("b", "ttft_p95_ms")].precursor
    assert not by[("c", "latency_p95_ms")].precursor and not by[("c", "latency_p99_ms")].precursor


def test_evidence_is_the_fresh_precursors_of_the_series_strongest_first() -> None:
    found = corroborate([
        anomaly("a", "error_rate", "ratio", 0, 0.990),
        anomaly("a", "error_rate", "ratio", 600, 0.995),
        anomaly("a", "latency_p99_ms", "latency", 10),
        anomaly("a", "latency_p99_ms", "latency", 610),
    ], within=timedelta(minutes=30))
    sid = IDS[("a", "error_rate")]
    now = T0 + timedelta(hours=12)
    fresh = evidence(found, sid, now, timedelta(hours=6))
    assert [e.score for e in fresh] == [0.995]  # the one of 12 hours ago is stale
    both = evidence(found, sid, now, timedelta(hours=13))
    assert [e.score for e in both] == [0.995, 0.990]
    assert "with latency_p99_ms" in both[0].detail


def seasonal_series(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1.0, n)


def series_input(values: np.ndarray) -> SeriesInput:
    ts = np.datetime64(T0, "us") + np.arange(values.size) * np.timedelta64(5, "m")
    return SeriesInput(1, "svc", "latency_p95_ms", "latency", ts, values)


def test_a_burst_in_the_lookback_is_found_with_its_drivers_and_nothing_before_now() -> None:
    values = seasonal_series(5000)
    burst = 4900
    values[burst:burst + 3] += 25.0
    series = series_input(values)
    end = T0 + STEP * (values.size - 1)
    settings = PrecursorSettings()
    found = detect(series, end, settings)
    assert [a.ts for a in found] == [T0 + STEP * burst]
    [hit] = found
    assert hit.score >= settings.threshold and hit.score <= 1.0
    assert hit.features and hit.detail.startswith("latency_p95_ms ")
    assert any(name in hit.features for name in ("level", "step", "seasonal", "long_level"))
    # as of just before the burst, nothing; and rows after ``now`` are never read
    assert detect(series, T0 + STEP * (burst - 1), settings) == []
    wild = values.copy()
    wild[burst + 3:] += 1000.0
    assert detect(series_input(wild), T0 + STEP * (burst + 2), settings) == detect(
        series, T0 + STEP * (burst + 2), settings)


def test_a_short_series_has_no_anomalies_rather_than_an_error() -> None:
    assert detect(series_input(seasonal_series(100)), T0 + STEP * 99, PrecursorSettings()) == []


@pytest.fixture(scope="module")
def before_incident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    db = tmp_path_factory.mktemp("precursors") / "fleet.duckdb"
    with Store.open(db, now=BEFORE_INCIDENT) as store:
        ingest_files(store, [ROOT / "data" / "fleet" / "points.parquet"], "points", ReadSpec(),
                     BEFORE_INCIDENT)
        result = run_once(store, Settings(), load_policies(ROOT / "data" / "policies.toml"),
                          BEFORE_INCIDENT)
        assert result.status == "published" and result.precursors >= 2
        yield store


def test_the_fleet_precursors_are_flagged_before_the_incident(before_incident: Store) -> None:
    windows = [(datetime.fromisoformat(w["start"]), datetime.fromisoformat(w["end"]))
               for w in TRUTH["anomalies"] if w["kind"] == "precursor"]
    found = before_incident.anomalies()
    precursors = found.filter(pl.col("precursor"))
    assert precursors.height >= 2
    # every precursor the engine reports is an injected one, on the incident's service
    for row in precursors.iter_rows(named=True):
        assert row["service"] == INCIDENT["service"], row
        assert any(a <= row["ts"] <= b for a, b in windows), row
        assert row["ts"] < INCIDENT_START
        assert json.loads(row["features"])
    assert INCIDENT["metric"] in precursors["metric"].to_list()
    # the healthy service has no precursor
    assert found.filter(pl.col("service") == TRUTH["healthy"][0])["precursor"].sum() == 0


def test_precursors_raise_urgency_and_are_listed(before_incident: Store) -> None:
    answers = before_incident.interventions()
    flagged = answers.filter(pl.col("precursor_score").is_not_null())
    assert flagged.height >= 1 and set(flagged["service"]) == {INCIDENT["service"]}
    for row in flagged.iter_rows(named=True):
        assert row["decision"] != "ok"
        assert "Precursor anomalies:" in row["reason"]
        listed = json.loads(row["precursors"])
        assert listed and all(0.0 <= item["score"] <= 1.0 for item in listed)
    # within a decision, answers with precursors come first
    for decision in flagged["decision"].unique():
        same = answers.filter(pl.col("decision") == decision)
        n = same["precursor_score"].is_not_null().sum()
        assert same["precursor_score"].head(n).is_not_null().all()
