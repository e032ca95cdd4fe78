"""Prometheus -> validated points: the HTTP API's ``query_range``, read in pieces under
Prometheus' point limit, each returned series mapped to one service's series, and stored through
the same validation and idempotent path as files
(:func:`forecaster.sources.files.ingest_points_frame`).

Evaluation times are multiples of the step since the epoch (as Grafana aligns them), so that
pulls over overlapping ranges ask for the same times: a point pulled twice is the same point,
stored once, and updated when a late sample changed it.

What Prometheus answers that is not a number (``NaN`` from 0/0 or from a histogram without
observations in the window, ``+Inf``) is skipped and counted, never stored. Stale markers never
reach the HTTP API: a series that went stale has no value at those times, so nothing is stored
for them and no gap is filled.

A query must give one series per service. Every refusal (Prometheus unreachable, a PromQL error,
too many series, two series for one service) stores nothing of that source; series without the
service label are skipped with a warning naming their labels; the other series are stored.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol

import httpx
import numpy as np
import polars as pl

from forecaster.config import Settings
from forecaster.errors import ConfigError, InputError
from forecaster.ingest_report import IngestReport
from forecaster.names import MAX_UNIT_CHARS, NAME_RULE, is_valid_name
from forecaster.sources.files import ReadSpec, ingest_points_frame
from forecaster.store import Store
from forecaster.wording import format_duration

log = logging.getLogger("forecaster.prometheus")

# Prometheus refuses a range query of more than 11,000 points per series
# (web/api/v1/api.go: "exceeded maximum resolution of 11,000 points per timeseries").
MAX_POINTS = 11_000
DEFAULT_STEP = timedelta(minutes=5)
DEFAULT_MAX_SERIES = 1000
EPOCH = datetime(1970, 1, 1)
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")
_SHOWN_SERIES = 3  # label sets a warning lists


class PrometheusError(InputError):
    """Prometheus could not give a source's points: unreachable, credentials refused, a PromQL
    error, or an answer that cannot be stored as it is. The message names the URL or the source,
    the query and Prometheus' own error text.

    Attributes:
        unreachable: The server could not be connected to (the other sources of that URL are
            skipped for this pull rather than each waiting for its own timeout).
    """

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach Prometheus: its URL, credentials and timeout.

    Attributes:
        url: Base URL (``http://prometheus:9090``, or with a path prefix); the API is under
            ``/api/v1``. Empty when every source names its own.
        token: Bearer token, or empty.
        user: Basic-auth user, or empty.
        password: Basic-auth password.
        timeout: How long one request may take (also sent as Prometheus' query timeout).
    """

    url: str = ""
    token: str = field(default="", repr=False)
    user: str = ""
    password: str = field(default="", repr=False)
    timeout: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if _has_credentials(self.url):
            raise ConfigError("a Prometheus URL must not hold credentials (user:password@): set "
                              "prometheus_user and prometheus_password, or prometheus_token")
        if self.url and not _is_http_url(self.url):
            raise ConfigError(f"Prometheus URL {self.url!r} is not an http:// or https:// URL")
        if self.token and (self.user or self.password):
            raise ConfigError("give prometheus_token or prometheus_user and prometheus_password, "
                              "not both")
        if self.password and not self.user:
            raise ConfigError("prometheus_password is set without prometheus_user")
        if self.timeout <= timedelta(0):
            raise ConfigError("the Prometheus timeout must be longer than 0s")

    def at(self, url: str) -> Connection:
        """The same credentials and timeout for ``url``."""
        return Connection(url, self.token, self.user, self.password, self.timeout)


def connection(settings: Settings, url: str | None = None) -> Connection:
    """The connection the settings describe (``url`` wins over ``prometheus_url``).

    Raises:
        ConfigError: a URL that is not http(s), or both a token and a user.
    """
    return Connection(url or settings.prometheus_url, settings.prometheus_token,
                      settings.prometheus_user, settings.prometheus_password,
                      settings.prometheus_timeout)


def _is_http_url(url: str) -> bool:
    return re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url) is not None


