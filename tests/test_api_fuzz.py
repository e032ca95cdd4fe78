"""Fuzzing the HTTP API: a real uvicorn server, real HTTP, requests generated from the API's own
OpenAPI schema (schemathesis) and from hypothesis strategies that aim at the nasty cases on purpose
(deep nesting, times that overflow in UTC, huge and odd unicode strings, many distinct unknown
keys, wrong types).

Whatever the request, the answer is never a 5xx, and every error is JSON of the form
``{"error": {"status", "message"}}`` that names no Python exception. Every request sent is counted
(``SENT``); the last test checks the count and prints it for the closing note.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from test_server import READ, WRITE, Server, free_port, now_utc, start_server, stop

from forecaster.api import MAX_CACHED_BODIES, RunCache, create_app, parse_json, too_deep
from forecaster.client import RemoteStore
from forecaster.config import Settings
from forecaster.service import Service
from forecaster.sources.files import POINT_COLUMNS, REQUEST_COLUMNS, ReadSpec, ingest_files
from forecaster.store import Store

LIMIT = 1_000_000  # max_request_bytes of the fuzzed server
OLD_RUNS = 1_001
SENT: Counter[str] = Counter()  # requests sent, by test
# What a Python exception looks like in text: a traceback, or a class name such as OverflowError.
EXCEPTION_TEXT = re.compile(r"Traceback|\b[A-Z][A-Za-z]*(Error|Exception)\b|File \"")
TOKENS = (WRITE, READ, None, "not-a-token")
FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The served file starts with 1,001 old failed runs, so the first is beyond the newest 1,000
    (the client once looked runs up among those only)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    then = now_utc() - timedelta(days=1)
    with Store.open(tmp / "served.duckdb", now=then) as store:
        for _ in range(OLD_RUNS):
            run_id = store.start_run(then, then, "test")
            store.fail_run(run_id, then, "seeded by the test", "{}")
    started = start_server(tmp, "1h", extra_env={"FORECASTER_MAX_REQUEST_BYTES": str(LIMIT)})
    yield started
    stop(started)
    assert started.process.returncode == 0, started.output()[-5000:]


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def check(test: str, status: int, body: bytes, content_type: str, what: str) -> None:
    """The invariants of every answer: no 5xx; errors are JSON and name no exception."""
    SENT[test] += 1
    text = body.decode("utf-8", "replace")
    assert status < 500, f"{what} -> {status}: {text[:500]}"
    if status >= 400:
        assert content_type.startswith("application/json"), f"{what} -> {status} {content_type}"
        error = json.loads(body)
        assert set(error) == {"error"} and set(error["error"]) == {"status", "message"}, text
        assert error["error"]["status"] == status, text
        message = error["error"]["message"]
        assert isinstance(message, str) and message, text
        assert not EXCEPTION_TEXT.search(message), f"{what} -> {message[:500]}"
        assert len(message) < 5_000, f"{what}: a {len(message)}-character message"


def send(http: httpx.Client, test: str, method: str, path: str, token: str | None = WRITE,
         **kwargs: Any) -> httpx.Response:
    response = http.request(method, path, headers=headers(token), **kwargs)
    check(test, response.status_code, response.content, response.headers.get("content-type", ""),
          f"{method} {path} {str(kwargs)[:300]}")
    return response


def wait_until_idle(http: httpx.Client) -> None:
    """No refresh running (a fuzzed POST /v1/runs starts one)."""
    deadline = time.monotonic() + 120
    while http.get("/readyz").json()["refresh_job"]["running_run_id"] is not None:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def peak_rss_after(pid: int, action: Any) -> tuple[Any, int]:
    """Run ``action`` and return its result and the server's peak RSS (kB) while it ran: the
    peak is reset first (``clear_refs``), so an earlier peak (the first refresh) cannot hide one."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    result = action()
    status = Path(f"/proc/{pid}/status").read_text()
    return result, int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


# -- each finding, one by one --------------------------------------------------------------------


