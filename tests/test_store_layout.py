"""The store's rooms: one run-id default, one spelling of unique_id (view series_named), and one
read protocol that a file and a server's client both satisfy."""

from __future__ import annotations

import inspect
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from forecaster.client import RemoteStore
from forecaster.names import unique_id
from forecaster.sources.files import ingest_points_frame
from forecaster.store import LATEST_VERSION, Store, StoreReads, migrate, run_or_latest

STORE_DIR = Path(__file__).resolve().parent.parent / "forecaster" / "store"
READS = [name for name, member in vars(StoreReads).items()
         if callable(member) and (not name.startswith("_") or name in ("__enter__", "__exit__"))]


def publish(store: Store, as_of: datetime, series_id: int, decision: str, mean: float) -> int:
    """Publish a run with one answer, one forecast step, one anomaly for ``series_id``."""
    run_id = store.start_run(as_of, as_of, "test")
    ids = {"run_id": pl.Series([run_id], dtype=pl.Int64),
           "series_id": pl.Series([series_id], dtype=pl.Int32)}
    store.publish_run(
        run_id, as_of,
        run_series=pl.DataFrame({**ids, "status": ["ok"], "model": [f"model-{run_id}"]}),
        forecasts=pl.DataFrame({**ids, "ds": [as_of + timedelta(hours=1)], "mean": [mean]}),
        interventions=pl.DataFrame({
            **ids, "service": ["web"], "metric": ["latency_p95_ms"], "limit_value": [1000.0],
            "direction": ["above"], "action": ["scale_out"], "lead_time_s": [3600.0],
            "p_breach": [0.5], "decision": [decision], "reason": [f"run {run_id}"]}),
        choices=pl.DataFrame({"series_id": pl.Series([series_id], dtype=pl.Int32),
                              "model": ["Naive"], "chosen_at": [as_of]}),
        detail="{}",
        anomalies=pl.DataFrame({
            **ids, "ts": [as_of - timedelta(minutes=5)], "score": [float(run_id)],
            "is_anomaly": [True], "detector": ["iforest"], "service": ["web"],
            "metric": ["latency_p95_ms"]}))
    return run_id


@pytest.fixture
def two_runs(store: Store, now: datetime) -> tuple[Store, int, int]:
    """Two published runs, then a newer failed run and a newer running one."""
    frame = pl.DataFrame({"ts": [now - timedelta(hours=1), now], "service": "web",
                          "metric": "latency_p95_ms", "value": [700.0, 720.0]})
    assert ingest_points_frame(store, frame, now).stored == 2
    [series_id] = store.series()["series_id"].to_list()
    first = publish(store, now - timedelta(hours=1), series_id, "watch", 800.0)
    second = publish(store, now, series_id, "schedule", 900.0)
    failed = store.start_run(now, now, "test")
    store.fail_run(failed, now, "boom", "{}")
    store.start_run(now, now, "test")  # still running
    return store, first, second


def test_every_read_defaults_to_the_latest_published_run(
        two_runs: tuple[Store, int, int]) -> None:
    store, first, second = two_runs
    assert store.latest_run_id() == second
    run = store.run()
    assert run is not None and run["run_id"] == second and run["status"] == "published"
    assert store.interventions()["decision"].to_list() == ["schedule"]
    assert store.forecasts()["mean"].to_list() == [900.0]
    assert store.run_series()["model"].to_list() == [f"model-{second}"]
    assert store.anomalies()["run_id"].to_list() == [second]
    # an explicit run id is read as given, the older run included
    older = store.run(first)
    assert older is not None and older["run_id"] == first
    assert store.interventions(first)["decision"].to_list() == ["watch"]
    assert store.forecasts(run_id=first)["mean"].to_list() == [800.0]
    assert store.run_series(first)["model"].to_list() == [f"model-{first}"]
    assert store.anomalies(run_id=first)["run_id"].to_list() == [first]


def test_with_no_published_run_the_reads_are_empty(store: Store, now: datetime) -> None:
    store.start_run(now, now, "test")
    assert store.latest_run_id() is None and store.run() is None
    assert store.interventions().height == store.forecasts().height == 0
    assert store.run_series().height == store.anomalies().height == 0


