"""Pulling from a real Prometheus (Debian's package, on a loopback port, a temporary TSDB).

A week of seeded metrics shaped like vLLM's (tests/vllm_history.py: histograms with ``le``
buckets, ``_count``/``_sum``, counters by ``finished_reason``, gauges; three services by
``model_name``, one served by two V1 engines, one by the V0 engine with a counter reset) is
backfilled with ``promtool tsdb create-blocks-from openmetrics``. ``ingest prometheus --preset
vllm`` must store, for every service, metric and 5-minute step, the value an independent numpy
computation of the same rates and quantiles gives from the generated samples.

Tolerance: 1e-9 relative (1e-12 absolute). The model repeats Prometheus' documented arithmetic
(rate's extrapolation to the window's edges and its counter-reset and zero rules,
histogram_quantile's interpolation), so what is left is the order of float additions (sums over
engines and finish reasons, Prometheus' running mean in ``avg``): about 1e-14 measured. Rate
extrapolation is why a model that skipped those rules would be off by up to a sampling interval
over the window (1 minute in 5, 20%): no sample sits on a window's edge here (each target is
scraped at its own second of the minute, with jitter), so the comparison never depends on
whether an edge is inclusive (it changed in Prometheus 3).

Then each bad input of the issue against the same server, a live scrape for stale markers, NaN
and thousands of series, credentials through an authenticating proxy, and the service's
continuous pull with its real scheduler: a failing source beside good ones.
"""

from __future__ import annotations

import base64
import http.server
import io
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import promserver
import pytest
import uvicorn
import vllm_history as vh
from conftest import run_cli
from prometheus_client.parser import text_string_to_metric_families

from forecaster import cli
from forecaster.api import create_app
from forecaster.config import Settings
from forecaster.errors import ConfigError, InputError
from forecaster.service import Service
from forecaster.sources import presets
from forecaster.sources.files import ingest_points_frame
from forecaster.sources.prometheus import (
    EPOCH,
    MAX_POINTS,
    Connection,
    PrometheusClient,
    PrometheusError,
    Source,
    chunks,
    eval_range,
    ingest_all,
    pull,
    service_name,
)
from forecaster.sources.pulls import epoch_seconds
from forecaster.store import Store

RTOL, ATOL = 1e-9, 1e-12
STEP = timedelta(minutes=5)


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Backfilled:
    prom: promserver.Prometheus
    history: vh.History
    start: datetime  # the range pulled
    end: datetime
    evals: np.ndarray  # its 5-minute evaluation times, epoch ms
    expected: dict[tuple[str, str], np.ndarray]

    def evals_between(self, start: datetime, end: datetime,
                      step: timedelta = STEP) -> np.ndarray:
        times = eval_range(start, end, step)
        assert times is not None
        return np.arange(times[0], times[1] + 1, int(step.total_seconds() * 1000))


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    folder = tmp_path_factory.mktemp("vllm-prometheus")
    # a week ending an hour ago (a whole hour), as a Prometheus that has kept it would hold it
    end_s = int(time.time()) // 3600 * 3600 - 3600
    history = vh.generate(end_s - 7 * 86400 - 1800)
    openmetrics = folder / "vllm.om"
    samples = vh.write_openmetrics(history, openmetrics)
    assert samples > 1_300_000  # >= 7 days at 1-minute resolution, 135 series
    # one pass over the file per block: blocks of 10 days instead of 2 hours (84 passes)
    done = promserver.promtool("tsdb", "create-blocks-from", "openmetrics",
                               "--max-block-duration=240h", str(openmetrics),
                               str(folder / "data"))
    assert done.returncode == 0, done.stderr[-3000:]
    openmetrics.unlink()
    prom = promserver.start(folder / "server", data=folder / "data")
    try:
        start, end = at(history.start_s + 900), at(history.last_minute_s)
        first_last = eval_range(start, end, STEP)
        assert first_last is not None
        evals = np.arange(first_last[0], first_last[1] + 1, 300_000)
        yield Backfilled(prom, history, start, end, evals, vh.expected(history, evals))
    finally:
        prom.stop()