def test_many_distinct_unknown_keys_are_refused_at_the_first_in_linear_work(
        server: Server, http: httpx.Client) -> None:
    """4,000 rows each with another unknown key took 2.8 s and +400 MB (quadratic); now the
    first unknown key ends the request, having built nothing."""
    wait_until_idle(http)
    rows = [{"ts": "2026-11-26T00:00:00Z", "service": "svc-a", "metric": "m", "value": 1,
             f"extra_{i}": i} for i in range(4_000)]
    before = rss(server.process.pid)
    answer, peak = peak_rss_after(server.process.pid, lambda: send(
        http, "unknown keys", "POST", "/v1/points", json=rows))
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert "row 1" in message and "'extra_0'" in message
    assert all(name in message for name in POINT_COLUMNS)
    assert peak - before < 60_000, f"the server grew by {(peak - before) // 1024} MB"
    requests = [{**row, "latency_ms": 5.0} for row in rows]
    for row in requests:
        del row["metric"], row["value"]
    again = send(http, "unknown keys", "POST", "/v1/requests", json=requests)
    assert again.status_code == 422 and "'extra_0'" in again.json()["error"]["message"]
    assert all(name in again.json()["error"]["message"] for name in REQUEST_COLUMNS)


@pytest.mark.parametrize("path", ["/v1/points", "/v1/requests", "/v1/events"])
def test_deep_nesting_is_refused_with_422(http: httpx.Client, path: str) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b"[" * 500_000,
                 b'{"points": [{"ts": {"a": {"b": 1}}}]}',  # 4 levels
                 b'[{"ts": "2026-11-26T00:00:00Z", "value": ' + b"[" * 5000 + b"]" * 5000 + b"}]"):
        answer = send(http, "nesting", "POST", path, content=body)
        assert answer.status_code == 422, answer.text
        assert "deep" in answer.json()["error"]["message"]
    if path == "/v1/events":  # an event is one object: a nested field is its shape
        nested = send(http, "nesting", "POST", path, json={
            "ts": "2026-11-26T00:00:00Z", "service": "s", "kind": "deploy", "detail": {"a": 1}})
        assert nested.status_code == 422
        assert "deep" in nested.json()["error"]["message"]
    # in a batch, an object as a field value is one bad row: see
    # test_a_bad_field_rejects_its_row_and_the_others_are_stored


OVERFLOWING = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00",
               "0001-01-01T00:30:00+14:00", "9999-12-31T23:59:59.999999-00:01"]


@pytest.mark.parametrize("ts", OVERFLOWING)
def test_times_that_overflow_in_utc_get_422_naming_the_parameter(http: httpx.Client,
                                                                 ts: str) -> None:
    for path, name in (("/v1/anomalies", "since"), ("/v1/reliability", "since"),
                       ("/v1/history", "start"), ("/v1/history", "end"),
                       ("/v1/series/svc-a:error_rate/history", "start"),
                       ("/v1/series/svc-a:error_rate/history", "end")):
        answer = send(http, "times", "GET", path, token=READ, params={name: ts})
        assert answer.status_code == 422, (path, name, answer.text)
        message = answer.json()["error"]["message"]
        assert message.startswith(f"{name}:") and "1970" in message and "2199" in message
    event = send(http, "times", "POST", "/v1/events",
                 json={"service": "svc-a", "ts": ts, "kind": "deploy"})
    assert event.status_code == 422 and event.json()["error"]["message"].startswith("ts:")
    # rows of a batch go through the store's checks: refused one by one, the others stored
    good = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=0).isoformat()
    points = send(http, "times", "POST", "/v1/points", json=[
        {"ts": ts, "service": "svc-t", "metric": "error_rate", "value": 0.1},
        {"ts": good, "service": "svc-t", "metric": "error_rate", "value": 0.1}])
    assert points.status_code == 200, points.text
    report = points.json()
    assert report["rejected"] == 1 and report["errors"][0]["row"] == 1
    assert report["errors"][0]["field"] == "ts" and "outside" in report["errors"][0]["message"]
    requests = send(http, "times", "POST", "/v1/requests",
                    json=[{"ts": ts, "service": "svc-t", "latency_ms": 3.0}])
    assert requests.status_code == 200 and requests.json()["errors"][0]["field"] == "ts"


