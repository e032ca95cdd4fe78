"""The sample fleet: reproducible, and its stories are where the truth says."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import polars as pl
import pytest
from conftest import ROOT

from forecaster import fleet


@pytest.fixture(scope="module")
def generated() -> fleet.Fleet:
    return fleet.generate()


def test_the_shipped_data_is_what_the_seed_generates(generated: fleet.Fleet) -> None:
    shipped = pl.read_parquet(ROOT / "data" / "fleet" / "points.parquet")
    assert shipped.equals(generated.history)
    assert pl.read_parquet(ROOT / "data" / "fleet" / "future.parquet").equals(generated.future)
    truth = json.loads((ROOT / "data" / "fleet" / "truth.json").read_text())
    assert truth == json.loads(json.dumps(generated.truth))


def test_shape_six_services_nine_metrics_28_days(generated: fleet.Fleet) -> None:
    history = generated.history
    assert history["service"].n_unique() >= 6
    per_series = history.group_by("service", "metric").len()
    assert per_series.height == 54
    full = per_series.filter(pl.col("metric") != "quality_score")["len"].unique().to_list()
    assert full == [28 * 288]
    assert history["ts"].min() == datetime(2026, 10, 29)
    assert history["ts"].max() == datetime(2026, 11, 25, 23, 55)
    assert history["value"].is_finite().all()


def crossing(truth: dict, uid: str) -> dict:
    return next(c for c in truth["crossings"] if c["unique_id"] == uid)


def test_the_stories(generated: fleet.Fleet) -> None:
    truth = generated.truth
    end = datetime.fromisoformat(truth["end"])
    # Healthy: no limit of chat-api is ever crossed, in history or future.
    assert all(c["first_crossing"] is None for c in truth["crossings"]
               if c["unique_id"].startswith("chat-api:"))
    # Creep and drift cross after the observed window, within two weeks.
    for uid in ("code-assist:latency_p95_ms", "summarize:quality_score",
                "embed-batch:requests_per_s", "support-bot:negative_feedback_rate"):
        c = crossing(truth, uid)
        first = datetime.fromisoformat(c["first_crossing"])
        assert end < first < end + timedelta(days=14), uid
    assert crossing(truth, "summarize:quality_score")["direction"] == "below"
    # The incident crosses the error-rate limit in the history, after its precursors.
    [incident] = truth["incidents"]
    start = datetime.fromisoformat(incident["start"])
    assert datetime.fromisoformat(crossing(truth, "rag-search:error_rate")["first_crossing"]) \
        == start
    precursors = [datetime.fromisoformat(a["start"]) for a in truth["anomalies"]]
    assert precursors and all(start - timedelta(hours=6) <= p < start for p in precursors)
    rates = generated.history.filter((pl.col("service") == "rag-search")
                                     & (pl.col("metric") == "error_rate"))
    before = rates.filter(pl.col("ts") < start - timedelta(hours=6))["value"]
    in_precursor = rates.filter(pl.col("ts").is_in(precursors))["value"]
    # Subtle: well below the limit, yet above anything in the quiet days before.
    assert (in_precursor < 0.05).all() and in_precursor.min() > before.max()


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    a = fleet.generate(seed=1, days=2, future_days=1)
    b = fleet.generate(seed=1, days=2, future_days=1)
    c = fleet.generate(seed=2, days=2, future_days=1)
    assert a.history.equals(b.history) and not a.history.equals(c.history)