def assert_points(frame: pl.DataFrame, expected: np.ndarray, evals: np.ndarray,
                  what: str) -> None:
    """A series' stored points (ts, value) are the finite expected values, at their times."""
    finite = np.isfinite(expected)
    stamps = frame["ts"].cast(pl.Datetime("ms")).cast(pl.Int64).to_numpy()
    assert np.array_equal(stamps, evals[finite]), (what, len(stamps), int(finite.sum()))
    np.testing.assert_allclose(frame["value"].to_numpy(), expected[finite], rtol=RTOL,
                               atol=ATOL, err_msg=what)


def stored(db: Path, now: datetime) -> pl.DataFrame:
    with Store.open(db, now=now) as store:
        return store.history().rename({"ds": "ts", "y": "value"})


# -- the vLLM preset against an independent computation -----------------------------------------


def test_the_vllm_preset_stores_what_the_generated_samples_give(backfilled: Backfilled,
                                                                tmp_path: Path) -> None:
    db = tmp_path / "vllm.duckdb"
    done = run_cli("--db", str(db), "ingest", "prometheus", "--url", backfilled.prom.url,
                   "--preset", "vllm", "--service-label", "model_name",
                   "--start", iso(backfilled.start), "--end", iso(backfilled.end),
                   "--step", "5m")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(presets.VLLM_UNITS), done.stdout
    assert "model_name='meta-llama/Llama-3.1-8B-Instruct' is stored as service " \
           "meta-llama_Llama-3.1-8B-Instruct" in done.stderr
    points = stored(db, backfilled.end)
    compared = 0
    for (model, metric), expected in backfilled.expected.items():
        uid = f"{service_name(model)}:{metric}"
        assert_points(points.filter(pl.col("unique_id") == uid), expected, backfilled.evals,
                      uid)
        compared += int(np.isfinite(expected).sum())
    assert compared == points.height > 60_000
    for metric in presets.VLLM_UNITS:
        # NaN (no observations in the window, a NaN gauge) is skipped and counted, not stored
        nan = sum(int(np.isnan(backfilled.expected[(m, metric)]).sum()) for m in vh.MODELS)
        line = next(x for x in lines if x.startswith(f"prometheus:vllm:{metric}:"))
        assert ", 0 rejected (3 series in 1 request" in line, line
        assert (f", {nan} NaN values skipped)" in line) == (nan > 0), line
    # the cases the data was made for happened, and were right
    qwen = backfilled.expected[("Qwen/Qwen2.5-7B-Instruct", "latency_p95_ms")]
    assert np.isnan(qwen).sum() == 24  # two idle hours: no observations, no quantile
    assert np.isnan(backfilled.expected[("meta-llama/Llama-3.1-8B-Instruct",
                                         "kv_cache_usage_percent")]).sum() > 0
    mistral = backfilled.expected[("mistral-7b", "error_rate")]
    first_abort = backfilled.history.targets[3].reasons["abort"].ts[0]
    assert (mistral[backfilled.evals < first_abort] == 0).all()  # V0: no abort series yet
    assert (mistral[backfilled.evals > first_abort + 86_400_000] > 0).mean() > 0.5
    with Store.open(db, now=backfilled.end) as store:
        series = {row["unique_id"]: row for row in store.series().iter_rows(named=True)}
    llama = "meta-llama_Llama-3.1-8B-Instruct"
    assert {(series[f"{llama}:{m}"]["unit"], series[f"{llama}:{m}"]["kind"]) for m in (
        "latency_p95_ms", "ttft_p99_ms")} == {("ms", "latency")}
    assert (series[f"{llama}:error_rate"]["kind"], series[f"{llama}:tokens_per_s"]["kind"],
            series[f"{llama}:kv_cache_usage_percent"]["kind"],
            series[f"{llama}:requests_waiting"]["kind"]) == (
        "ratio", "throughput", "percent", "gauge")


