"""A run's life: wall-clock start and finish, a failure returned (not raised) and counted, a run
left running by a stopped process failed when the file is next opened, and ingest globs read once.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

import forecaster.pipeline as pipeline
from forecaster.api import metrics_text
from forecaster.config import Settings
from forecaster.pipeline import run_once
from forecaster.policies import Policy
from forecaster.service import Service
from forecaster.sources.files import ingest_points_frame
from forecaster.store import Store

START = datetime(2026, 11, 1)
NOW = START + timedelta(days=10)
POLICIES = (Policy("latency_p95_ms", 1000.0, "above", "scale_out", timedelta(hours=6)),)


def wall() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture
def small_store(store: Store) -> Store:
    """One watched series, ten days every five minutes, climbing slowly."""
    n = 12 * 24 * 10
    rng = np.random.default_rng(11)
    ts = [START + timedelta(minutes=5 * i) for i in range(n)]
    values = 600 * np.exp(0.03 * np.arange(n) / 288) * rng.lognormal(0, 0.03, n)
    frame = pl.DataFrame({"ts": ts, "service": "web", "metric": "latency_p95_ms",
                          "value": values})
    assert ingest_points_frame(store, frame, NOW).rejected == 0
    return store


def metric_values(text: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples
            if s.name == name}


def test_a_run_records_wall_clock_start_and_finish_and_answers_as_of_now(
        small_store: Store) -> None:
    before = wall()
    result = run_once(small_store, Settings(), POLICIES, NOW, clock=wall)
    after = wall()
    assert result.status == "published"
    run = small_store.run(result.run_id)
    assert run is not None and run["as_of"] == NOW  # the answers are for NOW, a replay
    assert before <= run["started_at"] < run["finished_at"] <= after
    # the same duration /metrics reports for the latest published run
    service = Service(small_store, Settings(), wall)
    text = metrics_text.render(small_store, service, result.run_id)
    last = metric_values(text, "forecaster_last_published_run")
    duration = last[(("field", "duration_seconds"),)]
    assert duration == pytest.approx((run["finished_at"] - run["started_at"]).total_seconds())
    assert 0 < duration <= (after - before).total_seconds()


def test_without_a_clock_the_duration_is_still_true(small_store: Store) -> None:
    result = run_once(small_store, Settings(), POLICIES, NOW)
    run = small_store.run(result.run_id)
    assert run is not None and run["started_at"] == NOW == run["as_of"]
    elapsed = (run["finished_at"] - run["started_at"]).total_seconds()
    assert 0 < elapsed <= result.timings["total"]


def test_a_run_whose_computation_fails_returns_a_failed_result(small_store: Store) -> None:
    good = run_once(small_store, Settings(), POLICIES, NOW)
    gone = ThreadPoolExecutor(max_workers=1)
    gone.shutdown()  # a real executor that refuses work: the computation cannot run
    before = wall()
    failed = run_once(small_store, Settings(), POLICIES, NOW + timedelta(hours=1),
                      executor=gone, clock=wall)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.startswith("RuntimeError: cannot schedule")
    run = small_store.run(failed.run_id)
    assert run is not None and run["status"] == "failed" and run["error"] == failed.error
    assert "Traceback" in json.loads(run["detail"])["traceback"]
    assert before <= run["started_at"] <= run["finished_at"]
    assert small_store.latest_run_id() == good.run_id  # still the one served


def test_the_notebook_refresh_raises_when_the_run_failed(small_store: Store,
                                                         db_path: Path) -> None:
    """run_once returns a failed result for callers that record failures (the service, the CLI);
    forecaster.refresh, the notebook's call, must not let a failure pass silently."""
    import forecaster
    from forecaster.errors import RefreshFailedError

    small_store.close()
    # a real cause: DuckDB given too little memory to read the points
    with Store.open(db_path, now=NOW, settings=Settings(duckdb_memory_limit="1MB")) as starved:
        with pytest.raises(RefreshFailedError, match=r"refresh run \d+ failed: "):
            forecaster.refresh(starved, now=NOW)
    with Store.open(db_path, now=NOW) as reopened:
        assert reopened.runs()["status"].to_list()[0] == "failed"


def test_the_package_still_offers_its_submodules_as_attributes() -> None:
    import forecaster

    assert forecaster.summary.render_interventions is not None  # as before the lazy root
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        forecaster.nothing_here  # noqa: B018