def test_events_check_the_token_before_the_body_and_bound_its_size(http: httpx.Client) -> None:
    huge = b'{"service": "svc-a", "kind": "deploy", "detail": "' + b"x" * (LIMIT + 10) + b'"}'
    for token, status in ((None, 401), ("not-a-token", 401), (READ, 403)):
        answer = send(http, "events", "POST", "/v1/events", token=token, content=b"{not json")
        assert answer.status_code == status, answer.text
    assert send(http, "events", "POST", "/v1/events", content=huge).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(LIMIT // 10_000 + 2):
            yield b" " * 10_000

    streamed = send(http, "events", "POST", "/v1/events", content=chunks())
    assert streamed.status_code == 413
    cases = {"detail": "d" * 2_001, "kind": "k" * 65, "kind ": "   ", "metric": "a b",
             "service": "s" * 201}
    for field, value in cases.items():
        event = {"service": "svc-a", "ts": "2026-11-26T00:00:00Z", "kind": "deploy",
                 field.strip(): value}
        answer = send(http, "events", "POST", "/v1/events", json=event)
        assert answer.status_code == 422, (field, answer.text)
        assert answer.json()["error"]["message"].startswith(field.strip())
    # text of up to 2,000 characters in any script is a detail, however long a batch field may be
    detail = "é" * 1_500
    answer = send(http, "events", "POST", "/v1/events", json={
        "service": "svc-a", "ts": "2026-11-26T00:00:00Z", "kind": "deploy", "detail": detail})
    assert answer.status_code == 201, answer.text
    surrogate = send(http, "events", "POST", "/v1/events", content=json.dumps({
        "service": "svc-a", "ts": "2026-11-26T00:00:00Z", "kind": "deploy",
        "detail": "\ud800"}).encode())  # json.dumps escapes it: \\ud800
    assert surrogate.status_code == 422
    assert surrogate.json()["error"]["message"].startswith("detail")


def accounted(report: dict[str, Any]) -> int:
    """The rows a batch report accounts for: each row is stored (a point stored or updated; for
    request logs, a new request), a duplicate or rejected."""
    kept = (report["stored"] + report["updated"] if report["requests_stored"] is None
            else report["requests_stored"])
    return int(kept + report["duplicates"] + report["rejected"])


def _bad_fields(kind: str) -> list[tuple[str, Any, str]]:
    """(field, value, what the message says) of values no row of ``kind`` can have."""
    number = "value" if kind == "points" else "latency_ms"
    cases = [(number, {"a": 1}, "is an object; a field is text, a number, true/false or null"),
             (number, [1, 2], "is an array; a field is text, a number"),
             ("service", "s" * 1_001, "is 1001 characters long; at most 1000"),
             (number, "\ud800", "not valid Unicode text")]
    if kind == "points":
        cases.append(("unit", " " + "u" * 33 + " ", "is 33 characters long; at most 32"))
    return cases


@pytest.mark.parametrize("kind", ["points", "requests"])
def test_a_bad_field_rejects_its_row_and_the_others_are_stored(http: httpx.Client,
                                                               kind: str) -> None:
    """A field no store can keep (an array or object, too long, a lone surrogate, a unit over 32
    characters) costs its row only: 200, the row reported once with its number, field and what
    is allowed, every other row stored. Only the batch's shape refuses the whole batch."""
    service = f"svc-bad-{kind}"
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)

    def good(i: int) -> dict[str, Any]:
        ts = (start + timedelta(minutes=i)).isoformat()
        if kind == "points":
            return {"ts": ts, "service": service, "metric": "error_rate", "value": 0.01,
                    "unit": "ratio"}
        return {"ts": ts, "service": service, "request_id": f"r{i}", "latency_ms": 100.0}

    bad = _bad_fields(kind)
    rows: list[dict[str, Any]] = []
    expected: dict[int, tuple[str, str]] = {}
    for i, (field, value, says) in enumerate(bad):
        rows.append(good(2 * i))
        rows.append({**good(2 * i + 1), field: value})
        expected[len(rows)] = (field, says)
    rows.append({**good(99), "ts": "not a time"})  # rejected by the store, after the others
    expected[len(rows)] = ("ts", "cannot read 'not a time'")
    answer = send(http, "bad fields", "POST", f"/v1/{kind}",
                  content=json.dumps(rows).encode())  # escapes the lone surrogate
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["rows"] == len(rows) and report["rejected"] == len(expected), report
    assert report["rows"] == accounted(report)
    assert [e["row"] for e in report["errors"]] == sorted(expected), report["errors"]
    for error in report["errors"]:
        field, says = expected[error["row"]]
        assert error["field"] == field and says in error["message"], error
        assert len(error["message"]) < 300, error  # a long value is quoted cut short
    if kind == "points":
        assert report["stored"] == len(bad)
        history = send(http, "bad fields", "GET", "/v1/history", token=READ,
                       params={"service": service}).json()["items"]
        assert len(history) == len(bad)
        assert {item["ds"][:16] for item in history} == {
            (start + timedelta(minutes=2 * i)).isoformat()[:16] for i in range(len(bad))}
    else:
        assert report["requests_stored"] == len(bad)
    # one bad row among many: the counts and the row numbers stay those of the batch
    many = [good(200 + i) for i in range(300)]
    many[150] = {**many[150], bad[0][0]: bad[0][1]}
    again = send(http, "bad fields", "POST", f"/v1/{kind}", json=many).json()
    assert again["rows"] == 300 and again["rejected"] == 1
    assert again["errors"] == [{"row": 151, "field": bad[0][0], "message": again["errors"][0][
        "message"]}] and "object" in again["errors"][0]["message"]
    assert (again["stored"] if kind == "points" else again["requests_stored"]) == 299
    # the shape of the batch still refuses all of it, even after a bad field
    shape = send(http, "bad fields", "POST", f"/v1/{kind}",
                 json=[{**good(500), bad[0][0]: bad[0][1]}, {**good(501), "nope": 1}])
    assert shape.status_code == 422 and "'nope'" in shape.json()["error"]["message"]