def test_a_second_pull_stores_nothing_twice_and_names_services_as_asked(
        backfilled: Backfilled, tmp_path: Path) -> None:
    sources = presets.preset("vllm", service_label="model_name",
                             metrics=["kv_cache_usage_percent", "latency_p95_ms"],
                             services={"meta-llama/Llama-3.1-8B-Instruct": "chat"})
    start, end = backfilled.end - timedelta(days=2), backfilled.end
    evals = backfilled.evals_between(start, end)
    expected = vh.expected(backfilled.history, evals)
    jobs = [(s, start, end) for s in sources]
    with Store.open(tmp_path / "twice.duckdb", now=end) as store:
        first = ingest_all(store, jobs, Connection(backfilled.prom.url), end)
        again = ingest_all(store, jobs, Connection(backfilled.prom.url), end)
        points = store.history().rename({"ds": "ts", "y": "value"})
    for one, two in zip(first, again, strict=True):
        assert not isinstance(one, PrometheusError) and not isinstance(two, PrometheusError)
        assert one.report is not None and two.report is not None
        assert one.report.stored == one.report.rows > 0 and one.report.rejected == 0
        assert (two.report.stored, two.report.updated) == (0, 0)
        assert two.report.duplicates == one.report.rows
        metric = one.source.removeprefix("vllm:")
        assert one.nan == sum(int(np.isnan(expected[(m, metric)]).sum()) for m in vh.MODELS)
    kv = first[0]
    assert not isinstance(kv, PrometheusError) and kv.nan > 0 and kv.series == 3
    assert_points(points.filter(pl.col("unique_id") == "chat:kv_cache_usage_percent"),
                  expected[("meta-llama/Llama-3.1-8B-Instruct", "kv_cache_usage_percent")],
                  evals, "chat")
    assert set(points["unique_id"].str.split(":").list.first()) == {
        "chat", "Qwen_Qwen2.5-7B-Instruct", "mistral-7b"}


def test_a_long_range_is_read_in_pieces_under_the_point_limit(backfilled: Backfilled) -> None:
    step = timedelta(seconds=30)
    source = Source("waiting", "sum by (model_name) (vllm:num_requests_waiting)",
                    "requests_waiting", service_label="model_name", step=step)
    evals = backfilled.evals_between(backfilled.start, backfilled.end, step)
    assert len(evals) > MAX_POINTS + 1  # one request would be refused: ...
    raw = httpx.get(f"{backfilled.prom.url}/api/v1/query_range", timeout=60, params={
        "query": source.query, "start": evals[0] / 1000, "end": evals[-1] / 1000, "step": 30})
    assert raw.status_code == 400 and "11,000 points" in raw.json()["error"]
    with PrometheusClient(Connection(backfilled.prom.url)) as client:
        frame, pulled = pull(client, source, backfilled.start, backfilled.end)
        small, pieces = pull(client, source, backfilled.start, backfilled.end, max_points=997)
    assert pulled.requests == math.ceil(len(evals) / MAX_POINTS) == 2
    assert pieces.requests == math.ceil(len(evals) / 997) and small.equals(frame)
    for model in vh.MODELS:
        runs = [r for r in backfilled.history.targets if r.target.model == model]
        expected = np.asarray(sum(vh.instant(r.ts, r.waiting, evals) for r in runs))
        assert_points(frame.filter(pl.col("service") == service_name(model)), expected, evals,
                      model)
    assert chunks(0, 10, 1, 4) == [(0, 3), (4, 7), (8, 10)]
    assert eval_range(at(301), at(599), STEP) is None  # no multiple of the step inside


# -- bad input --------------------------------------------------------------------------------


@pytest.fixture
def kept(tmp_path: Path, backfilled: Backfilled) -> Iterator[tuple[Path, pl.DataFrame]]:
    """A database holding points already, and those points."""
    db = tmp_path / "kept.duckdb"
    frame = pl.DataFrame({"ts": [backfilled.end - timedelta(hours=h) for h in range(3)],
                          "service": "chat", "metric": "latency_p95_ms",
                          "value": [310.0, 320.5, 333.25]})
    with Store.open(db, now=backfilled.end) as store:
        assert ingest_points_frame(store, frame, backfilled.end).stored == 3
    yield db, stored(db, backfilled.end)


