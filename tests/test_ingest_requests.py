"""Request logs rolled up into 5-minute points inside DuckDB, checked against numpy."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import write

from forecaster.errors import InputError
from forecaster.ingest_report import IngestReport
from forecaster.sources.files import ReadSpec, ingest_files, ingest_requests_frame
from forecaster.store import Store

T0 = np.datetime64("2026-11-01T10:00:00", "us")


def request_log(n: int = 4000, seed: int = 5) -> pl.DataFrame:
    """Seeded requests of two services over one hour, with every optional field."""
    rng = np.random.default_rng(seed)
    ts = T0 + rng.integers(0, 3600 * 1_000_000, n).astype("timedelta64[us]")
    latency = rng.lognormal(6.0, 0.6, n)
    return pl.DataFrame({
        "ts": ts,
        "service": rng.choice(["alpha", "beta"], n),
        "latency_ms": latency,
        "ttft_ms": latency * rng.uniform(0.1, 0.5, n),
        "status": rng.choice([200, 200, 200, 200, 500, 429, 404], n),
        "prompt_tokens": rng.integers(10, 2000, n),
        "completion_tokens": rng.integers(1, 500, n),
        "quality_score": np.where(rng.random(n) < 0.2, rng.uniform(0.5, 1.0, n), np.nan),
        "feedback": np.where(rng.random(n) < 0.3, rng.choice([-1.0, 0.0, 1.0], n), np.nan),
    }).with_columns(pl.col("quality_score").fill_nan(None), pl.col("feedback").fill_nan(None))


def expected_points(log: pl.DataFrame) -> dict[tuple[str, str, datetime], float]:
    """The roll-up computed independently, with numpy on each bucket's requests."""
    out: dict[tuple[str, str, datetime], float] = {}
    bucketed = log.with_columns(bucket=pl.col("ts").dt.truncate("5m"))
    for (service, bucket), rows in bucketed.group_by("service", "bucket"):
        lat = rows["latency_ms"].to_numpy()
        # numpy's default ("linear") is the same definition as DuckDB's quantile_cont.
        for q, name in ((50, "latency_p50_ms"), (95, "latency_p95_ms"), (99, "latency_p99_ms")):
            out[(service, name, bucket)] = float(np.percentile(lat, q))
        out[(service, "ttft_p95_ms", bucket)] = float(np.percentile(rows["ttft_ms"], 95))
        status = rows["status"].to_numpy()
        out[(service, "error_rate", bucket)] = float(
            np.mean((status >= 500) | (status == 429) | (status == 408)))
        out[(service, "requests_per_s", bucket)] = rows.height / 300.0
        out[(service, "tokens_per_s", bucket)] = float(
            rows["prompt_tokens"].sum() + rows["completion_tokens"].sum()) / 300.0
        quality = rows["quality_score"].drop_nulls()
        if quality.len():
            out[(service, "quality_score", bucket)] = float(quality.mean())
        feedback = rows["feedback"].drop_nulls()
        if feedback.len():
            out[(service, "negative_feedback_rate", bucket)] = float((feedback < 0).mean())
    return out


def stored_points(store: Store) -> dict[tuple[str, str, datetime], float]:
    history = store.history()
    return {(uid.split(":")[0], uid.split(":")[1], ds): y
            for uid, ds, y in history.iter_rows()}


def one(results: list[IngestReport | InputError]) -> IngestReport:
    [result] = results
    assert isinstance(result, IngestReport), result
    return result


def test_roll_up_matches_an_independent_computation(store: Store, tmp_path: Path,
                                                    now: datetime) -> None:
    log = request_log()
    log.write_parquet(tmp_path / "log.parquet")
    report = one(ingest_files(store, [tmp_path / "log.parquet"], "requests", ReadSpec(), now))
    assert (report.rows, report.requests_stored, report.rejected) == (4000, 4000, 0)
    expected, got = expected_points(log), stored_points(store)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    kinds = dict(store.series().select("metric", "kind").iter_rows())
    assert kinds["latency_p95_ms"] == "latency" and kinds["error_rate"] == "ratio"


def test_overlapping_logs_in_any_order_give_the_points_of_their_union(
    tmp_path: Path, now: datetime
) -> None:
    log = request_log().sort("ts")
    first, second = log.slice(0, 2600), log.slice(1400)  # 1,200 requests in both
    first.write_csv(tmp_path / "first.csv")
    second.write_csv(tmp_path / "second.csv")
    log.write_csv(tmp_path / "all.csv")
    results = {}
    for name, files in (("union", ["all.csv"]), ("forward", ["first.csv", "second.csv"]),
                        ("backward", ["second.csv", "first.csv", "first.csv"])):
        with Store.open(tmp_path / f"{name}.duckdb", now=now) as store:
            for result in ingest_files(store, [tmp_path / f for f in files], "requests",
                                       ReadSpec(), now):
                assert isinstance(result, IngestReport) and result.rejected == 0
            assert store.counts()["requests"] == 4000
            results[name] = store.history()
    for name in ("forward", "backward"):
        joined = results["union"].join(results[name], on=["unique_id", "ds"], how="full")
        assert joined.height == results["union"].height == results[name].height
        # Sums of floats depend on their order only in the last bits.
        assert np.allclose(joined["y"], joined["y_right"], rtol=1e-12, atol=0), name


