"""Ingest of metric points into a real DuckDB file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from conftest import write

from forecaster.errors import InputError
from forecaster.ingest_report import IngestReport
from forecaster.sources.files import ReadSpec, ingest_files, ingest_points_frame
from forecaster.store import Store

T0 = datetime(2026, 11, 1)


def points_frame(n: int = 288, services: tuple[str, ...] = ("a", "b")) -> pl.DataFrame:
    """Two series per service, 5 minutes apart, values that say where they came from."""
    rows = []
    for s_i, service in enumerate(services):
        for metric in ("latency_p95_ms", "error_rate"):
            for i in range(n):
                value = 100.0 + i + s_i if metric == "latency_p95_ms" else (i % 10) / 100
                rows.append((T0 + timedelta(minutes=5 * i), service, metric, value))
    return pl.DataFrame(rows, schema=["ts", "service", "metric", "value"], orient="row")


def one(results: list[IngestReport | InputError]) -> IngestReport:
    [result] = results
    assert isinstance(result, IngestReport), result
    return result


def test_same_file_twice_changes_nothing(store: Store, tmp_path: Path, now: datetime) -> None:
    path = tmp_path / "p.parquet"
    points_frame().write_parquet(path)
    first = one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert (first.rows, first.stored, first.duplicates, first.rejected) == (1152, 1152, 0, 0)
    before = store.history()
    second = one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert (second.stored, second.updated, second.duplicates) == (0, 0, 1152)
    assert store.history().equals(before)
    assert store.counts()["points"] == 1152


def test_out_of_order_points_give_the_same_history(tmp_path: Path, now: datetime) -> None:
    frame = points_frame()
    ordered, shuffled = tmp_path / "o.csv", tmp_path / "s.csv"
    frame.write_csv(ordered)
    frame.sample(fraction=1.0, shuffle=True, seed=3).write_csv(shuffled)
    histories = []
    for name, path in (("o", ordered), ("s", shuffled)):
        with Store.open(tmp_path / f"{name}.duckdb", now=now) as store:
            one(ingest_files(store, [path], "points", ReadSpec(), now))
            histories.append(store.history())
    assert histories[0].equals(histories[1])
    # history comes back ordered by series, then time
    assert histories[0].equals(histories[0].sort("unique_id", "ds"))


def test_late_points_fill_in_between(store: Store, tmp_path: Path, now: datetime) -> None:
    frame = points_frame(n=20, services=("a",)).filter(pl.col("metric") == "error_rate")
    evens, odds = frame.gather_every(2), frame.gather_every(2, offset=1)
    evens.write_parquet(tmp_path / "e.parquet")
    odds.reverse().write_parquet(tmp_path / "o.parquet")
    one(ingest_files(store, [tmp_path / "e.parquet"], "points", ReadSpec(), now))
    one(ingest_files(store, [tmp_path / "o.parquet"], "points", ReadSpec(), now))
    history = store.history(service="a", metric="error_rate")
    assert history["ds"].to_list() == frame["ts"].to_list()
    assert history["y"].to_list() == frame["value"].to_list()


BAD_CSV = """ts,service,metric,value
2026-11-01T00:00:00Z,a,latency_p95_ms,120
yesterday,a,latency_p95_ms,121
2026-11-01T00:10:00Z,a,latency_p95_ms,NaN
2026-11-01T00:15:00Z,a,latency_p95_ms,inf
2026-11-01T00:20:00Z,,latency_p95_ms,122
2026-11-01T00:25:00Z,a,latency_p95_ms,
2026-11-01T00:30:00Z,a,error_rate,1.7
2026-11-01T00:35:00Z,a b,latency_p95_ms,123
2026-11-01T00:40:00Z,a,latency_p95_ms,12x
1900-01-01T00:00:00Z,a,latency_p95_ms,124
2026-11-01T00:50:00Z,a,latency_p95_ms,-5
2026-11-01T00:55:00Z,a,latency_p95_ms,125
"""


def test_bad_rows_are_reported_by_row_and_field_and_good_rows_kept(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    path = write(tmp_path / "bad.csv", BAD_CSV)
    report = one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert (report.rows, report.stored, report.rejected) == (12, 2, 10)
    found = [(e.row, e.field) for e in report.errors]
    assert found == [(2, "ts"), (3, "value"), (4, "value"), (5, "service"), (6, "value"),
                     (7, "value"), (8, "service"), (9, "value"), (10, "ts"), (11, "value")]
    messages = {e.row: e.message for e in report.errors}
    assert "'yesterday'" in messages[2] and "ISO 8601" in messages[2]
    assert "not finite" in messages[3]
    assert messages[5] == "missing service"
    assert messages[6] == "missing value"
    assert "1.7 is outside the range of a ratio metric (0.0 to 1.0)" in messages[7]
    assert "'a b' is not a valid name; allowed:" in messages[8]
    assert "'12x' is not a number" in messages[9]
    assert "outside" in messages[10]
    assert all(str(path) in str(e) for e in report.errors)
    assert store.history()["y"].to_list() == [120.0, 125.0]


def test_strict_stores_nothing_from_a_file_with_a_bad_row(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    good = tmp_path / "good.csv"
    points_frame(n=3, services=("g",)).write_csv(good)
    bad = write(tmp_path / "bad.csv", BAD_CSV)
    spec = ReadSpec(strict=True)
    reports = [r for r in ingest_files(store, [bad, good], "points", spec, now)]
    assert isinstance(reports[0], IngestReport) and reports[0].strict_aborted
    assert reports[0].stored == 0 and reports[0].rejected == 10
    assert isinstance(reports[1], IngestReport) and reports[1].stored == 6
    assert store.history()["unique_id"].unique().sort().to_list() == [
        "g:error_rate", "g:latency_p95_ms"]
    assert "a:latency_p95_ms" not in store.series()["unique_id"].to_list()
    log = store.cursor().sql("SELECT source, rejected, strict_aborted FROM ingest_log").fetchall()
    assert log == [(str(bad), 10, True), (str(good), 0, False)]


def test_times_with_offsets_are_converted_and_naive_times_are_utc(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    path = write(tmp_path / "tz.csv", "ts,service,metric,value\n"
                 "2026-11-01T02:00:00+02:00,a,m,1\n"
                 "2026-11-01 00:05:00,a,m,2\n"
                 "2026-10-31T19:10:00-05:00,a,m,3\n"
                 "2026-11-01T00:15:00.250Z,a,m,4\n")
    one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert store.history()["ds"].to_list() == [
        datetime(2026, 11, 1, 0, 0), datetime(2026, 11, 1, 0, 5), datetime(2026, 11, 1, 0, 10),
        datetime(2026, 11, 1, 0, 15, 0, 250000)]


# Spellings common in real exports, each with the UTC time it means; one series each, so that
# every row is stored and can be checked on its own.
EXPORT_SPELLINGS = [
    ("2026-11-26 08:00:00 UTC", datetime(2026, 11, 26, 8)),
    ("2026-11-26T08:00:00 GMT", datetime(2026, 11, 26, 8)),
    ("2026-11-26 08:00:00 utc", datetime(2026, 11, 26, 8)),
    ("2026-11-26 08:00:00.123456789012Z", datetime(2026, 11, 26, 8, 0, 0, 123456)),
    ("2026-11-26T08:00:00.999999999999+01:00", datetime(2026, 11, 26, 7, 0, 0, 999999)),
    ("2026-11-26 08:00:00+02:00:00", datetime(2026, 11, 26, 6)),
    ("2026-11-26T08:00:00-02:30:15", datetime(2026, 11, 26, 10, 30, 15)),
    ("\t2026-11-26T08:00:00Z", datetime(2026, 11, 26, 8)),
    ("2026-11-26T08:00:00Z\t", datetime(2026, 11, 26, 8)),
    ('"2026-11-26 09:00:00 UTC\r"', datetime(2026, 11, 26, 9)),
]


def test_times_and_numbers_as_real_exports_write_them_are_read(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    # A trailing UTC/GMT, 12-digit fractions, offsets with seconds, and tabs or carriage returns
    # around times and numbers (the file has Windows line ends) were refused row by row.
    numbers = ["12\t", "\t12.5", '"13\r"', " \t14 ", "1e1\t"]
    rows = [f"{text},s{i},m,{numbers[i % len(numbers)]}\r\n"
            for i, (text, _) in enumerate(EXPORT_SPELLINGS)]
    path = tmp_path / "export.csv"
    path.write_bytes(("ts,service,metric,value\r\n" + "".join(rows)).encode())
    report = one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert (report.stored, report.rejected) == (len(EXPORT_SPELLINGS), 0), report.errors
    got = {row["unique_id"]: (row["ds"], row["y"]) for row in store.history().iter_rows(named=True)}
    expected_numbers = [12.0, 12.5, 13.0, 14.0, 10.0]
    assert got == {f"s{i}:m": (ts, expected_numbers[i % len(numbers)])
                   for i, (_, ts) in enumerate(EXPORT_SPELLINGS)}


def test_a_time_zone_name_is_refused_and_the_message_says_why(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    # Times are kept in UTC without a time-zone database: a zone name cannot be read, and the
    # message says so instead of a generic "cannot read".
    path = write(tmp_path / "zones.csv", "ts,service,metric,value\n"
                 "2026-11-26 08:00:00 Europe/Berlin,a,m,1\n"
                 "2026-11-26T08:00:00 America/New_York,a,m,2\n"
                 "2026-11-26T08:00CET,a,m,3\n"
                 "2026-11-26T08:00:00+02:00:60,a,m,4\n"
                 "2026-11-26T08:00:00.1234567890123Z,a,m,5\n"
                 "2026-02-30 08:00:00 UTC,a,m,6\n")
    report = one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert (report.stored, report.rejected) == (0, 6)
    assert [e.field for e in report.errors] == ["ts"] * 6
    zone = "a time-zone name is not understood; give an offset such as +01:00 or Z"
    for error, text in zip(report.errors[:3], ("2026-11-26 08:00:00 Europe/Berlin",
                                                 "2026-11-26T08:00:00 America/New_York",
                                                 "2026-11-26T08:00CET"), strict=True):
        assert error.message == f"cannot read '{text}' as a time: {zone}"
    # an impossible offset second, a 13-digit fraction and an impossible date are not zone names
    assert all("ISO 8601" in e.message and zone not in e.message for e in report.errors[3:])
    # with a time unit, text is not expected at all: the message says what is
    with_unit = one(ingest_files(store, [path], "points", ReadSpec(time_unit="s"), now))
    assert with_unit.rejected == 6
    assert all("--time-unit" in e.message and zone not in e.message for e in with_unit.errors)
    assert store.counts()["points"] == 0


def test_epoch_numbers_need_and_follow_a_time_unit(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    seconds = int((datetime(2026, 11, 1) - datetime(1970, 1, 1)).total_seconds())
    path = write(tmp_path / "epoch.csv", f"ts,service,metric,value\n{seconds * 1000},a,m,1\n")
    refused = one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert refused.rejected == 1 and "--time-unit" in refused.errors[0].message
    report = one(ingest_files(store, [path], "points", ReadSpec(time_unit="ms"), now))
    assert report.stored == 1
    assert store.history()["ds"].to_list() == [datetime(2026, 11, 1)]


def test_a_changed_value_replaces_the_stored_one_and_the_last_row_wins(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    path = write(tmp_path / "v1.csv", "ts,service,metric,value\n"
                 "2026-11-01T00:00:00Z,a,m,1\n2026-11-01T00:00:00Z,a,m,2\n")
    report = one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert (report.stored, report.duplicates) == (1, 1)
    assert store.history()["y"].to_list() == [2.0]
    path2 = write(tmp_path / "v2.csv", "ts,service,metric,value\n2026-11-01T00:00:00Z,a,m,5\n")
    report2 = one(ingest_files(store, [path2], "points", ReadSpec(), now))
    assert (report2.stored, report2.updated) == (0, 1)
    assert store.history()["y"].to_list() == [5.0]


def test_csv_parquet_and_json_lines_give_the_same_points(tmp_path: Path, now: datetime) -> None:
    frame = points_frame(n=50).with_columns(unit=pl.lit("ms"))
    frame = frame.with_columns(unit=pl.when(pl.col("metric") == "error_rate").then(pl.lit("1"))
                               .otherwise(pl.col("unit")))
    frame.write_csv(tmp_path / "p.csv")
    frame.write_parquet(tmp_path / "p.parquet")
    (tmp_path / "p.jsonl").write_text("\n".join(
        json.dumps({**row, "ts": row["ts"].isoformat() + "Z"})
        for row in frame.iter_rows(named=True)))
    histories = []
    for name in ("p.csv", "p.parquet", "p.jsonl"):
        with Store.open(tmp_path / f"{name}.duckdb", now=now) as store:
            report = one(ingest_files(store, [tmp_path / name], "points", ReadSpec(), now))
            assert report.stored == frame.height, name
            histories.append(store.history())
            assert store.series()["unit"].to_list() == ["1", "ms", "1", "ms"]
    assert histories[0].equals(histories[1]) and histories[1].equals(histories[2])


def test_row_numbers_stay_right_in_a_large_csv(store: Store, tmp_path: Path,
                                               now: datetime) -> None:
    # Large enough for DuckDB's parallel CSV reader; the bad rows sit in different chunks.
    n = 300_000
    ts = np.datetime64("2026-01-01T00:00:00") + np.arange(n) * np.timedelta64(60, "s")
    values = np.arange(n).astype(str).astype(object)
    bad_rows = [7, 123_457, 299_999]
    for row in bad_rows:
        values[row - 1] = "oops"
    pl.DataFrame({"ts": ts.astype(str), "service": "big", "metric": "m",
                  "value": values.astype(str)}).write_csv(tmp_path / "big.csv")
    report = one(ingest_files(store, [tmp_path / "big.csv"], "points", ReadSpec(), now))
    assert report.rejected == 3 and report.stored == n - 3
    assert [e.row for e in report.errors] == bad_rows
    # and the row number matches the value written on that row
    history = store.history()
    assert history["y"].to_list()[:6] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert history.height == n - 3


def test_columns_can_be_renamed_and_unknown_ones_are_refused(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    path = write(tmp_path / "r.csv", "time,svc,name,v,extra\n2026-11-01T00:00:00Z,a,m,1,x\n")
    [refused] = ingest_files(store, [path], "points", ReadSpec(), now)
    assert isinstance(refused, InputError)
    assert "unknown column 'time'" in str(refused) and "--column" in str(refused)
    spec = ReadSpec(columns={"ts": "time", "service": "svc", "metric": "name", "value": "v"},
                    ignore_extra=True)
    assert one(ingest_files(store, [path], "points", spec, now)).stored == 1
    missing = write(tmp_path / "m.csv", "ts,service,value\n2026-11-01T00:00:00Z,a,1\n")
    [error] = ingest_files(store, [missing], "points", ReadSpec(), now)
    assert isinstance(error, InputError) and "missing column(s) metric" in str(error)


def test_one_unreadable_file_does_not_stop_the_others(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    good = tmp_path / "good.csv"
    points_frame(n=2, services=("g",)).write_csv(good)
    write(tmp_path / "x.xlsx", "not a spreadsheet")
    results = ingest_files(store, [tmp_path / "nope.csv", tmp_path / "x.xlsx", good], "points",
                           ReadSpec(), now)
    assert isinstance(results[0], InputError) and "no such file" in str(results[0])
    assert isinstance(results[1], InputError) and "cannot tell the format" in str(results[1])
    assert isinstance(results[2], IngestReport) and results[2].stored == 4


def test_frames_from_polars_and_pandas(store: Store, now: datetime) -> None:
    frame = points_frame(n=10, services=("p",))
    assert ingest_points_frame(store, frame, now).stored == 20
    pandas_frame = pd.DataFrame({
        "ts": pd.date_range("2026-11-02", periods=3, freq="5min", tz="Europe/Paris"),
        "service": "q", "metric": "m", "value": [1.0, np.nan, 3.0]})
    report = ingest_points_frame(store, pandas_frame, now)
    assert (report.stored, report.rejected) == (2, 1)
    assert report.errors[0].row == 2 and report.errors[0].field == "value"
    # A zone-aware time is stored in UTC: 00:00 in Paris is 23:00 UTC the day before.
    assert store.history(service="q")["ds"].to_list()[0] == datetime(2026, 11, 1, 23, 0)


def test_a_unit_that_contradicts_the_series_is_refused(
    store: Store, tmp_path: Path, now: datetime
) -> None:
    path = write(tmp_path / "u.csv", "ts,service,metric,value,unit\n"
                 "2026-11-01T00:00:00Z,a,latency_p95_ms,100,ms\n"
                 "2026-11-01T00:05:00Z,a,latency_p95_ms,0.1,s\n")
    report = one(ingest_files(store, [path], "points", ReadSpec(), now))
    assert report.stored == 1
    assert report.errors[0].field == "unit"
    assert "differs from the unit 'ms'" in report.errors[0].message


def test_a_utilisation_outside_0_to_100_percent_is_refused(store: Store, now: datetime) -> None:
    frame = pl.DataFrame({"ts": [datetime(2026, 11, 1, 0, m) for m in (0, 5, 10)],
                          "service": "gpu-pool", "metric": "gpu_utilization",
                          "value": [42.0, 100.0, 130.0]})
    report = ingest_points_frame(store, frame, now)
    assert (report.stored, report.rejected) == (2, 1)
    assert report.errors[0].row == 3 and report.errors[0].field == "value"
    assert "130.0 is outside the range of a percent metric (0.0 to 100.0)" in \
        report.errors[0].message


def test_a_unit_over_the_limit_never_becomes_the_unit_of_a_new_series(
        store: Store, tmp_path: Path, now: datetime) -> None:
    """A new series given a too-long unit and a good one in one file keeps the good one: the
    long one is rejected on its row, and must not turn the good rows into unit conflicts."""
    path = tmp_path / "units.csv"
    path.write_text("ts,service,metric,value,unit\n"
                    f"2026-11-26T00:00:00Z,svc,latency_p95_ms,10,{'a' * 40}\n"
                    "2026-11-26T00:05:00Z,svc,latency_p95_ms,11,ms\n"
                    "2026-11-26T00:10:00Z,svc,latency_p95_ms,12,ms\n")
    [report] = ingest_files(store, [path], "points", ReadSpec(), now)
    assert not isinstance(report, Exception)
    assert (report.stored, report.rejected) == (2, 1)
    assert [(e.row, e.field) for e in report.errors] == [(1, "unit")]
    assert store.series()["unit"].to_list() == ["ms"]