def ingest(db: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`forecaster ingest prometheus ...` in this process (the command's own entry point)."""
    status = cli.main(["--db", str(db), "ingest", "prometheus", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_each_bad_input_has_a_clear_message_and_stores_nothing_wrong(
        backfilled: Backfilled, kept: tuple[Path, pl.DataFrame],
        capsys: pytest.CaptureFixture[str]) -> None:
    db, before = kept
    url = backfilled.prom.url
    hour = ["--start", iso(backfilled.end - timedelta(hours=1)), "--end", iso(backfilled.end)]
    waiting = "sum by (model_name) (vllm:num_requests_waiting)"

    def refused(status: int, err: str, *texts: str) -> None:
        assert status == 1, err
        for text in texts:
            assert text in err, (text, err)
        assert stored(db, backfilled.end).equals(before)  # nothing added, nothing lost

    away = f"http://127.0.0.1:{closed_port()}"
    status, _, err = ingest(db, "--url", away, "--query", waiting, "--metric",
                            "requests_waiting", "--service-label", "model_name", *hour,
                            capsys=capsys)
    refused(status, err, f"refused: requests_waiting: cannot reach Prometheus at {away}")
    status, _, err = ingest(db, "--url", url, "--query", "rate(vllm:num_requests_waiting[5m]",
                            "--metric", "requests_waiting", "--service-label", "model_name",
                            *hour, capsys=capsys)
    refused(status, err, f"Prometheus at {url} refused the query "
            "'rate(vllm:num_requests_waiting[5m]': bad_data:", "parse error")
    status, _, err = ingest(db, "--url", url, "--query", "vllm:no_such_metric", "--metric",
                            "requests_waiting", "--service-label", "model_name", *hour,
                            capsys=capsys)
    refused(status, err, "warning: the query returned no series from")
    # not aggregated: the two engines of one model would both write its points
    status, _, err = ingest(db, "--url", url, "--query", "vllm:num_requests_waiting",
                            "--metric", "requests_waiting", "--service-label", "model_name",
                            *hour, capsys=capsys)
    refused(status, err, "two series map to service meta-llama_Llama-3.1-8B-Instruct",
            'engine="0"', 'engine="1"', "sum by (model_name)")
    status, _, err = ingest(db, "--url", url, "--query", waiting, "--metric",
                            "requests_waiting", "--service", "chat", *hour, capsys=capsys)
    refused(status, err, "returned 3 series", "names one service (chat)")
    status, _, err = ingest(db, "--url", url, "--query", waiting, "--metric",
                            "requests_waiting", "--service-label", "model_name",
                            "--max-series", "2", *hour, capsys=capsys)
    refused(status, err, "returned 3 series, more than max_series (2)")
    # usage: exit 2 before anything is asked or opened
    for args, text in (
            (["--query", waiting, "--service-label", "model_name"], "--query needs --metric"),
            (["--preset", "vllm"], "--preset vllm needs --service-label"),
            (["--preset", "vllm", "--service-label", "model name"],
             "service_label: 'model name' is not a Prometheus label name"),
            (["--query", waiting, "--metric", "p95 latency", "--service-label", "x"],
             "metric: 'p95 latency' is not a metric name"),
            (["--query", waiting, "--metric", "x", "--service", "a", "--start",
              iso(backfilled.end), "--end", iso(backfilled.end)], "must come before --end"),
            (["--url", "ftp://x", "--query", waiting, "--metric", "x", "--service", "a"],
             "is not an http:// or https:// URL"),
            (["--query", waiting, "--metric", "x", "--service", "a"],
             "no Prometheus URL: pass --url or set prometheus_url")):
        status, _, err = ingest(db, *args, capsys=capsys)
        assert status == 2 and text in err, (args, err)
    assert stored(db, backfilled.end).equals(before)

    # a series without the service label: skipped and named, the others stored
    status, out, err = ingest(db, "--url", url, "--query", f"{waiting} or vector(0)",
                              "--metric", "requests_waiting", "--service-label",
                              "model_name", *hour, capsys=capsys)
    assert status == 1 and "warning: 1 series without the label model_name skipped" in err \
        and "{}" in err, err
    # values outside the metric's kind: rejected row by row, as in files
    status, out, err = ingest(db, "--url", url, "--query", 'label_replace(vector(2), '
                              '"model_name", "chat", "", "")', "--metric", "error_rate",
                              "--service-label", "model_name", *hour, capsys=capsys)
    n = len(backfilled.evals_between(backfilled.end - timedelta(hours=1), backfilled.end))
    assert status == 1 and f"{n} rejected" in out and \
        "rejected: prometheus:error_rate: row 1: value: " in err, (out, err)
    after = stored(db, backfilled.end)
    assert after.filter(pl.col("unique_id") == "chat:latency_p95_ms").equals(before)
    assert set(after["unique_id"]) == {"chat:latency_p95_ms", *(
        f"{service_name(m)}:requests_waiting" for m in vh.MODELS)}
    assert after.filter(pl.col("unique_id").str.ends_with(":requests_waiting")).height == 3 * n


def test_the_sources_file_names_the_file_the_entry_and_the_field(tmp_path: Path) -> None:
    good = tmp_path / "sources.toml"
    good.write_text('url = "http://prometheus:9090"\nstep = "1m"\n\n'
                    '[[preset]]\nname = "vllm"\nservice_label = "model_name"\n'
                    'matchers = \'job="vllm"\'\nmetrics = ["latency_p95_ms", "error_rate"]\n\n'
                    '[[preset]]\nname = "vllm"\nprefix = "eu"\nservice = "eu-chat"\n'
                    'url = "http://prometheus-eu:9090"\n\n'
                    '[[source]]\nname = "gateway-p95"\nmetric = "latency_p95_ms"\n'
                    "query = '1000 * histogram_quantile(0.95, sum by (le, app) "
                    "(rate(http_seconds_bucket[5m])))'\nservice_label = \"app\"\nunit = \"ms\"\n"
                    '[source.services]\n"web/front" = "web"\n')
    sources = presets.load_sources(good)
    by_name = {s.name: s for s in sources}
    assert list(by_name)[:2] == ["vllm:latency_p95_ms", "vllm:error_rate"]
    assert len(sources) == 2 + len(presets.VLLM_UNITS) + 1
    assert by_name["vllm:error_rate"].step == timedelta(minutes=1)
    assert 'finished_reason=~"abort|error"' in by_name["vllm:error_rate"].query
    assert '{job="vllm"}' in by_name["vllm:latency_p95_ms"].query
    assert by_name["eu:latency_p95_ms"].url == "http://prometheus-eu:9090"
    assert "sum by (le)" in by_name["eu:latency_p95_ms"].query  # one service: one series
    assert by_name["gateway-p95"].service_of({"app": "web/front"}) == "web"
    assert by_name["gateway-p95"].service_of({"app": "a/b c"}) == "a_b_c"
    assert by_name["gateway-p95"].service_of({"job": "x"}) is None
    for text, message in (
            ('[[source]]\nname = "a"\nquery = "up"\nmetric = "m"\nservice = "s"\nsetp = "5m"\n',
             "[[source]] #1 (a): unknown key(s) setp; known: name, query"),
            ('[[source]]\nname = "a"\nmetric = "m"\nservice = "s"\n',
             "[[source]] #1 (a): query is missing"),
            ('[[source]]\nquery = "up"\nmetric = "m"\nservice = "s"\nstep = "5x"\n',
             "[[source]] #1: step: '5x' is not a duration"),
            ('[[source]]\nquery = "up"\nmetric = "m"\nservice_label = "model-name"\n',
             "[[source]] #1: service_label: 'model-name' is not a Prometheus label name"),
            ('[[source]]\nquery = "up"\nmetric = "m"\n',
             "[[source]] #1: give service_label"),
            ('[[preset]]\nname = "tgi"\nservice_label = "x"\n',
             "[[preset]] #1 (tgi): name: 'tgi' is not a known preset; known: vllm"),
            ('[[preset]]\nname = "vllm"\nservice_label = "x"\nmetrics = ["p95"]\n',
             "[[preset]] #1 (vllm): metrics: 'p95': the vllm preset has latency_p50_ms"),
            ('[[preset]]\nname = "vllm"\nservice_label = "x"\nmatchers = "job=vllm"\n',
             "[[preset]] #1 (vllm): matchers: 'job=vllm' is not label matchers"),
            ('[[preset]]\nname = "vllm"\nservice_label = "x"\n[[preset]]\nname = "vllm"\n'
             'service_label = "y"\n', "[[preset]] #2 (vllm): source name 'vllm:latency_p50_ms' "
             "is also the name of a source of [[preset]] #1 (vllm)"),
            ('step = 5\n[[preset]]\nname = "vllm"\nservice_label = "x"\n',
             ": step: 5 is not a duration"),
            ('[[source]]\nquery = "up"\nmetric = "m"\nservice = "s"\nmax_series = 0\n',
             "max_series = 0 must be an integer, 1 or more"),
            ('url = "http://x"\n', "no [[preset]] or [[source]] table: nothing to pull"),
            ("[[source]\n", "sources file")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as refused:
            presets.load_sources(bad)
        assert str(refused.value).startswith(str(bad)) or str(bad) in str(refused.value)
        assert message in str(refused.value), (message, str(refused.value))
    with pytest.raises(ConfigError, match="cannot read sources file"):
        presets.load_sources(tmp_path / "missing.toml")


def test_sources_and_connections_refuse_what_cannot_work() -> None:
    with pytest.raises(InputError, match="give service_label .* or service"):
        Source("a", "up", "m", service_label="x", service="y")
    with pytest.raises(InputError, match="step: .* 1s or more"):
        Source("a", "up", "m", service="y", step=timedelta(0))
    with pytest.raises(ConfigError, match="not both"):
        Connection("http://x", token="t", user="u")
    with pytest.raises(ConfigError, match="without prometheus_user"):
        Connection("http://x", password="p")
    assert service_name("meta-llama/Llama 3") == "meta-llama_Llama_3"
    assert cli.PRESET_NAMES == tuple(presets.PRESETS)


# -- credentials through an authenticating proxy ----------------------------------------------


class _Gate(http.server.BaseHTTPRequestHandler):
    """Forwards the API to Prometheus when the request carries the expected Authorization."""

    upstream = ""
    expected = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="prometheus"')
            self.end_headers()
            self.wfile.write(b"Unauthorized\n")
            return
        answer = httpx.post(self.upstream + self.path, content=body, timeout=60,
                            headers={"Content-Type": self.headers["Content-Type"]})
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers["Content-Type"])
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args: object) -> None:
        pass


def test_credentials_from_the_settings_reach_prometheus(backfilled: Backfilled,
                                                        tmp_path: Path) -> None:
    from forecaster.sources.prometheus import connection

    source = Source("waiting", "sum by (model_name) (vllm:num_requests_waiting)",
                    "requests_waiting", service_label="model_name")
    start, end = backfilled.end - timedelta(hours=1), backfilled.end
    for expected, settings in (
            ("Bearer s3cret", Settings(prometheus_token="s3cret")),
            ("Basic " + base64.b64encode(b"reader:pa ss").decode(),
             Settings(prometheus_user="reader", prometheus_password="pa ss"))):
        gate = type("Gate", (_Gate,), {"upstream": backfilled.prom.url, "expected": expected})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), gate)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            with PrometheusClient(connection(settings, url)) as client:
                frame, pulled = pull(client, source, start, end)
            assert pulled.series == 3 and frame.height == 3 * len(
                backfilled.evals_between(start, end))
            with PrometheusClient(Connection(url)) as client, \
                    pytest.raises(PrometheusError, match=re.escape(
                        f"Prometheus at {url} refused the credentials (HTTP 401): set "
                        "prometheus_token, or prometheus_user and prometheus_password")):
                pull(client, source, start, end)
        finally:
            server.shutdown()
            server.server_close()
    assert "s3cret" not in repr(connection(Settings(prometheus_token="s3cret")))
    assert Settings(prometheus_password="pa ss").describe()["prometheus_password"] == "***"


# -- a live scrape: stale markers, NaN, thousands of series ------------------------------------


class _Target(http.server.BaseHTTPRequestHandler):
    scrapes = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).scrapes += 1
        value = "NaN" if type(self).scrapes % 3 == 0 else str(type(self).scrapes)
        text = io.StringIO()
        text.write(f"# TYPE live_gauge gauge\nlive_gauge{{service=\"api\"}} {value}\n")
        text.write("# TYPE many gauge\n")
        for i in range(3000):
            text.write(f'many{{i="{i}"}} {i}\n')
        body = text.getvalue().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_stale_markers_nan_and_thousands_of_series_from_a_live_scrape(tmp_path: Path) -> None:
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    thread = threading.Thread(target=target.serve_forever, daemon=True)
    thread.start()
    config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n"
              "  - job_name: live\n    static_configs:\n      - targets: "
              f"['127.0.0.1:{target.server_address[1]}']\n")
    prom = promserver.start(tmp_path / "live", config)
    try:
        began = datetime.now(UTC).replace(tzinfo=None)
        deadline = time.monotonic() + 30
        while _Target.scrapes < 4:
            assert time.monotonic() < deadline, prom.output()[-2000:]
            time.sleep(0.2)
        target.shutdown()  # the next scrape fails: Prometheus writes stale markers
        target.server_close()
        stopped = datetime.now(UTC).replace(tzinfo=None)
        time.sleep(4)
        end = datetime.now(UTC).replace(tzinfo=None)
        gauge = Source("live", "live_gauge", "queue_depth", service_label="service",
                       step=timedelta(seconds=1))
        many = Source("many", "many", "queue_depth", service_label="i",
                      step=timedelta(seconds=1))
        with PrometheusClient(Connection(prom.url)) as client:
            frame, pulled = pull(client, gauge, began - timedelta(seconds=5), end)
            with pytest.raises(PrometheusError, match=r"many: the query returned 3,000 series, "
                               r"more than max_series \(1,000\): aggregate it by the service "
                               r"label \(for example sum by \(i\) \(\.\.\.\)\)"):
                pull(client, many, began - timedelta(seconds=5), end)
            allowed, _ = pull(client, Source("many", "many", "queue_depth", service_label="i",
                                             step=timedelta(seconds=1), max_series=5000),
                              began - timedelta(seconds=5), end)
    finally:
        prom.stop()
    assert allowed["service"].n_unique() == 3000
    # the NaN the target exposed came back as "NaN" and was skipped, never stored
    assert pulled.nan > 0 and frame["value"].is_finite().all() and frame.height >= 3
    # each stored value is a scrape's own (the n-th scrape exposes n, or NaN when 3 divides n)
    assert all(v == int(v) and int(v) % 3 for v in frame["value"].to_list())
    # without the stale marker an instant selector would repeat the last value for 5 minutes
    last = frame["ts"].max()
    assert isinstance(last, datetime) and last < stopped + timedelta(seconds=3.5)
    assert end - last > timedelta(seconds=2)