def test_the_service_counts_a_failed_run_as_a_failure(
        small_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise MemoryError("no room for the sample paths")

    policies = tmp_path / "policies.toml"
    policies.write_text("")  # the built-in policies, which watch latency_p95_ms
    frozen = NOW + timedelta(hours=2)
    service = Service(small_store, Settings(policies=str(policies)), lambda: frozen)
    published: list[int] = []
    service.on_publish.append(published.append)
    run_id = service.begin_refresh("api")
    assert service.finish_refresh(run_id) is not None and published == [run_id]
    job = service.refresh_status
    assert job.last_ok is True and job.failures == 0
    # the clock is frozen, the job still took time
    assert job.last_duration_s is not None and job.last_duration_s > 0

    monkeypatch.setattr(pipeline, "compute", broken)
    run_id = service.begin_refresh("api")
    result = service.finish_refresh(run_id)
    assert result is not None and result.status == "failed"
    assert published == [run_id - 1]  # a failed run is never announced as published
    assert job.runs == 2 and job.failures == 1 and job.last_ok is False
    assert job.last_error == "MemoryError: no room for the sample paths"
    text = metrics_text.render(small_store, service, small_store.latest_run_id())
    assert metric_values(text, "forecaster_refresh_runs_total") == {
        (("outcome", "ok"),): 1.0, (("outcome", "failed"),): 1.0}
    assert service.running_run_id is None
    service.begin_refresh("api")  # the lock was let go


def test_a_run_left_running_is_failed_when_the_file_is_next_opened(db_path: Path) -> None:
    with Store.open(db_path, now=NOW) as first:
        orphan = first.start_run(NOW, NOW, "api")
        assert first.interrupted_runs == []
    # that process "stopped": the run stays running in the file
    with Store.open(db_path, now=NOW, read_only=True) as reader:  # a reader changes nothing
        run = reader.run(orphan)
        assert run is not None and run["status"] == "running"
    reopened_at = NOW + timedelta(hours=3)
    with Store.open(db_path, now=reopened_at) as second:
        assert second.interrupted_runs == [orphan]
        run = second.run(orphan)
        assert run is not None and run["status"] == "failed"
        assert run["error"].startswith("interrupted: the process that ran it stopped")
        assert "2026-11-11T03:00:00Z" in run["error"]
        assert json.loads(run["detail"])["stage"] == "interrupted"
        assert run["finished_at"] is None  # when it stopped is not known
        service = Service(second, Settings(), lambda: reopened_at)
        text = metrics_text.render(second, service, None)
        assert metric_values(text, "forecaster_runs_interrupted") == {(): 1.0}
        assert metric_values(text, "forecaster_runs")[(("status", "failed"),)] == 1.0
    with Store.open(db_path, now=reopened_at) as third:
        assert third.interrupted_runs == []  # once


def test_a_second_open_in_the_same_process_leaves_a_running_run_alone(db_path: Path) -> None:
    """DuckDB's lock keeps other processes out, not this one (a notebook next to a service, a
    bench): a second open must not take this process's own running run for a dead one's."""
    from forecaster.store.lock import read_owner

    with Store.open(db_path, now=NOW) as first:
        running = first.start_run(NOW, NOW, "api")
        with Store.open(db_path, now=NOW) as second:
            assert second.interrupted_runs == []
            run = second.run(running)
            assert run is not None and run["status"] == "running"
        # the second one closing does not disown the file the first still holds
        assert read_owner(db_path) is not None
        run = first.run(running)
        assert run is not None and run["status"] == "running"
    assert read_owner(db_path) is None


def test_a_relative_ingest_glob_reads_each_file_once(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text(
        "ts,service,metric,value\n2026-11-10T00:00:00Z,svc,error_rate,0.02\n"
        "2026-11-10T00:05:00Z,svc,error_rate,0.03\n")
    monkeypatch.chdir(tmp_path)
    service = Service(store, Settings(ingest_points_from="./in/*.csv"), lambda: NOW)
    service.ingest_sources(NOW)
    first = dict(service.ingest_rows)
    assert first[("points", "stored")] == 2
    service.ingest_sources(NOW)
    assert dict(service.ingest_rows) == first  # not read again: no duplicates counted
    (tmp_path / "in" / "b.csv").write_text(
        "ts,service,metric,value\n2026-11-10T00:10:00Z,svc,error_rate,0.04\n")
    service.ingest_sources(NOW)
    assert service.ingest_rows[("points", "stored")] == 3
    assert service.ingest_rows[("points", "duplicate")] == 0