def _has_credentials(url: str) -> bool:
    """Whether ``url`` holds a ``user:password@`` part. Refused: a URL is shown in messages, on
    /readyz and in every run's settings; credentials go in prometheus_user/prometheus_password
    or prometheus_token instead."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@", url) is not None


@dataclass(frozen=True, slots=True)
class Source:
    """One PromQL query whose series become one metric of each service.

    Attributes:
        name: What messages, ``/readyz`` and ``/metrics`` call it (unique in a sources file).
        query: The PromQL expression, evaluated by ``query_range``.
        metric: The forecaster metric each returned series becomes (its kind follows the name:
            see :mod:`forecaster.kinds`).
        service_label: The label whose value names each series' service; or
        service: The one service of a query that returns one series.
        step: Time between evaluations (points are at multiples of it since the epoch).
        unit: The unit stored with the points (``ms``, ``1``, ``1/s``, ``%``), or None.
        url: This source's own Prometheus; None uses the default one.
        services: Label value -> service name; other values are used as they are, with each run
            of characters outside the name alphabet replaced by ``_``.
        max_series: More series than this refuses the pull (the query is not aggregated).
    """

    name: str
    query: str
    metric: str
    service_label: str | None = None
    service: str | None = None
    step: timedelta = DEFAULT_STEP
    unit: str | None = None
    url: str | None = None
    services: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    max_series: int = DEFAULT_MAX_SERIES

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise InputError(problem)

    def service_of(self, labels: Mapping[str, str]) -> str | None:
        """The service of a series with ``labels``; None when it lacks the service label."""
        if self.service is not None:
            return self.service
        value = labels.get(self.service_label or "")
        if not value:
            return None
        return self.services.get(value) or service_name(value)


def _problem(source: Source) -> str | None:
    """What is wrong with a source, naming the field; None when nothing is."""
    if not isinstance(source.name, str) or not source.name.strip() or len(source.name) > 200:
        return f"name: {source.name!r} must be 1 to 200 characters"
    if not isinstance(source.query, str) or not source.query.strip():
        return "query: must be a PromQL expression, not empty"
    if not isinstance(source.metric, str) or not is_valid_name(source.metric):
        return f"metric: {source.metric!r} is not a metric name ({NAME_RULE})"
    if (source.service_label is None) == (source.service is None):
        return ("give service_label (the label naming each series' service) or service (the one "
                "service of a query that returns one series), one of them")
    if source.service_label is not None and not (
            isinstance(source.service_label, str) and LABEL_NAME.fullmatch(source.service_label)):
        return (f"service_label: {source.service_label!r} is not a Prometheus label name "
                "([a-zA-Z_][a-zA-Z0-9_]*)")
    if source.service is not None and not (isinstance(source.service, str)
                                           and is_valid_name(source.service)):
        return f"service: {source.service!r} is not a service name ({NAME_RULE})"
    if not isinstance(source.step, timedelta) or source.step < timedelta(seconds=1):
        return f"step: {source.step!r} must be a duration of 1s or more, such as 5m"
    if source.unit is not None and not (isinstance(source.unit, str)
                                        and len(source.unit) <= MAX_UNIT_CHARS):
        return f"unit: {source.unit!r} must be text of at most {MAX_UNIT_CHARS} characters"
    if source.url is not None and not (isinstance(source.url, str) and _is_http_url(source.url)):
        return f"url: {source.url!r} is not an http:// or https:// URL"
    for value, name in source.services.items():
        if not (isinstance(name, str) and is_valid_name(name)):
            return f"services: {value!r} = {name!r} is not a service name ({NAME_RULE})"
    if isinstance(source.max_series, bool) or not isinstance(source.max_series, int) \
            or source.max_series < 1:
        return f"max_series: {source.max_series!r} must be an integer, 1 or more"
    return None


def service_name(value: str) -> str:
    """A label value as a service name: each run of characters outside ``A-Z a-z 0-9 _ . -``
    becomes ``_`` (``meta-llama/Llama-3.1-8B`` -> ``meta-llama_Llama-3.1-8B``), cut to 200."""
    return _NOT_NAME.sub("_", value)[:200]


# -- the HTTP API ----------------------------------------------------------------------------


class RangeQuery(Protocol):
    """What pulling needs of a Prometheus: ``query_range``."""

    def query_range(self, query: str, start: float, end: float,
                    step: float) -> tuple[list[dict[str, Any]], list[str]]:
        """The matrix of ``query`` at ``start, start + step, ... <= end`` (epoch seconds), and
        Prometheus' warnings."""
        ...