# -- the service's continuous pull ------------------------------------------------------------


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def test_each_refresh_pulls_what_is_new_and_a_failing_source_blocks_nothing(
        backfilled: Backfilled, tmp_path: Path) -> None:
    away = f"http://127.0.0.1:{closed_port()}"
    sources = tmp_path / "sources.toml"
    sources.write_text(
        '[[preset]]\nname = "vllm"\nservice_label = "model_name"\n'
        'metrics = ["latency_p95_ms", "error_rate", "requests_per_s"]\n\n'
        '[[source]]\nname = "broken"\nquery = "rate(vllm:num_requests_waiting[5m]"\n'
        'metric = "requests_waiting"\nservice_label = "model_name"\n\n'
        f'[[source]]\nname = "away"\nurl = "{away}"\nmetric = "requests_waiting"\n'
        'query = "sum by (model_name) (vllm:num_requests_waiting)"\nservice_label = "model_name"\n')
    settings = Settings(prometheus_sources=str(sources), prometheus_url=backfilled.prom.url,
                        prometheus_lookback=timedelta(days=1),
                        prometheus_overlap=timedelta(minutes=10))
    clock = Clock(backfilled.end - timedelta(days=1, minutes=2))
    first_end = clock.now
    store = Store.open(tmp_path / "served.duckdb", now=clock.now, settings=settings)
    service = Service(store, settings, clock)
    service.start(first_run_in=timedelta(days=3650))  # the scheduler and its worker; no tick

    def refresh(runs: int) -> None:
        service.run_job_now("refresh")
        deadline = time.monotonic() + 180
        while service.refresh_status.runs < runs:
            assert time.monotonic() < deadline, service.refresh_status
            time.sleep(0.1)
        assert service.refresh_status.last_ok, service.refresh_status.last_error

    server = uvicorn.Server(uvicorn.Config(create_app(service, start_scheduler=False),
                                           host="127.0.0.1", port=closed_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}",
                          timeout=60) as http_client:
            refresh(1)
            by_name = {s.source: s for s in service.puller.statuses()}
            assert set(by_name) == {"vllm:latency_p95_ms", "vllm:error_rate",
                                    "vllm:requests_per_s", "broken", "away"}
            assert "parse error" in (by_name["broken"].last_error or "")
            assert f"cannot reach Prometheus at {away}" in (by_name["away"].last_error or "")
            assert (by_name["broken"].failures, by_name["away"].failures) == (1, 1)
            good = by_name["vllm:requests_per_s"]
            assert (good.last_ok, good.pulled_until, good.failures) == (True, first_end, 0)
            first_rows = good.last_rows
            ready = http_client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["ready"], ready.text
            shown = ready.json()["prometheus_sources"]
            assert (shown["ok"], shown["failing"]) == (False, ["away", "broken"])
            assert {s["source"]: s["ok"] for s in shown["sources"]}["vllm:error_rate"] is True

            clock.now = first_end + timedelta(hours=1)
            refresh(2)
            good = {s.source: s for s in service.puller.statuses()}["vllm:requests_per_s"]
            # from the last pull's end less the overlap: 10 minutes again, then the new hour
            again = backfilled.evals_between(first_end - timedelta(minutes=10), clock.now)
            new = int((again > epoch_seconds(first_end) * 1000).sum())
            assert good.pulled_until == clock.now and good.last_stored == 3 * new == 3 * 12
            assert good.last_rows == 3 * len(again) > good.last_stored
            assert good.last_updated == 0
            metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for family in text_string_to_metric_families(
                           http_client.get("/metrics").text) for s in family.samples}
            assert metrics[("forecaster_source_pull_errors_total",
                            (("source", "broken"),))] == 2
            assert metrics[("forecaster_source_pull_errors_total",
                            (("source", "vllm:error_rate"),))] == 0
            assert metrics[("forecaster_source_last_pull_timestamp_seconds",
                            (("source", "vllm:error_rate"),))] == epoch_seconds(clock.now)
            assert metrics[("forecaster_source_last_pull_ok", (("source", "away"),))] == 0
            assert metrics[("forecaster_ingest_rows_total",
                            (("kind", "prometheus"), ("outcome", "stored")))] == \
                3 * first_rows + 3 * 3 * new
        points = store.history().rename({"ds": "ts", "y": "value"})
        evals = backfilled.evals_between(first_end - timedelta(days=1), clock.now)
        expected = vh.expected(backfilled.history, evals)
        for model in vh.MODELS:
            for metric in ("latency_p95_ms", "error_rate", "requests_per_s"):
                uid = f"{service_name(model)}:{metric}"
                assert_points(points.filter(pl.col("unique_id") == uid),
                              expected[(model, metric)], evals, uid)
        assert store.runs(5)["status"].to_list() == ["published", "published"]
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        service.stop()
        store.close()