def test_a_unit_has_one_limit_in_files_and_batches(http: httpx.Client, tmp_path: Path) -> None:
    """A unit over 32 characters rejects its row, with the same field and message, whether the
    row comes in a CSV file or in a batch; the other rows are stored."""
    ts = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    units = ["a" * 33, "ms", "m" * 32, "z" * 90]
    rows = [{"ts": (ts + timedelta(minutes=i)).isoformat(), "service": "svc-unit",
             "metric": f"latency_{i}_ms", "value": 1.0, "unit": unit}
            for i, unit in enumerate(units)]
    answer = send(http, "bad fields", "POST", "/v1/points", json=rows)
    assert answer.status_code == 200, answer.text
    api = answer.json()
    assert api["rejected"] == 2 and api["stored"] == 2
    path = tmp_path / "units.csv"
    path.write_text("ts,service,metric,value,unit\n" + "".join(
        f"{r['ts']},{r['service']},{r['metric']},{r['value']},{r['unit']}\n" for r in rows))
    with Store.open(tmp_path / "files.duckdb", now=now_utc()) as db:
        (result,) = ingest_files(db, [path], "points", ReadSpec(), now_utc())
    assert not isinstance(result, Exception)
    assert result.rejected == 2 and result.stored == 2
    assert [(e.row, e.field, e.message) for e in result.errors] == [
        (e["row"], e["field"], e["message"]) for e in api["errors"]]
    assert [e.row for e in result.errors] == [1, 4]
    assert result.errors[0].message == f"unit '{'a' * 33}' is 33 characters long; at most 32"
    assert result.errors[1].message.endswith("'... is 90 characters long; at most 32")