class PrometheusClient:
    """Prometheus' HTTP API over one connection pool.

    Args:
        conn: URL, credentials and timeout.
        transport: An httpx transport (tests); None for the network.
    """

    def __init__(self, conn: Connection, transport: httpx.BaseTransport | None = None) -> None:
        if not conn.url:
            raise ConfigError("no Prometheus URL: pass --url or set prometheus_url")
        self.conn = conn
        headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
        auth = httpx.BasicAuth(conn.user, conn.password) if conn.user else None
        self._http = httpx.Client(headers=headers, auth=auth, transport=transport,
                                  timeout=conn.timeout.total_seconds())
        self._endpoint = conn.url.rstrip("/") + "/api/v1/query_range"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query_range(self, query: str, start: float, end: float,
                    step: float) -> tuple[list[dict[str, Any]], list[str]]:
        """One ``query_range`` request (POST, so that long queries fit).

        Raises:
            PrometheusError: unreachable, too slow, credentials refused, a PromQL error or an
                answer that is not Prometheus' JSON; the message names the URL and, for a
                refused query, the query and Prometheus' own error text.
        """
        url = self.conn.url
        form = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                "step": f"{step:.3f}", "timeout": format_duration(self.conn.timeout)}
        try:
            response = self._http.post(self._endpoint, data=form)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise PrometheusError(f"cannot reach Prometheus at {url}: {exc or type(exc).__name__}",
                                  unreachable=True) from None
        except httpx.TimeoutException:
            # "unreachable" for this pull: its other sources would each wait as long again and
            # hold up the refresh by that many timeouts
            raise PrometheusError(
                f"Prometheus at {url} did not answer within {format_duration(self.conn.timeout)} "
                f"(query {query!r}): raise prometheus_timeout, or ask for a shorter range or a "
                "longer step", unreachable=True) from None
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {url}: {type(exc).__name__}: {exc}",
                                  unreachable=isinstance(exc, httpx.TransportError)) from None
        return _answer(response, url, query)


def _answer(response: httpx.Response, url: str,
            query: str) -> tuple[list[dict[str, Any]], list[str]]:
    status = response.status_code
    if status in (401, 403):
        raise PrometheusError(
            f"Prometheus at {url} refused the credentials (HTTP {status}): set prometheus_token, "
            "or prometheus_user and prometheus_password, to ones it accepts")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        text = " ".join(response.text.split())[:200]
        raise PrometheusError(
            f"{url} answered HTTP {status} with something that is not Prometheus' API JSON "
            f"({text!r}): is it the base URL of a Prometheus (its API is under /api/v1)?")
    if body["status"] != "success":
        raise PrometheusError(
            f"Prometheus at {url} refused the query {query!r}: {body.get('errorType', 'error')}: "
            f"{body.get('error', '(no error text)')}")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix" \
            or not isinstance(data.get("result"), list):
        kind = data.get("resultType") if isinstance(data, dict) else None
        raise PrometheusError(f"Prometheus at {url} answered the query {query!r} with a "
                              f"{kind or 'malformed'} result, not a matrix")
    warnings = body.get("warnings") or []
    return data["result"], [str(w) for w in warnings]


# -- one pull --------------------------------------------------------------------------------


@dataclass(slots=True)
class Pull:
    """What one pull of a source did.

    Attributes:
        source: The source's name.
        start: The range asked for, start (UTC).
        end: ... and end.
        requests: ``query_range`` requests made (long ranges are split).
        series: Series Prometheus returned.
        nan: ``NaN`` values skipped (0/0, a histogram without observations in the window).
        infinite: ``+Inf``/``-Inf`` values skipped.
        warnings: What was not stored and why (series without the service label, no series
            at all).
        notes: What a reader may want to know: label values renamed, Prometheus' own
            warnings.
        report: The store's report of the points (None until stored).
    """

    source: str
    start: datetime
    end: datetime
    requests: int = 0
    series: int = 0
    nan: int = 0
    infinite: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report: IngestReport | None = None

    @property
    def ok(self) -> bool:
        """Nothing was left out: no warning and no rejected row."""
        return not self.warnings and (self.report is None or self.report.ok)

    def summary(self) -> str:
        """One line a person can read."""
        report = self.report or IngestReport(source=f"prometheus:{self.source}")
        skipped = f", {self.nan} NaN" if self.nan else ""
        skipped += f", {self.infinite} infinite" if self.infinite else ""
        requests = f"{self.requests} request{'s' if self.requests != 1 else ''}"
        return (f"{report.summary()} ({self.series} series in {requests}"
                f"{skipped + ' values skipped' if skipped else ''})")