def test_two_sources_of_one_series_are_refused_and_the_first_is_kept(
        backfilled: Backfilled, tmp_path: Path) -> None:
    """Two sources writing one series would overwrite each other at every pull: the second is
    refused, naming both, and the first one's points are stored."""
    [p95] = presets.preset("vllm", service_label="model_name", metrics=["latency_p95_ms"])
    other = Source("gateway-p95", p95.query, "latency_p95_ms", service_label="model_name")
    start, end = backfilled.end - timedelta(hours=6), backfilled.end
    with Store.open(tmp_path / "clash.duckdb", now=end) as store:
        first, second = ingest_all(store, [(p95, start, end), (other, start, end)],
                                   Connection(backfilled.prom.url), end)
        stored_rows = store.counts()["points"]
    assert not isinstance(first, PrometheusError) and first.report is not None
    assert first.report.stored == stored_rows > 0
    assert isinstance(second, PrometheusError)
    assert "gateway-p95: series" in str(second) and f"source {p95.name!r}" in str(second)


def test_a_silent_prometheus_is_waited_for_once_per_pull(tmp_path: Path) -> None:
    """A server that accepts connections and never answers: the first source waits out the
    timeout, the others of that URL are not asked (the refresh is held up once, not N times)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    sources = [Source(f"s{k}", "up", f"metric_{k}", service="svc") for k in range(4)]
    now = datetime(2026, 11, 26)
    try:
        with Store.open(tmp_path / "silent.duckdb", now=now) as store:
            started = time.monotonic()
            results = ingest_all(store, [(s, now - timedelta(hours=1), now) for s in sources],
                                 Connection(url, timeout=timedelta(seconds=1)), now)
            took = time.monotonic() - started
    finally:
        listener.close()
    assert all(isinstance(r, PrometheusError) for r in results)
    assert "did not answer within 1s" in str(results[0])
    assert all("not asked" in str(r) for r in results[1:])
    assert took < 3.0, took  # one timeout, not four


def test_credentials_inside_a_url_are_refused_and_never_echoed() -> None:
    with pytest.raises(ConfigError) as refused:
        Connection("http://alice:s3cr3t@127.0.0.1:9090")
    assert "s3cr3t" not in str(refused.value) and "prometheus_user" in str(refused.value)
    from forecaster.config import load_settings

    with pytest.raises(ConfigError) as in_settings:
        load_settings({"FORECASTER_PROMETHEUS_URL": "https://bob:hunter2@prom.example:9090"})
    assert "hunter2" not in str(in_settings.value)
    assert "prometheus_url" in str(in_settings.value)
    assert Connection("http://prom.example:9090/prefix").url.endswith("/prefix")