def test_every_endpoint_checks_the_token_before_reading_the_body(server: Server) -> None:
    """A client without a token gets 401 at once, before it has sent its body."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    for path in ("/v1/points", "/v1/requests", "/v1/events"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         f"\r\nContent-Length: 500000\r\n\r\n[".encode())
            answer = b""  # arrives although the body never does
            while b'"status":401' not in answer and len(answer) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        SENT["token first"] += 1
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b'"status":401' in answer, answer


def test_the_client_finds_any_run_by_its_id(server: Server, http: httpx.Client) -> None:
    with RemoteStore(server.url, token=READ) as remote:
        first = remote.run(1)  # older than the newest 1,000 runs
        assert first is not None and first["run_id"] == 1 and first["status"] == "failed"
        assert first["error"] == "seeded by the test"
        newest = remote.runs(1).to_dicts()[0]
        assert remote.run(newest["run_id"]) == newest  # the same types as GET /v1/runs
        assert remote.run(10**9) is None and remote.run(0) is None
        latest = remote.latest_run_id()
        assert latest is not None and latest > OLD_RUNS
        chosen = remote.run()
        assert chosen is not None and chosen["run_id"] == latest
        assert chosen["status"] == "published"
    SENT["client"] += 7


def test_an_unexpected_error_answers_an_id_and_logs_the_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The client gets neither the exception's type nor its text; the log has both."""
    import threading

    import uvicorn

    settings = Settings(db=tmp_path / "boom.duckdb")
    with Store.open(settings.db, now=now_utc()) as store:
        app = create_app(Service(store, settings, now_utc), start_scheduler=False)

        @app.get("/boom")
        def boom() -> None:
            raise OverflowError("date value out of range: secret=hunter2")

        port = free_port()
        served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="critical", lifespan="off"))
        thread = threading.Thread(target=served.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not served.started:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            with caplog.at_level("ERROR", logger="forecaster.api"):
                answer = httpx.get(f"http://127.0.0.1:{port}/boom", timeout=30)
        finally:
            served.should_exit = True
            thread.join(timeout=30)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"error"} and set(answer.json()["error"]) == {"status", "message"}
    error = answer.json()["error"]
    assert error["status"] == 500 and "hunter2" not in answer.text
    assert "OverflowError" not in answer.text and "date value" not in answer.text
    error_id = re.fullmatch(r"internal error; see the server log \(id (\w+)\)",
                            error["message"]).group(1)  # type: ignore[union-attr]
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info and "hunter2" in str(record.exc_info[1])
    assert "GET /boom" in record.getMessage()


def test_the_response_cache_keeps_a_bounded_number_of_bodies() -> None:
    cache = RunCache(latest=7)
    for i in range(10 * MAX_CACHED_BODIES):
        cache.put((7, "interventions", None, (), i / 10_000, False, False), b"x" * 100)
        if i == 5:
            assert cache.get((7, "interventions", None, (), 0.0, False, False)) == b"x" * 100
    assert len(cache.bodies) == MAX_CACHED_BODIES
    assert (7, "interventions", None, (), 0.0, False, False) not in cache.bodies  # LRU went
    cache.put((6, "interventions"), b"old run")  # not the latest run: not kept
    assert (6, "interventions") not in cache.bodies
    cache.published(8)
    assert not cache.bodies


def test_the_depth_scan_is_exact_and_ignores_brackets_in_strings() -> None:
    assert not too_deep(b'{"points": [{"a": "[[[[{{{{"}]}', 3)
    assert too_deep(b'{"points": [{"a": ["[[[["]}]}', 3)
    assert not too_deep(b'[[], [[]], {"a": [1, {"b": 2}]}]', 4)
    assert too_deep(b'[[], [[]], {"a": [1, {"b": 2}]}]', 3)
    assert too_deep(b'[[], [[[]]]]', 3)
    assert not too_deep(b'"\\"[[[[\\""', 0)
    assert too_deep(b'["\\\\", [[[]]]]', 3)  # an escaped backslash ends no string
    # Unterminated strings full of escaped quotes: each quote inside was once tried again as the
    # start of a string, quadratic work (40,000 of them took 52 s); now one linear pass.
    assert not too_deep(b'"' + b'\\"' * 500_000, 3)
    assert too_deep(b'[1, "' + b'\\"' * 500_000, 3)  # an unclosed bracket: the parser says
    with pytest.raises(Exception, match="deep"):
        parse_json(b"[" * 1_000_000, 3, "shape")
    assert parse_json(b'[{"a": 1}]', 3, "shape") == [{"a": 1}]


# -- generated from the OpenAPI schema -----------------------------------------------------------


