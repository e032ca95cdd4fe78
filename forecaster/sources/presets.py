"""Ready Prometheus source definitions (presets) and the sources file that lists what to pull.

The sources file is TOML: defaults first, then ``[[preset]]`` tables (a named set of queries,
such as vLLM's) and ``[[source]]`` tables (one PromQL query each)::

    url = "http://prometheus:9090"   # optional: the default Prometheus (else prometheus_url)
    step = "5m"                      # optional: the default step (else 5m)

    [[preset]]
    name = "vllm"
    service_label = "model_name"

    [[source]]
    name = "gateway-p95"
    query = '1000 * histogram_quantile(0.95, sum by (le, app) (rate(http_seconds_bucket[5m])))'
    metric = "latency_p95_ms"
    service_label = "app"
    unit = "ms"

Every error names the file, the entry (``[[source]] #2 (gateway-p95)``) and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from forecaster.errors import ConfigError, InputError
from forecaster.policies import parse_duration
from forecaster.sources.prometheus import DEFAULT_MAX_SERIES, DEFAULT_STEP, Source
from forecaster.wording import format_duration

# -- vLLM ------------------------------------------------------------------------------------
# Metric names checked (2026-11) against vLLM's own sources and documentation:
# - docs/design/metrics.md (vllm-project/vllm, main): the V1 engine exposes
#   vllm:e2e_request_latency_seconds and vllm:time_to_first_token_seconds (histograms),
#   vllm:request_success_total ("number of finished requests, by finish reason"),
#   vllm:prompt_tokens_total and vllm:generation_tokens_total (counters),
#   vllm:num_requests_waiting and vllm:kv_cache_usage_perc ("fraction of used KV cache blocks
#   (0-1)") (gauges), every one labelled model_name.
# - vllm/v1/metrics/loggers.py (vllm-project/vllm, commit a6f0308c), PrometheusStatLogger: the
#   same names, with labels model_name and engine (one series per engine under data
#   parallelism, hence the sums by the service label below); vllm:request_success has the label
#   finished_reason, one series per FinishReason made up front; buckets of e2e latency 0.3 s to
#   7680 s and of TTFT 1 ms to 2560 s. vllm/v1/engine/__init__.py: FINISH_REASON_STRINGS =
#   ("stop", "length", "abort", "error", "repetition"); "error" is a retryable internal error,
#   always answered 500; "abort" is a request aborted (by the client or the server).
# - The rename: loggers.py at 0.11 says of vllm:gpu_cache_usage_perc "Deprecated in 0.9.2 -
#   Renamed as vllm:kv_cache_usage_perc ... TODO: remove in 0.12.0" (both exist from 0.9.2 to
#   0.11, only the old one before, only the new one from 0.12).
# - The V0 engine (vllm/engine/metrics.py, "Production Metrics" pages of docs.vllm.ai v0.4 to
#   v0.8): vllm:gpu_cache_usage_perc ("1 means 100 percent usage"), the same histograms and
#   counters, label model_name only, finished_reason "stop", "length" or "abort", a series
#   appearing only once a request finished that way.
# So: latency from the histograms' buckets (histogram_quantile over rate, summed across engines,
# never averaged), seconds times 1000; the error share is aborted and errored requests over all
# finished ones, 0 (not absent) while neither series exists; KV-cache use is the newer gauge, or
# the older one where only it exists, in percent.
VLLM_UNITS: dict[str, str | None] = {
    "latency_p50_ms": "ms", "latency_p95_ms": "ms", "latency_p99_ms": "ms",
    "ttft_p50_ms": "ms", "ttft_p95_ms": "ms", "ttft_p99_ms": "ms",
    "error_rate": "1", "requests_per_s": "1/s", "tokens_per_s": "1/s",
    "requests_waiting": None, "kv_cache_usage_percent": "%",
}
VLLM_ERROR_REASONS = ("abort", "error")
MIN_WINDOW = timedelta(minutes=5)  # rate() needs two samples in its window: 5m covers scrapes
# every 15s to 2m30s
_MATCHERS = re.compile(r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*'
                       r'(,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*)*')
_REASON = re.compile(r"[a-z_]{1,40}")


def vllm_queries(service_label: str | None, window: timedelta, matchers: str = "",
                 error_reasons: Sequence[str] = VLLM_ERROR_REASONS) -> dict[str, str]:
    """The PromQL of each vLLM metric, one series per value of ``service_label`` (one series
    in all when None).

    Args:
        service_label: The label naming the service (``model_name``, or a label your scrape
            config adds such as ``service``).
        window: The rate window.
        matchers: Label matchers added to every selector (``job="vllm"``).
        error_reasons: The ``finished_reason`` values that count as errors.
    """
    by = f"sum by ({service_label})" if service_label else "sum"
    avg = f"avg by ({service_label})" if service_label else "avg"
    le = f"sum by (le, {service_label})" if service_label else "sum by (le)"
    w = format_duration(window)

    def sel(*more: str) -> str:
        inside = ",".join(m for m in (matchers.strip(), *more) if m)
        return f"{{{inside}}}" if inside else ""

    def quantile(q: float, histogram: str) -> str:
        return f"1000 * histogram_quantile({q}, {le} (rate({histogram}_bucket{sel()}[{w}])))"

    finished = f"{by} (rate(vllm:request_success_total{sel()}[{w}]))"
    reasons = 'finished_reason=~"' + "|".join(error_reasons) + '"'
    failed = f"{by} (rate(vllm:request_success_total{sel(reasons)}[{w}]))"
    queries = {}
    for q, tag in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        queries[f"latency_{tag}_ms"] = quantile(q, "vllm:e2e_request_latency_seconds")
        queries[f"ttft_{tag}_ms"] = quantile(q, "vllm:time_to_first_token_seconds")
    # `or 0 * finished`: while no request failed, V0 has no series for the reasons at all
    queries["error_rate"] = f"({failed} or 0 * {finished}) / {finished}"
    queries["requests_per_s"] = finished
    queries["tokens_per_s"] = (f"{by} (rate(vllm:prompt_tokens_total{sel()}[{w}])) + "
                               f"{by} (rate(vllm:generation_tokens_total{sel()}[{w}]))")
    queries["requests_waiting"] = f"{by} (vllm:num_requests_waiting{sel()})"
    queries["kv_cache_usage_percent"] = (f"100 * ({avg} (vllm:kv_cache_usage_perc{sel()}) or "
                                         f"{avg} (vllm:gpu_cache_usage_perc{sel()}))")
    return {name: queries[name] for name in VLLM_UNITS}


def vllm(service_label: str | None = None, *, service: str | None = None,
         step: timedelta = DEFAULT_STEP, window: timedelta | None = None, matchers: str = "",
         metrics: Sequence[str] | None = None,
         error_reasons: Sequence[str] = VLLM_ERROR_REASONS, prefix: str = "vllm",
         url: str | None = None, services: Mapping[str, str] | None = None,
         max_series: int = DEFAULT_MAX_SERIES) -> list[Source]:
    """vLLM's sources: p50/p95/p99 end-to-end latency and time to first token (ms), error
    share, requests/s, tokens/s, waiting requests and KV-cache use (%), named like the fleet's
    metrics (``latency_p95_ms``, ``ttft_p95_ms``, ``error_rate``, ...).

    Args:
        service_label: The label naming each service (vLLM's own is ``model_name``); or
        service: The one service, for a Prometheus (or ``matchers``) of one vLLM.
        step: Time between points.
        window: The rate window; default the step, at least 5m.
        matchers: Label matchers added to every selector, such as ``job="vllm"``.
        metrics: Which of the preset's metrics to pull (default all).
        error_reasons: ``finished_reason`` values counted as errors (default abort, error).
        prefix: Source names are ``{prefix}:{metric}``.
        url: The Prometheus, when not the default one.
        services: Label value -> service name.
        max_series: Refuse a query returning more series.

    Raises:
        InputError: an unknown metric or reason, bad matchers, or a bad source field.
    """
    chosen = list(metrics) if metrics is not None else list(VLLM_UNITS)
    unknown = [m for m in chosen if m not in VLLM_UNITS]
    if unknown or not chosen:
        raise InputError(f"metrics: {', '.join(map(repr, unknown)) or 'none'}: the vllm preset "
                         f"has {', '.join(VLLM_UNITS)}")
    bad = [r for r in error_reasons if not (isinstance(r, str) and _REASON.fullmatch(r))]
    if bad or not error_reasons:
        raise InputError(f"error_reasons: {bad or 'none'}: give finished_reason values such as "
                         "abort and error")
    if matchers.strip() and not _MATCHERS.fullmatch(matchers):
        raise InputError(f'matchers: {matchers!r} is not label matchers such as job="vllm", '
                         'namespace=~"prod-.*" (comma-separated, values in double quotes)')
    if service_label is not None and service is not None:
        raise InputError("give service_label or service, not both")
    queries = vllm_queries(service_label if service is None else None,
                           window or max(step, MIN_WINDOW), matchers, error_reasons)
    return [Source(name=f"{prefix}:{metric}", query=queries[metric], metric=metric,
                   service_label=service_label, service=service, step=step,
                   unit=VLLM_UNITS[metric], url=url,
                   services=MappingProxyType(dict(services or {})), max_series=max_series)
            for metric in chosen]


PRESETS: dict[str, Callable[..., list[Source]]] = {"vllm": vllm}


def preset(name: str, **options: Any) -> list[Source]:
    """The sources of preset ``name`` with ``options`` (see :func:`vllm`).

    Raises:
        InputError: no such preset, or a bad option.
    """
    if name not in PRESETS:
        raise InputError(f"name: {name!r} is not a known preset; known: {', '.join(PRESETS)}")
    options.setdefault("prefix", name)
    return PRESETS[name](**options)


# -- the sources file ------------------------------------------------------------------------

_TOP_KEYS = ("url", "step", "max_series", "preset", "source")
_SOURCE_KEYS = ("name", "query", "metric", "service_label", "service", "step", "unit", "url",
                "services", "max_series")
_PRESET_KEYS = ("name", "service_label", "service", "step", "window", "matchers", "metrics",
                "error_reasons", "prefix", "url", "services", "max_series")


def load_sources(path: Path) -> list[Source]:
    """The sources a TOML file lists (see the module's docstring).

    Raises:
        ConfigError: the file cannot be read or parsed, or an entry is wrong; the message names
            the file, the entry and the field.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read sources file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"sources file {path}: not UTF-8 text ({exc.reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sources file {path}: {exc}") from None
    return sources_from_toml(data, str(path))


def sources_from_toml(data: Mapping[str, Any], origin: str) -> list[Source]:
    """The sources of a parsed sources file; ``origin`` names it in messages.

    Raises:
        ConfigError: an unknown key, a wrong value, or two sources of one name.
    """
    _known(data, _TOP_KEYS, origin)
    defaults = {"url": _text(data, "url", origin), "step": _duration(data, "step", origin),
                "max_series": _integer(data, "max_series", origin)}
    defaults = {k: v for k, v in defaults.items() if v is not None}
    sources: list[Source] = []
    where_of: dict[str, str] = {}
    for kind, parse in (("preset", _preset_entry), ("source", _source_entry)):
        entries = data.get(kind, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{origin}: {kind} must be [[{kind}]] tables")
        for number, entry in enumerate(entries, 1):
            label = entry.get("name") if isinstance(entry.get("name"), str) else None
            where = f"{origin}: [[{kind}]] #{number}" + (f" ({label})" if label else "")
            try:
                made = parse(entry, where, defaults)
            except InputError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            for source in made:
                if source.name in where_of:
                    raise ConfigError(
                        f"{where}: source name {source.name!r} is also the name of a source of "
                        f"{where_of[source.name].removeprefix(origin + ': ')}; names must be "
                        "unique (give a [[preset]] its own prefix)")
                where_of[source.name] = where
            sources.extend(made)
    if not sources:
        raise ConfigError(f"{origin}: no [[preset]] or [[source]] table: nothing to pull")
    return sources


def _source_entry(entry: Mapping[str, Any], where: str,
                  defaults: Mapping[str, Any]) -> list[Source]:
    _known(entry, _SOURCE_KEYS, where)
    metric = _text(entry, "metric", where, required=True)
    return [Source(
        name=_text(entry, "name", where) or str(metric),
        query=str(_text(entry, "query", where, required=True)), metric=str(metric),
        service_label=_text(entry, "service_label", where),
        service=_text(entry, "service", where),
        step=_duration(entry, "step", where) or defaults.get("step", DEFAULT_STEP),
        unit=_text(entry, "unit", where), url=_text(entry, "url", where) or defaults.get("url"),
        services=_names(entry, where),
        max_series=_integer(entry, "max_series", where) or defaults.get(
            "max_series", DEFAULT_MAX_SERIES))]


def _preset_entry(entry: Mapping[str, Any], where: str,
                  defaults: Mapping[str, Any]) -> list[Source]:
    _known(entry, _PRESET_KEYS, where)
    options: dict[str, Any] = {
        "service_label": _text(entry, "service_label", where),
        "service": _text(entry, "service", where),
        "step": _duration(entry, "step", where) or defaults.get("step", DEFAULT_STEP),
        "window": _duration(entry, "window", where),
        "matchers": _text(entry, "matchers", where) or "",
        "metrics": _texts(entry, "metrics", where),
        "error_reasons": _texts(entry, "error_reasons", where) or VLLM_ERROR_REASONS,
        "prefix": _text(entry, "prefix", where),
        "url": _text(entry, "url", where) or defaults.get("url"),
        "services": _names(entry, where),
        "max_series": _integer(entry, "max_series", where) or defaults.get(
            "max_series", DEFAULT_MAX_SERIES),
    }
    return preset(str(_text(entry, "name", where, required=True)),
                  **{k: v for k, v in options.items() if v is not None})


def _known(table: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    unknown = [k for k in table if k not in keys]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(keys)}")


def _text(table: Mapping[str, Any], key: str, where: str,
          required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key} is missing")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} = {value!r} must be a quoted string")
    return value


def _texts(table: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} = {value!r} must be a list of quoted strings")
    return value


def _duration(table: Mapping[str, Any], key: str, where: str) -> timedelta | None:
    value = table.get(key)
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None


def _integer(table: Mapping[str, Any], key: str, where: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key} = {value!r} must be an integer, 1 or more")
    return value


def _names(table: Mapping[str, Any], where: str) -> Mapping[str, str]:
    value = table.get("services", {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f'{where}: services must be a table of label value = "service name", '
                          'such as services = { "meta-llama/Llama-3.1-8B-Instruct" = "chat" }')
    return MappingProxyType(dict(value))


__all__ = ["MIN_WINDOW", "PRESETS", "VLLM_ERROR_REASONS", "VLLM_UNITS", "load_sources", "preset",
           "sources_from_toml", "vllm", "vllm_queries"]