def test_run_or_latest_asks_for_the_latest_only_when_no_run_is_given() -> None:
    asked: list[int] = []

    def latest() -> int | None:
        asked.append(1)
        return 9

    assert run_or_latest(4, latest) == 4 and not asked
    assert run_or_latest(None, latest) == 9 and asked == [1]
    assert run_or_latest(None, lambda: None) is None


def test_every_read_names_a_series_by_its_unique_id(two_runs: tuple[Store, int, int]) -> None:
    store, _, _ = two_runs
    expected = unique_id("web", "latency_p95_ms")
    named = store.cursor().sql("SELECT service, metric, unique_id FROM series_named").fetchall()
    assert named == [("web", "latency_p95_ms", expected)]
    for frame in (store.series(), store.history(), store.interventions(), store.forecasts(),
                  store.run_series(), store.anomalies(), store.reliability()[0]):
        assert set(frame["unique_id"].to_list()) <= {expected}
    assert store.forecasts(expected).height == 1 and store.forecasts("web:other").height == 0


def test_unique_id_is_spelled_once_in_sql() -> None:
    # The view's DDL spells it; anomalies keep the names they were found under (their own
    # service and metric columns). Every other read goes through series_named.
    spelled = sorted(path.name for path in STORE_DIR.glob("*.py")
                     if "|| ':' ||" in path.read_text())
    assert spelled == ["migrations.py", "runs_sql.py"]
    assert (STORE_DIR / "runs_sql.py").read_text().count("|| ':' ||") == 1


def test_an_older_file_gets_the_view_over_its_series(db_path: Path, now: datetime) -> None:
    con = duckdb.connect(str(db_path))
    assert migrate(con, now, target=LATEST_VERSION - 1) == (0, LATEST_VERSION - 1)
    con.execute("INSERT INTO series (service, metric, unit, kind) "
                "VALUES ('old', 'error_rate', NULL, 'proportion')")
    con.execute("INSERT INTO points VALUES (1, TIMESTAMP '2026-01-01 00:00:00', 0.25)")
    con.close()
    with Store.open(db_path, now=now) as store:
        assert store.schema_version == LATEST_VERSION
        assert store.series().select("series_id", "unique_id").rows() == [(1, "old:error_rate")]
        assert store.history().rows() == [("old:error_rate", datetime(2026, 1, 1), 0.25)]
    with Store.rebuild(db_path.with_name("made.duckdb"), maker="demo", now=now) as made:
        assert made.series().height == 0  # the view is made again with the tables


def test_a_file_and_the_client_offer_the_same_reads(store: Store) -> None:
    assert {"latest_run_id", "run", "runs", "interventions", "forecasts", "run_series",
            "anomalies", "series", "history", "close", "__enter__", "__exit__"} == set(READS)
    remote = RemoteStore("http://127.0.0.1:9")  # never asked anything
    try:
        for reader in (store, remote):
            assert isinstance(reader, StoreReads)
            checked: StoreReads = reader  # and so says mypy, on this file and on open_store
            assert checked is reader
        for name in READS:
            protocol = inspect.signature(getattr(StoreReads, name)).parameters
            for cls in (Store, RemoteStore):
                assert inspect.signature(getattr(cls, name)).parameters == protocol, (cls, name)
    finally:
        remote.close()


def test_the_client_and_the_protocol_do_not_load_duckdb() -> None:
    for module in ("forecaster.client", "forecaster.store.reads", "forecaster.store.lock"):
        code = (f"import sys, {module}; "
                "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split()
        assert "duckdb" not in loaded, module


def test_the_store_package_offers_its_names() -> None:
    import forecaster.store as package
    from forecaster.store import INTERRUPTED, IngestOptions, Source, current_version, lock

    assert INTERRUPTED == "interrupted:"
    assert lock.owner_path(Path("a.duckdb")).name == "a.duckdb.owner"
    assert Source(label="frame").label == "frame" and "now" in IngestOptions.__dataclass_fields__
    assert callable(current_version)
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    with pytest.raises(AttributeError, match="nothing_here"):
        package.nothing_here  # noqa: B018