def test_the_schema_describes_bodies_uids_and_times(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    for path, key in (("/v1/points", "points"), ("/v1/requests", "requests")):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        array, wrapped = body["anyOf"]
        assert array["type"] == "array" and wrapped["required"] == [key]
        assert array["items"]["properties"]["ts"]["format"] == "date-time"
        assert array["items"]["additionalProperties"] is False
    event = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert set(event["schema"]["required"]) == {"service", "ts", "kind"}
    uid = next(p for p in doc["paths"]["/v1/series/{uid}/forecast"]["get"]["parameters"]
               if p["name"] == "uid")
    assert ":" in uid["schema"]["pattern"]
    since = next(p for p in doc["paths"]["/v1/anomalies"]["get"]["parameters"]
                 if p["name"] == "since")
    assert "date-time" in json.dumps(since["schema"])
    errors = doc["paths"]["/v1/points"]["post"]["responses"]
    for code in ("401", "403", "413", "422", "500"):
        assert errors[code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
    assert doc["paths"]["/v1/points"]["post"]["security"] == [{"bearer": []}]


def operations(http: httpx.Client) -> list[Any]:
    schema = schemathesis.openapi.from_dict(http.get("/openapi.json").json())
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 18
    return found


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE,
                                  schemathesis.GenerationMode.NEGATIVE])
def test_schema_generated_requests_never_get_a_server_error(
        server: Server, http: httpx.Client, mode: schemathesis.GenerationMode) -> None:
    reached: Counter[int] = Counter()
    test = f"schemathesis {mode.value}"
    for operation in operations(http):
        examples = 6 if operation.path == "/v1/runs" and operation.method == "post" else 15

        @settings(FUZZ, max_examples=examples)
        @given(case=operation.as_strategy(generation_mode=mode), token=st.sampled_from(TOKENS))
        def one(case: Any, token: str | None) -> None:
            response = case.call(base_url=server.url, headers=headers(token), timeout=60)
            reached[response.status_code] += 1
            check(test, response.status_code, response.content,
                  response.headers.get("content-type", [""])[0]
                  if isinstance(response.headers.get("content-type"), list)
                  else response.headers.get("content-type", ""),
                  f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:300]}")

        try:
            one()
        except Unsatisfiable:  # no parameters or body to get wrong: nothing negative to send
            assert mode == schemathesis.GenerationMode.NEGATIVE
    wait_until_idle(http)
    print(f"{test}: {sum(reached.values())} requests, statuses {dict(sorted(reached.items()))}")
    if mode == schemathesis.GenerationMode.POSITIVE:  # the schema lets requests reach the logic
        assert reached[200] + reached[201] + reached[202] > sum(reached.values()) // 4, reached


# -- aimed at the nasty cases --------------------------------------------------------------------

NAMES = st.one_of(st.sampled_from(["svc-a", "svc-b", "svc-f"]), st.from_regex(
    r"\A[A-Za-z0-9_.\-]{1,12}\Z"), st.text(max_size=30), st.text(min_size=190, max_size=260))
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59),
                 timezones=st.one_of(st.none(), OFFSETS)).map(datetime.isoformat),
    st.sampled_from(OVERFLOWING + ["2026-11-26T00:00:00Z", "1970-01-01T00:00:00Z",
                                   "2199-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "",
                                   "2026-02-30T00:00:00Z", "99999-01-01T00:00:00Z"]),
    st.text(max_size=40),
    st.integers(-(10**20), 10**20), st.floats())
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=50), st.text(min_size=900, max_size=1_200),
                    st.sampled_from(["\ud800", "\x00", "\U0001f600" * 300, "ǅ" * 40]))
NESTED = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
KEYS = {"points": list(POINT_COLUMNS), "requests": list(REQUEST_COLUMNS)}


