"""Stale data: a series whose points stopped arriving is a monitoring problem, answered `stale`,
never `act_now`/`schedule`/`breached` extrapolated past its last point. Real DuckDB files, real
models, the real metrics text."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from forecaster.api import metrics_text
from forecaster.config import Settings
from forecaster.engine.intervention import (
    DecisionSettings,
    Observation,
    freshness,
    stale_intervention,
)
from forecaster.pipeline import run_once
from forecaster.policies import Policy
from forecaster.service import Service
from forecaster.sources.files import ingest_points_frame
from forecaster.store import LATEST_VERSION, Store, migrate
from forecaster.summary import render_interventions, service_answers
from forecaster.types import DECISIONS

END = datetime(2026, 11, 25, 23, 55)  # the stopped feed's last point (a Wednesday)
NOW = END + timedelta(days=3, hours=9, minutes=41)  # 3.4 days later
ERRORS = Policy("error_rate", 0.05, "above", "rollback", timedelta(minutes=30))
LATENCY = Policy("latency_p95_ms", 1500.0, "above", "scale_out", timedelta(hours=2))


def times(end: datetime, days: float, every: timedelta) -> np.ndarray:
    n = int(timedelta(days=days) / every)
    return np.datetime64(end, "us") - np.arange(n)[::-1] * np.timedelta64(every)


def frame(service: str, metric: str, ts: np.ndarray, values: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"ts": ts, "service": service, "metric": metric, "value": values})


def test_freshness_is_judged_against_the_series_own_sampling_interval() -> None:
    settings = DecisionSettings(stale_intervals=6, stale_min=timedelta(hours=1))
    five_min = times(END, 2, timedelta(minutes=5))
    judged = freshness(five_min, ERRORS, NOW, settings)
    assert judged.interval == timedelta(minutes=5) and judged.last_point == END
    assert judged.stale_after == timedelta(hours=1)  # 6 x 5 min is under the floor
    assert judged.stale and judged.age == NOW - END
    assert not freshness(five_min, ERRORS, END + timedelta(minutes=59), settings).stale
    hourly = times(END, 10, timedelta(hours=1))
    assert freshness(hourly, ERRORS, END + timedelta(hours=5), settings).stale is False
    assert freshness(hourly, ERRORS, END + timedelta(hours=6, minutes=1), settings).stale
    # a policy's own limit wins over both
    strict = Policy("error_rate", 0.05, "above", "rollback", timedelta(minutes=30),
                    stale_after=timedelta(minutes=20))
    judged = freshness(five_min, strict, END + timedelta(minutes=21), settings)
    assert judged.stale and judged.by_policy and judged.stale_after == timedelta(minutes=20)
    # a single point: no interval, the floor
    single = freshness(five_min[-1:], ERRORS, END + timedelta(minutes=30), settings)
    assert single.interval is None and not single.stale


def test_a_stale_answer_says_since_when_and_has_no_forecast() -> None:
    settings = DecisionSettings()
    judged = freshness(times(END, 2, timedelta(minutes=5)), ERRORS, NOW, settings)
    obs = Observation(last_ts=END, last_value=0.032)
    answer = stale_intervention("chat:error_rate", ERRORS, obs, judged, NOW, settings)
    assert answer.decision == "stale" and answer.p_breach is None and answer.p_raw is None
    assert answer.eta_p10 is answer.eta_p50 is answer.eta_p90 is answer.act_by is None
    assert answer.reason == ("no data since Wed 25 Nov 23:55 UTC (3.4 days; it usually reports "
                             "every 5 min): a monitoring problem, not a forecast; last value "
                             "3.2% (limit 5.0%).")
    assert answer.next_check_at == NOW + settings.refresh_every
    past = stale_intervention("chat:error_rate", ERRORS, Observation(END, 0.07), judged, NOW,
                              settings)
    # past its limit when it stopped: a breach observed, not extrapolated; it must not rank
    # below the schedules, and it says the feed stopped too
    assert past.decision == "breached" and past.p_breach == 1.0 and past.act_by == NOW
    assert past.eta_p10 == past.eta_p50 == past.eta_p90 == END
    assert past.reason == ("past its limit at its last point: 7.0% > 5.0% (at Wed 25 Nov 23:55 "
                           "UTC), and no data since Wed 25 Nov 23:55 UTC (3.4 days; it usually "
                           "reports every 5 min); act now (a rollback) and restore the feed.")


@pytest.fixture
def fleet(store: Store) -> Store:
    """Three services on 5-minute data: `stopped`'s error rate climbed towards its limit and
    its feed stopped 3.4 days before NOW (extrapolated, it would be past the limit by now);
    `fresh` reports up to NOW and is quiet; `hot` reports up to NOW past its limit."""
    rng = np.random.default_rng(5)
    every = timedelta(minutes=5)
    old = times(END, 10, every)
    recent = times(NOW, 10, every)
    climb = np.linspace(0.005, 0.032, old.size) + rng.normal(0, 0.001, old.size)
    frames = [
        frame("stopped", "error_rate", old, np.clip(climb, 0, 1)),
        frame("stopped", "latency_p95_ms", old, 700 + rng.normal(0, 20, old.size)),
        frame("fresh", "error_rate", recent, np.clip(0.01 + rng.normal(0, 0.001, recent.size),
                                                     0, 1)),
        frame("hot", "latency_p95_ms", recent, 1800 + rng.normal(0, 20, recent.size)),
    ]
    for f in frames:
        assert ingest_points_frame(store, f, NOW).rejected == 0
    return store


def test_a_feed_that_stopped_is_stale_not_act_now(fleet: Store) -> None:
    result = run_once(fleet, Settings(), (ERRORS, LATENCY), NOW)
    assert result.status == "published" and result.failed == 0
    assert result.reselected == 2  # no model is chosen for a feed that stopped
    answers = {row["unique_id"]: row for row in fleet.interventions().iter_rows(named=True)}
    stale = answers["stopped:error_rate"]
    assert stale["decision"] == "stale"
    assert stale["p_breach"] is None and stale["p_breach_raw"] is None
    assert stale["eta_p10"] is None and stale["eta_p50"] is None and stale["act_by"] is None
    assert stale["reason"].startswith("no data since Wed 25 Nov 23:55 UTC (3.4 days; it usually "
                                      "reports every 5 min): a monitoring problem")
    assert stale["freshness_s"] == pytest.approx((NOW - END).total_seconds())
    assert answers["stopped:latency_p95_ms"]["decision"] == "stale"
    assert answers["hot:latency_p95_ms"]["decision"] == "breached"
    assert answers["fresh:error_rate"]["decision"] in ("ok", "watch")
    assert answers["fresh:error_rate"]["p_breach"] is not None
    # ranked like the other decisions: after what is due, before what is only watched
    ranked = fleet.interventions()["decision"].to_list()
    assert ranked == sorted(ranked, key=DECISIONS.index)
    assert DECISIONS.index("schedule") < DECISIONS.index("stale") < DECISIONS.index("watch")
    by_service = {r["service"]: r["decision"]
                  for r in service_answers(fleet.interventions()).iter_rows(named=True)}
    assert by_service == {"hot": "breached", "stopped": "stale",
                          "fresh": answers["fresh:error_rate"]["decision"]}
    # no fan drawn from a feed that stopped; its provenance says why
    assert fleet.forecasts("stopped:error_rate").is_empty()
    assert not fleet.forecasts("fresh:error_rate").is_empty()
    status = {r["unique_id"]: r["status"] for r in fleet.run_series().iter_rows(named=True)}
    assert status["stopped:error_rate"] == "stale"
    text = render_interventions(fleet.interventions(), fleet.run(), NOW)
    assert "stopped       stale" in text and "no data since Wed 25 Nov 23:55 UTC" in text


def test_metrics_count_stale_series_and_skip_their_p_breach(fleet: Store) -> None:
    result = run_once(fleet, Settings(), (ERRORS, LATENCY), NOW)
    service = Service(fleet, Settings(), lambda: NOW)
    text = metrics_text.render(fleet, service, result.run_id).decode()
    lines = text.splitlines()
    assert 'forecaster_stale_series{service="stopped"} 2.0' in lines
    assert 'forecaster_stale_series{service="fresh"} 0.0' in lines
    assert 'forecaster_decision{decision="stale",service="stopped"} 1.0' in lines
    assert not any(line.startswith("forecaster_p_breach") and "stopped" in line
                   for line in lines)
    assert any(line.startswith("forecaster_p_breach") and "fresh:error_rate" in line
               for line in lines)
    age = (NOW - END).total_seconds()
    assert any(line.startswith("forecaster_freshness_seconds")
               and 'series="stopped:error_rate"' in line and float(line.split()[-1]) == age
               for line in lines)


def test_stale_answers_are_neither_scored_nor_used_for_calibration(fleet: Store) -> None:
    short = (Policy("error_rate", 0.05, "above", "rollback", timedelta(minutes=30),
                    horizon=timedelta(days=1)),)
    stale_run = run_once(fleet, Settings(), short, NOW).run_id
    assert {r["decision"] for r in fleet.interventions(stale_run).iter_rows(named=True)
            if r["service"] == "stopped"} == {"stale"}
    # the feed resumes, past the limit, and the stale answer's horizon passes
    resumed = times(NOW + timedelta(days=2), 2, timedelta(minutes=5))
    later = NOW + timedelta(days=2)
    for service, value in (("stopped", 0.08), ("fresh", 0.01)):
        assert ingest_points_frame(fleet, frame(service, "error_rate", resumed,
                                                np.full(resumed.size, value)), later
                                   ).rejected == 0
    scored = fleet.score_estimates(later)
    rows = fleet.cursor().sql("SELECT run_id, series_id, p_breach FROM estimate_scores"
                              ).fetchall()
    assert scored == len(rows) == 1  # the fresh series' estimate
    stopped = fleet.series().filter(pl.col("service") == "stopped")["series_id"].to_list()
    assert not [r for r in rows if r[1] in stopped]
    record = fleet.calibration_record(NOW - timedelta(days=30))
    assert not set(record["series_id"].to_list()) & set(stopped)


def test_migration_7_lets_an_older_file_keep_stale_answers(db_path: Path) -> None:
    # A file as version 6 wrote it, with an answer that has a p_breach.
    con = duckdb.connect(str(db_path))
    assert migrate(con, NOW, target=6) == (0, 6)
    con.execute("INSERT INTO interventions (run_id, series_id, service, metric, limit_value, "
                "direction, action, lead_time_s, p_breach, decision, reason) VALUES "
                "(1, 1, 'a', 'error_rate', 0.05, 'above', 'rollback', 1800, 0.25, 'watch', 'r')")
    with pytest.raises(duckdb.ConstraintException):  # why the step exists
        con.execute("INSERT INTO interventions (run_id, series_id, service, metric, "
                    "limit_value, direction, action, lead_time_s, p_breach, decision, reason) "
                    "VALUES (2, 1, 'a', 'error_rate', 0.05, 'above', 'rollback', 1800, NULL, "
                    "'stale', 'r')")
    con.close()
    with Store.open(db_path, now=NOW) as store:
        assert store.schema_version == LATEST_VERSION >= 7
        cur = store.cursor()
        cur.execute("INSERT INTO interventions (run_id, series_id, service, metric, "
                    "limit_value, direction, action, lead_time_s, p_breach, decision, reason) "
                    "VALUES (2, 1, 'a', 'error_rate', 0.05, 'above', 'rollback', 1800, NULL, "
                    "'stale', 'r')")
        assert cur.sql("SELECT run_id, p_breach, decision FROM interventions ORDER BY run_id"
                       ).fetchall() == [(1, 0.25, "watch"), (2, None, "stale")]