def test_identical_rows_in_one_log_are_separate_requests(store: Store, tmp_path: Path,
                                                         now: datetime) -> None:
    text = ("ts,service,latency_ms\n" + "2026-11-01T00:00:01Z,s,100\n" * 3
            + "2026-11-01T00:00:02Z,s,300\n")
    path = write(tmp_path / "dup.csv", text)
    report = one(ingest_files(store, [path], "requests", ReadSpec(), now))
    assert report.requests_stored == 4
    again = one(ingest_files(store, [path], "requests", ReadSpec(), now))
    assert (again.requests_stored, again.duplicates, again.stored, again.updated) == (0, 4, 0, 0)
    rps = store.history(metric="requests_per_s")["y"].to_list()
    assert rps == [pytest.approx(4 / 300)]
    # p50 of [100, 100, 100, 300] by linear interpolation is 100; p95 is 270.
    assert store.history(metric="latency_p95_ms")["y"].to_list() == [pytest.approx(270.0)]


def test_metrics_exist_only_where_their_inputs_do(store: Store, tmp_path: Path,
                                                  now: datetime) -> None:
    path = write(tmp_path / "min.csv", "ts,service,error\n2026-11-01T00:00:01Z,s,true\n"
                 "2026-11-01T00:00:02Z,s,false\n")
    one(ingest_files(store, [path], "requests", ReadSpec(), now))
    assert sorted(store.series()["metric"].to_list()) == ["error_rate", "requests_per_s"]
    assert store.history(metric="error_rate")["y"].to_list() == [0.5]


def test_bad_request_rows_are_named_and_the_rest_rolled_up(store: Store, tmp_path: Path,
                                                           now: datetime) -> None:
    path = write(tmp_path / "bad.csv", "ts,service,latency_ms,status,prompt_tokens,quality_score\n"
                 "2026-11-01T00:00:01Z,s,100,200,10,0.9\n"
                 "2026-11-01T00:00:02Z,s,-3,200,10,\n"
                 "2026-11-01T00:00:03Z,s,100,999,10,\n"
                 "2026-11-01T00:00:04Z,s,100,200,1.5,\n"
                 "2026-11-01T00:00:05Z,s,100,200,10,7\n"
                 "not-a-time,s,100,200,10,\n"
                 "2026-11-01T00:00:07Z,s,inf,200,10,\n"
                 "2026-11-01T00:00:08Z,s,200,500,20,\n")
    report = one(ingest_files(store, [path], "requests", ReadSpec(), now))
    assert (report.rows, report.requests_stored, report.rejected) == (8, 2, 6)
    assert [(e.row, e.field) for e in report.errors] == [
        (2, "latency_ms"), (3, "status"), (4, "prompt_tokens"), (5, "quality_score"), (6, "ts"),
        (7, "latency_ms")]
    assert "999' is not an HTTP status code" in report.errors[1].message
    assert "not a whole number" in report.errors[2].message
    assert store.history(metric="error_rate")["y"].to_list() == [0.5]


def test_strict_request_log_stores_nothing(store: Store, tmp_path: Path, now: datetime) -> None:
    path = write(tmp_path / "bad.csv", "ts,service,latency_ms\n2026-11-01T00:00:01Z,s,1\n"
                 "2026-11-01T00:00:02Z,s,x\n")
    report = one(ingest_files(store, [path], "requests", ReadSpec(strict=True), now))
    assert report.strict_aborted and store.counts()["requests"] == 0
    assert store.counts()["points"] == 0


def test_a_constant_service_and_epoch_times(store: Store, tmp_path: Path, now: datetime) -> None:
    frame = pl.DataFrame({"t": [0, 1500, 299_999, 300_000], "lat": [1.0, 2.0, 3.0, 4.0]})
    spec = ReadSpec(columns={"ts": "t", "latency_ms": "lat"}, service="edge", time_unit="ms")
    report = ingest_requests_frame(store, frame, now, spec)
    assert report.requests_stored == 4
    history = store.history(metric="requests_per_s")
    assert history["ds"].to_list() == [datetime(1970, 1, 1, 0, 0), datetime(1970, 1, 1, 0, 5)]
    assert history["y"].to_list() == [pytest.approx(3 / 300), pytest.approx(1 / 300)]