@st.composite
def batches(draw: st.DrawFn, kind: str) -> bytes:
    """A batch body: mostly well-formed rows with nasty values, sometimes a nasty shape."""
    def row() -> dict[str, Any]:
        fields = draw(st.lists(st.sampled_from(KEYS[kind]), max_size=len(KEYS[kind]),
                               unique=True))
        chosen: dict[str, Any] = {}
        for name in fields:
            chosen[name] = draw(TIMES if name == "ts" else NAMES if name in (
                "service", "metric") else st.one_of(SCALARS, NESTED))
        if draw(st.integers(0, 9)) == 0:  # an unknown key now and then
            chosen[draw(st.text(max_size=20))] = draw(SCALARS)
        return chosen

    rows: Any = [row() for _ in range(draw(st.integers(0, 6)))]
    shape = draw(st.integers(0, 9))
    if shape == 0:  # many distinct unknown keys
        rows = [{**r, f"k{i}": i} for i, r in enumerate(rows * 50)]
    elif shape == 1:
        depth = draw(st.sampled_from([4, 50, 2_000, 200_000]))
        return b"[" * depth + b"]" * depth
    elif shape == 2:
        return draw(st.binary(max_size=200))
    elif shape == 3:
        rows = draw(NESTED)
    elif shape == 4:  # unterminated strings of escaped quotes, at the size limit
        return b'[{"ts": "' + b'\\"' * (LIMIT // 2 - 20)
    body = {kind: rows} if draw(st.booleans()) else rows
    if draw(st.integers(0, 19)) == 0:
        body = {kind: rows, draw(st.text(max_size=5)): 1}
    return json.dumps(body, allow_nan=True).encode()


@pytest.mark.parametrize("kind", ["points", "requests"])
def test_nasty_batches_never_get_a_server_error(http: httpx.Client, kind: str) -> None:
    @settings(FUZZ, max_examples=100)
    @given(body=batches(kind), token=st.sampled_from(TOKENS))
    def one(body: bytes, token: str | None) -> None:
        answer = send(http, "nasty batches", "POST", f"/v1/{kind}", token=token, content=body)
        if answer.status_code == 200:
            report = answer.json()
            assert report["rows"] == accounted(report), report

    one()


def test_nasty_events_never_get_a_server_error(http: httpx.Client) -> None:
    fields = st.fixed_dictionaries({}, optional={
        "service": NAMES, "ts": TIMES, "kind": st.one_of(st.text(max_size=70), SCALARS),
        "metric": st.one_of(st.none(), NAMES), "detail": st.one_of(SCALARS, NESTED,
                                                                   st.text(min_size=1_990,
                                                                           max_size=2_100)),
        "extra": SCALARS})

    @settings(FUZZ, max_examples=120)
    @given(event=st.one_of(fields, NESTED), token=st.sampled_from(TOKENS))
    def one(event: Any, token: str | None) -> None:
        send(http, "nasty events", "POST", "/v1/events", token=token,
             content=json.dumps(event, allow_nan=True).encode())

    one()


QUERY_TEXT = st.one_of(st.text(max_size=40), st.text(min_size=300, max_size=400), TIMES.map(str))
GETS = ["/v1/interventions", "/v1/anomalies", "/v1/reliability", "/v1/history", "/v1/runs",
        "/v1/series", "/metrics", "/v1/services/{x}", "/v1/series/{x}/forecast",
        "/v1/series/{x}/history", "/v1/runs/{x}", "/v1/runs/{x}/series"]
PARAMS = ["since", "start", "end", "service", "metric", "run_id", "points", "limit",
          "min_p_breach", "decision", "by_service", "precursors"]


def test_nasty_queries_and_paths_never_get_a_server_error(http: httpx.Client) -> None:
    path_values = st.one_of(st.sampled_from(["svc-a", "svc-a:error_rate", "1", "-1", "0",
                                             "99999999999999999999", "svc-a:nothing"]),
                            st.text(min_size=1, max_size=30), st.text(min_size=250,
                                                                      max_size=300))

    @settings(FUZZ, max_examples=200)
    @given(path=st.sampled_from(GETS), x=path_values,
           params=st.dictionaries(st.sampled_from(PARAMS), QUERY_TEXT, max_size=4),
           token=st.sampled_from(TOKENS), arrow=st.booleans())
    def one(path: str, x: str, params: dict[str, str], token: str | None, arrow: bool) -> None:
        url = path.replace("{x}", quote(x, safe=""))
        extra = {"Accept": "application/vnd.apache.arrow.stream"} if arrow else {}
        response = http.get(url, params=params, headers={**headers(token), **extra})
        check("nasty queries", response.status_code, response.content,
              response.headers.get("content-type", ""), f"GET {url} {params}")

    one()


def test_the_server_is_alive_and_the_fuzzers_sent_many_requests(
        server: Server, http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    total = sum(SENT.values())
    print(f"\nAPI fuzzing: {total} requests, 0 server errors; by test: {dict(SENT)}")
    assert total >= 500, SENT
    leaked = [line for line in server.output().splitlines() if "internal error (id" in line]
    assert not leaked, leaked[:5]