def eval_range(start: datetime, end: datetime, step: timedelta) -> tuple[int, int] | None:
    """The first and last evaluation time in ``[start, end]`` (epoch milliseconds, multiples of
    the step), or None when no multiple falls inside."""
    step_ms = _ms(step)
    first = -(-_epoch_ms(start) // step_ms) * step_ms
    last = _epoch_ms(end) // step_ms * step_ms
    return (first, last) if first <= last else None


def chunks(first: int, last: int, step: int, max_points: int = MAX_POINTS) -> list[tuple[int, int]]:
    """``[first, last]`` (milliseconds) cut into ranges of at most ``max_points`` evaluations."""
    span = (max_points - 1) * step
    pieces = []
    while first <= last:
        pieces.append((first, min(first + span, last)))
        first = pieces[-1][1] + step
    return pieces


def _ms(delta: timedelta) -> int:
    return int(delta / timedelta(milliseconds=1))


def _epoch_ms(value: datetime) -> int:
    return _ms(value - EPOCH)


def _labels_text(labels: tuple[tuple[str, str], ...]) -> str:
    """``name{a="x", b="y"}``, as Prometheus writes a series."""
    inside = ", ".join(f'{k}="{v}"' for k, v in labels if k != "__name__")
    name = dict(labels).get("__name__", "")
    return f"{name}{{{inside}}}"


Labels = tuple[tuple[str, str], ...]  # a series' label set, sorted


def pull(client: RangeQuery, source: Source, start: datetime, end: datetime,
         max_points: int = MAX_POINTS) -> tuple[pl.DataFrame, Pull]:
    """Evaluate a source over ``[start, end]`` and map its series to points.

    Args:
        client: The Prometheus to ask.
        source: What to ask and how to map the answer.
        start: First time (UTC, naive); evaluations are at multiples of the step.
        end: Last time.
        max_points: Evaluations per request (Prometheus refuses more than 11,000).

    Returns:
        The points (``ts, service, metric, value[, unit]``, finite values only, by service and
        time) and what the pull did.

    Raises:
        PrometheusError: Prometheus refused or could not be reached; more than
            ``source.max_series`` series; a source of one service got several series; two
            series map to one service. Nothing of the source is kept.
    """
    pulled = Pull(source.name, start, end)
    found = _fetch(client, source, pulled, max_points)
    if not found:
        if pulled.requests:
            pulled.warnings.append(
                f"the query returned no series from {start:%Y-%m-%d %H:%M} to "
                f"{end:%Y-%m-%d %H:%M} UTC: check its metric names and label matchers in "
                "Prometheus' own graph page")
        return _frame([], source), pulled
    frames = [_values(service, values, pulled)
              for service, values in _services(source, found, pulled)]
    return _frame(frames, source), pulled


def _fetch(client: RangeQuery, source: Source, pulled: Pull,
           max_points: int) -> dict[Labels, list[list[Any]]]:
    """Every series of the source's range, its pieces joined: label set -> [time, value]s."""
    times = eval_range(pulled.start, pulled.end, source.step)
    if times is None:
        return {}
    step = _ms(source.step)
    found: dict[Labels, list[list[Any]]] = {}
    for first, last in chunks(*times, step, max_points):
        result, warnings = client.query_range(source.query, first / 1000, last / 1000,
                                              step / 1000)
        pulled.requests += 1
        pulled.notes.extend(f"Prometheus warns: {w}" for w in warnings)
        for series in result:
            if not isinstance(series, dict) or not isinstance(series.get("values"), list):
                kind = "native histogram series" if isinstance(series, dict) and (
                    "histograms" in series) else "series without float values"
                raise PrometheusError(
                    f"{source.name}: the query returned {kind}, which forecaster cannot store: "
                    "ask for floats (for a histogram, histogram_quantile over rate)")
            labels = tuple(sorted((str(k), str(v)) for k, v in series.get("metric", {}).items()))
            found.setdefault(labels, []).extend(series["values"])
        if len(found) > source.max_series:
            raise PrometheusError(
                f"{source.name}: the query returned {len(found):,} series, more than max_series "
                f"({source.max_series:,}): aggregate it by the service label (for example "
                f"sum by ({source.service_label or 'service'}) (...)), or raise max_series")
    pulled.series = len(found)
    return found


def _services(source: Source, found: dict[Labels, list[list[Any]]],
              pulled: Pull) -> list[tuple[str, list[list[Any]]]]:
    """Each series' service; series without the service label are left out with a warning.

    Raises:
        PrometheusError: several series for a source of one service, or for one service.
    """
    if source.service is not None and len(found) > 1:
        shown = ", ".join(_labels_text(k) for k in list(found)[:_SHOWN_SERIES])
        raise PrometheusError(
            f"{source.name}: the query returned {len(found)} series ({shown}, ...) but names one "
            f"service ({source.service}): aggregate it to one series (sum(...)), or map each "
            "series to its service with service_label")
    parts: list[tuple[str, list[list[Any]]]] = []
    owner: dict[str, Labels] = {}
    unlabelled: list[Labels] = []
    for labels, values in found.items():
        service = source.service_of(dict(labels))
        if service is None:
            unlabelled.append(labels)
            continue
        if service in owner:
            raise PrometheusError(
                f"{source.name}: two series map to service {service}: "
                f"{_labels_text(owner[service])} and {_labels_text(labels)}: aggregate the query "
                f"by {source.service_label} (for example sum by ({source.service_label}) (...)) "
                "so that each service has one series")
        owner[service] = labels
        value = dict(labels).get(source.service_label or "")
        if value and service != value and value not in source.services:
            pulled.notes.append(f"{source.service_label}={value!r} is stored as service "
                                f"{service} (names are {NAME_RULE})")
        parts.append((service, values))
    if unlabelled:
        shown = ", ".join(_labels_text(k) for k in unlabelled[:_SHOWN_SERIES])
        more = (f" and {len(unlabelled) - _SHOWN_SERIES} more"
                if len(unlabelled) > _SHOWN_SERIES else "")
        pulled.warnings.append(
            f"{len(unlabelled)} series without the label {source.service_label} skipped (none "
            f"of their values stored): {shown}{more}")
    return parts


def _values(service: str, values: list[list[Any]], pulled: Pull) -> pl.DataFrame:
    """One series' finite values (``ts`` in epoch ms, ``value``, ``service``); Prometheus
    writes values as text (``"NaN"``, ``"+Inf"``): those not finite are counted, not kept."""
    stamps = np.fromiter((p[0] for p in values), np.float64, len(values))
    numbers = np.array([p[1] for p in values], dtype=np.float64)
    nan = np.isnan(numbers)
    finite = np.isfinite(numbers)
    pulled.nan += int(nan.sum())
    pulled.infinite += int((~finite & ~nan).sum())
    return pl.DataFrame({"ts": np.round(stamps[finite] * 1000).astype(np.int64),
                         "value": numbers[finite]}).with_columns(pl.lit(service).alias("service"))


def _frame(frames: Sequence[pl.DataFrame], source: Source) -> pl.DataFrame:
    """Per-series frames as one points frame, by service and time."""
    schema = {"ts": pl.Int64, "value": pl.Float64, "service": pl.String}
    joined = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    joined = joined.select(pl.col("ts").cast(pl.Datetime("ms")).cast(pl.Datetime("us")),
                           "service", pl.lit(source.metric).alias("metric"), "value")
    if source.unit is not None:
        joined = joined.with_columns(pl.lit(source.unit).alias("unit"))
    return joined.sort("service", "ts")


def ingest_source(store: Store, client: RangeQuery, source: Source, start: datetime,
                  end: datetime, now: datetime, max_errors: int = 20,
                  max_points: int = MAX_POINTS,
                  writers: dict[tuple[str, str], str] | None = None) -> Pull:
    """Pull a source and store its points (one transaction), as a file's points are stored.

    Args:
        writers: Series (service, metric) already written by other sources in the same pull,
            with the source that wrote each; a source that would write one of them is refused
            (two sources of one series would overwrite each other at every pull).

    Raises:
        PrometheusError: nothing of the source was stored; the message starts with its name.
    """
    try:
        frame, pulled = pull(client, source, start, end, max_points)
    except PrometheusError as exc:
        text = str(exc)
        raise PrometheusError(text if text.startswith(f"{source.name}: ")
                              else f"{source.name}: {text}", exc.unreachable) from None
    if writers is not None and frame.height:
        pairs = set(frame.select("service", "metric").unique().iter_rows())
        taken = sorted((pair, writers[pair]) for pair in pairs
                       if writers.get(pair, source.name) != source.name)
        if taken:
            (service, metric), other = taken[0]
            raise PrometheusError(
                f"{source.name}: series {service}:{metric} is already written by source "
                f"{other!r}: two sources of one series overwrite each other at every pull; give "
                "one of them another metric name or service")
        writers.update(dict.fromkeys(pairs, source.name))
    label = f"prometheus:{source.name}"
    pulled.report = (ingest_points_frame(store, frame, now, ReadSpec(max_errors=max_errors),
                                         label=label)
                     if frame.height else IngestReport(source=label))
    return pulled


Job = tuple[Source, datetime, datetime]


def ingest_all(store: Store, jobs: Sequence[Job], conn: Connection, now: datetime, *,
               max_errors: int = 20, contain: bool = False,
               transport: httpx.BaseTransport | None = None) -> list[Pull | PrometheusError]:
    """Pull and store several sources, each over its own range; one that fails does not stop
    the others. A URL that cannot be connected to is not asked again in this call: its other
    sources are refused at once with the same reason.

    Args:
        store: Where the points go.
        jobs: (source, start, end) each.
        conn: Credentials, timeout, and the URL of sources without their own.
        now: The time recorded in the ingest log.
        max_errors: Rejected rows each report lists.
        contain: Also turn unexpected errors (a bug, a full disk) into that source's failure
            instead of raising (the service: a failing source never stops the refresh).
        transport: An httpx transport (tests).

    Returns:
        Per job, in order, what its pull did or why it was refused.
    """
    clients: dict[str, PrometheusClient] = {}
    down: dict[str, str] = {}
    results: list[Pull | PrometheusError] = []
    # (service, metric) -> the source that wrote it in this call: two sources writing one series
    # would overwrite each other at every pull, and forecasts would read whichever came last
    writers: dict[tuple[str, str], str] = {}
    try:
        for source, start, end in jobs:
            url = source.url or conn.url
            if not url:
                results.append(PrometheusError(
                    f"{source.name}: no Prometheus URL: give the source a url, pass --url or "
                    "set prometheus_url"))
                continue
            if url in down:
                results.append(PrometheusError(f"{source.name}: not asked: {down[url]}", True))
                continue
            try:
                client = clients.get(url) or clients.setdefault(
                    url, PrometheusClient(conn.at(url), transport))
                results.append(ingest_source(store, client, source, start, end, now,
                                             max_errors, writers=writers))
            except PrometheusError as exc:
                if exc.unreachable:
                    down[url] = str(exc).removeprefix(f"{source.name}: ")
                results.append(exc)
            except Exception as exc:
                if not contain:
                    raise
                log.error("pull of %s failed: %s", source.name, traceback.format_exc())
                results.append(PrometheusError(
                    f"{source.name}: unexpected {type(exc).__name__}: {exc}"))
    finally:
        for client in clients.values():
            client.close()
    return results


__all__ = ["DEFAULT_MAX_SERIES", "DEFAULT_STEP", "MAX_POINTS", "Connection", "Job",
           "PrometheusClient", "PrometheusError", "Pull", "RangeQuery", "Source", "chunks",
           "connection", "eval_range", "ingest_all", "ingest_source", "pull", "service_name"]

