"""Thin commands over the modules; the clock and the environment are read here, once.

Only what parsing needs is imported at the top, so that ``forecaster --help`` and the read
commands start fast: each command imports its own modules (DuckDB and polars for reads, the
forecasting and anomaly stack only for refresh, backtest and the demo).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from forecaster.clock import to_utc_naive, utcnow
from forecaster.errors import (
    ConfigError,
    ForecasterError,
    InputError,
    SchemaVersionError,
    StoreLockedError,
)
from forecaster.policies import parse_duration

if TYPE_CHECKING:
    import polars as pl

    from forecaster.client import RemoteStore
    from forecaster.config import Settings
    from forecaster.ingest_report import IngestReport
    from forecaster.policies import Policy
    from forecaster.report.week import Week
    from forecaster.sources.files import ReadSpec
    from forecaster.sources.prometheus import Connection, Job
    from forecaster.store import Store
    from forecaster.store.reads import StoreReads

EXIT_OK = 0
EXIT_REJECTED = 1  # some rows or files were refused; the rest was stored
EXIT_USAGE = 2
EXIT_DATABASE = 3  # the database is held by another process, too new, or not the demo's
EXIT_RUN_FAILED = 4  # a refresh ran and failed; nothing was published
EXIT_ERROR = 5  # an unexpected error (a bug or the machine); FORECASTER_DEBUG=1 shows it
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_BROKEN_PIPE = 141  # the reader of our output went away, as shells report SIGPIPE

# The keys of forecaster.sources.files.TIME_UNITS, spelled here so that parsing needs no polars
# (tests/test_cli.py keeps the two equal).
TIME_UNIT_NAMES = ("s", "ms", "us", "ns")
# The keys of forecaster.sources.presets.PRESETS, spelled here so that parsing needs no httpx
# (tests/test_prometheus_pull.py keeps the two equal).
PRESET_NAMES = ("vllm",)
DEBUG_VARIABLE = "FORECASTER_DEBUG"


def _column_pair(text: str) -> tuple[str, str]:
    target, sep, source = text.partition("=")
    if not sep or not target or not source:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=SOURCE_COLUMN")
    return target, source


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return to_utc_naive(value)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-26T08:00:00Z") from None


def _week(text: str) -> Week:
    from forecaster.report.week import parse_week

    try:
        return parse_week(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number such as 1.3 "
                                         "(30% more demand)")
    return value


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _policies(path: Path | None, settings: Settings) -> tuple[Policy, ...]:
    from forecaster.policies import load_policies

    chosen = path or (Path(settings.policies) if settings.policies else None)
    return load_policies(chosen)


def frame_json(frame: pl.DataFrame) -> str:
    """A frame as a JSON list of objects, times in ISO 8601 UTC with ``Z`` as the API writes."""
    import json

    import polars as pl

    from forecaster.clock import json_default

    # NaN is no JSON: a float that is not a number is written as null, as the API writes it
    rows = frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None)).to_dicts()
    return json.dumps(rows, indent=2, default=json_default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecaster",
        description="Predictive maintenance for LLM services: when will each need an "
                    "intervention, how sure, and by when to act.",
        epilog="Exit status: 0 done, 1 some rows or files rejected (the rest stored), 2 bad "
               "usage or settings, 3 database held by another process, too new, or not the "
               "demo's to rebuild, 4 the refresh ran and failed, 5 unexpected error (set "
               f"{DEBUG_VARIABLE}=1 for the traceback).")
    parser.add_argument("--db", type=Path, help="DuckDB file (default: FORECASTER_DB or "
                        "./forecaster.duckdb; the demo's own is .demo/demo.duckdb)")
    parser.add_argument("--config", type=Path, help="settings TOML file")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="load metric points or request logs")
    kinds = ingest.add_subparsers(dest="kind", required=True)
    for kind, text in (("points", "metric points: ts, service, metric, value[, unit]"),
                       ("requests", "request logs: ts, service, latency_ms, ttft_ms, status, "
                                    "error, prompt_tokens, completion_tokens, quality_score, "
                                    "feedback, request_id (any of them)")):
        p = kinds.add_parser(kind, help=text, description=text)
        p.add_argument("files", nargs="+", type=Path)
        p.add_argument("--strict", action="store_true",
                       help="store nothing from a file that has a rejected row")
        p.add_argument("--format", choices=("csv", "parquet", "json"),
                       help="file format (default: from the file name)")
        p.add_argument("--column", action="append", type=_column_pair, default=[],
                       metavar="NAME=SOURCE", help="read column NAME from SOURCE (repeatable)")
        p.add_argument("--service", help="the service of every row, for files without one")
        p.add_argument("--time-unit", choices=TIME_UNIT_NAMES,
                       help="times are epoch numbers in this unit")
        p.add_argument("--ignore-extra", action="store_true",
                       help="skip columns that are not understood instead of refusing the file")
        p.add_argument("--errors", type=Path, metavar="CSV",
                       help="write every rejected row (file, row, field, message) to this CSV")
    text = ("metric points from a Prometheus server's query_range: one PromQL query (--query, "
            "--metric), a preset (--preset vllm --service-label model_name) or a sources TOML "
            "file (--sources); each series returned is one service's series")
    prom = kinds.add_parser("prometheus", help=text, description=text)
    what = prom.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", metavar="PROMQL", help="the PromQL query (needs --metric)")
    what.add_argument("--preset", choices=PRESET_NAMES, help="ready queries for a server")
    what.add_argument("--sources", type=Path, metavar="FILE",
                      help="a sources TOML file ([[preset]] and [[source]] tables)")
    prom.add_argument("--url", help="Prometheus base URL (default: setting `prometheus_url`)")
    prom.add_argument("--metric", help="the metric each series becomes, such as latency_p95_ms")
    who = prom.add_mutually_exclusive_group()
    who.add_argument("--service-label", metavar="LABEL",
                     help="the label naming each series' service, such as model_name")
    who.add_argument("--service", help="the one service of a query returning one series")
    prom.add_argument("--start", type=_timestamp, help="from (ISO 8601; default: --end less "
                      "setting `prometheus_lookback`, 7d)")
    prom.add_argument("--end", type=_timestamp, help="to (ISO 8601; default: now)")
    prom.add_argument("--step", type=_duration, help="time between points (default 5m)")
    prom.add_argument("--unit", help="unit stored with the points of --query, such as ms")
    prom.add_argument("--max-series", type=int, metavar="N", help="refuse a query returning "
                      "more series (default 1000)")

    refresh = commands.add_parser("refresh", help="forecast, compute time to intervention and "
                                  "publish one run")
    refresh.add_argument("--now", type=_timestamp, help="the time to answer for (ISO 8601; "
                         "default: the current time); later points are ignored")
    refresh.add_argument("--policies", type=Path, help="policy TOML file (default: setting "
                         "`policies`)")
    refresh.add_argument("--reselect", action="store_true",
                         help="re-make every model choice now")

    answers = commands.add_parser(
        "interventions", help="the latest published answers, most urgent first (through the "
        "server when a forecaster server holds the file)")
    answers.add_argument("--json", action="store_true", help="print JSON")
    answers.add_argument("--all", action="store_true", help="list the series that are ok too")
    answers.add_argument("--by-service", action="store_true",
                         help="one answer per service: its most urgent series")

    found = commands.add_parser("anomalies", help="anomalies the latest published run found, "
                                "newest first (through the server when one holds the file)")
    found.add_argument("--since", type=_timestamp, help="only those at or after this time")
    found.add_argument("--service", help="only this service's")
    found.add_argument("--precursors", action="store_true",
                       help="only precursors (corroborated by another kind of metric)")
    found.add_argument("--json", action="store_true", help="print JSON")

    back = commands.add_parser("backtest", help="rolling-origin accuracy of time to intervention "
                               "over stored history, against predict_linear and other baselines")
    back.add_argument("--start", type=_timestamp, help="first cut-off (default: 7 days after "
                      "the first point)")
    back.add_argument("--end", type=_timestamp, help="last cut-off (default: the last point "
                      "minus the longest horizon)")
    back.add_argument("--every", type=_duration, default=timedelta(hours=12),
                      help="time between cut-offs (default 12h)")
    back.add_argument("--policies", type=Path, help="policy TOML file (default: setting "
                      "`policies`)")
    back.add_argument("--json", action="store_true", help="print JSON")

    rep = commands.add_parser(
        "report", help="write the weekly capacity-planning report (HTML and JSON) of a week "
        "from the stored runs, and keep it in the database",
        description="Write the weekly capacity-planning report: top risks, headroom per service, "
        "charts of the series that need something, what changed, how right past estimates "
        "were, anomalies and events, what-ifs. One self-contained HTML file (opens with no "
        "network) and a JSON file of the same figures.")
    rep.add_argument("--week", type=_week, help="ISO week, for example 2026-W48 (default: the "
                     "week of the newest published run)")
    rep.add_argument("--out", type=Path, default=Path("reports"),
                     help="folder to write to (default ./reports)")
    rep.add_argument("--what-if", type=_factor, action="append", dest="what_if",
                     metavar="FACTOR", help="demand multiplier for the what-if table; repeat "
                     "for several (default: setting `report_what_if`)")
    rep.add_argument("--policies", type=Path, help="policy TOML file (default: setting "
                     "`policies`)")

    commands.add_parser("summary", help="per-service summary of what is stored")
    commands.add_parser("migrate", help="create or upgrade the database schema")

    gen = commands.add_parser("fleet", help="generate the seeded sample fleet")
    gen.add_argument("--out", type=Path, default=Path("data/fleet"))
    gen.add_argument("--seed", type=int, help="default: the seed of the shipped data")
    gen.add_argument("--days", type=int, help="days of history (default 28)")
    gen.add_argument("--future-days", type=int, help="days of future truth (default 14)")

    serve = commands.add_parser("serve", help="run the HTTP API with the refresh scheduler")
    serve.add_argument("--host", help="address to bind (default: setting `host`, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: setting `port`, 8000)")
    serve.add_argument("--policies", type=Path, help="policy TOML file (default: setting "
                       "`policies`); read again by every refresh")

    demo = commands.add_parser(
        "demo", help="build the demo database and show it",
        description="Build the demo database from the sample fleet, refresh once and show the "
                    "answers. It goes to .demo/demo.duckdb unless --db names another file; an "
                    "existing file is rebuilt only if the demo made it and no other process "
                    "holds it (FORECASTER_DB is never used: it names your own data).")
    demo.add_argument("--data", type=Path, default=Path("data"))
    demo.add_argument("--now", type=_timestamp, default=None,
                      help="answer as of this time (default: the end of the sample data)")
    demo.add_argument("--serve", action="store_true",
                      help="then serve the demo database (API and scheduler) until stopped")
    return parser


def _print_reports(results: Sequence[IngestReport | InputError], out: TextIO,
                   err: TextIO) -> int:
    status = EXIT_OK
    stored = updated = duplicates = rejected = 0
    for result in results:
        if isinstance(result, InputError):
            print(f"refused: {result}", file=err)
            status = EXIT_REJECTED
            continue
        print(result.summary(), file=out)
        for error in result.errors:
            print(f"  rejected: {error}", file=err)
        if result.rejected > len(result.errors):
            print(f"  ... and {result.rejected - len(result.errors)} more rejected rows "
                  "(--errors FILE lists them all)", file=err)
        stored += result.stored
        updated += result.updated
        duplicates += result.duplicates
        rejected += result.rejected
        if result.rejected:
            status = EXIT_REJECTED
    if len(results) > 1:
        print(f"total: {stored} stored, {updated} updated, {duplicates} duplicate, "
              f"{rejected} rejected", file=out)
    return status


def _write_errors(store: Store, args: argparse.Namespace, spec: ReadSpec,
                  results: Sequence[IngestReport | InputError], now: datetime) -> None:
    import csv

    from forecaster.ingest_report import IngestReport
    from forecaster.sources.files import rejects_of_file

    with args.errors.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "row", "field", "message"])
        for path, result in zip(args.files, results, strict=True):
            if isinstance(result, IngestReport) and result.rejected:
                frame = rejects_of_file(store, path, args.kind, spec, now)
                for row in frame.iter_rows():
                    writer.writerow([str(path), *row])


def _prometheus_plan(args: argparse.Namespace, settings: Settings,
                     now: datetime) -> tuple[list[Job], Connection]:
    """What `ingest prometheus` pulls: (source, start, end) each, and how to reach Prometheus.

    Raises:
        InputError: flags that do not fit together or a bad source; ConfigError: a bad file.
    """
    from forecaster.sources import presets, prometheus

    end = args.end or now
    start = args.start or end - settings.prometheus_lookback
    if start >= end:
        raise InputError(f"--start {start:%Y-%m-%dT%H:%M:%SZ} must come before --end "
                         f"{end:%Y-%m-%dT%H:%M:%SZ}")
    if args.max_series is not None and args.max_series < 1:
        raise InputError(f"--max-series {args.max_series} must be 1 or more")
    given = [f for f, v in (("--metric", args.metric), ("--service", args.service),
                            ("--service-label", args.service_label), ("--unit", args.unit),
                            ("--step", args.step), ("--max-series", args.max_series))
             if v is not None]
    step = args.step or prometheus.DEFAULT_STEP
    max_series = args.max_series or prometheus.DEFAULT_MAX_SERIES
    try:
        if args.sources is not None:
            if given:
                raise InputError(f"{', '.join(given)}: the sources file gives these per source")
            sources = presets.load_sources(args.sources)
        elif args.preset is not None:
            extra = [f for f in given if f in ("--metric", "--unit")]
            if extra or (args.service_label is None and args.service is None):
                raise InputError(f"--preset {args.preset} needs --service-label LABEL (or "
                                 "--service NAME) and takes no --metric or --unit")
            sources = presets.preset(args.preset, service_label=args.service_label,
                                     service=args.service, step=step, max_series=max_series)
        else:
            if args.metric is None or (args.service_label is None and args.service is None):
                raise InputError("--query needs --metric NAME and --service-label LABEL (or "
                                 "--service NAME)")
            sources = [prometheus.Source(
                name=args.metric, query=args.query, metric=args.metric,
                service_label=args.service_label, service=args.service, step=step,
                unit=args.unit, max_series=max_series)]
    except InputError as exc:
        raise InputError(f"ingest prometheus: {exc}") from None
    conn = prometheus.connection(settings, args.url)
    if not conn.url and any(s.url is None for s in sources):
        raise InputError("ingest prometheus: no Prometheus URL: pass --url or set "
                         "prometheus_url (or give each source of the file its url)")
    return [(s, start, end) for s in sources], conn


def _ingest_prometheus(store: Store, settings: Settings, plan: tuple[list[Job], Connection],
                       now: datetime, out: TextIO, err: TextIO) -> int:
    from forecaster.sources.prometheus import PrometheusError, ingest_all

    jobs, conn = plan
    status = EXIT_OK
    results = ingest_all(store, jobs, conn, now, max_errors=settings.max_reported_errors)
    for result in results:
        if isinstance(result, PrometheusError):
            print(f"refused: {result}", file=err)
            status = EXIT_REJECTED
            continue
        print(result.summary(), file=out)
        for note in result.notes:
            print(f"  note: {note}", file=err)
        for warning in result.warnings:
            print(f"  warning: {warning}", file=err)
        for error in result.report.errors if result.report else []:
            print(f"  rejected: {error}", file=err)
        if not result.ok:
            status = EXIT_REJECTED
    return status


def _backtest(store: Store, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    import json

    from forecaster import backtest
    from forecaster.summary import render_backtest

    series, events = backtest.series_of(store, _policies(args.policies, settings))
    if not series:
        print("No stored series has a policy: nothing to backtest.", file=out)
        return EXIT_OK
    first = min(s.ts[0] for s in series).astype("datetime64[us]").item()
    last = max(s.ts[-1] for s in series).astype("datetime64[us]").item()
    start = args.start or first + timedelta(days=7)
    end = args.end or last - max(s.policy.horizon for s in series)
    if end < start:
        raise InputError(f"no cut-off fits: the last one ({end:%Y-%m-%d %H:%M}) comes before the "
                         f"first ({start:%Y-%m-%d %H:%M}); the history must cover 7 days plus "
                         "a horizon, or pass --start and --end")
    cutoffs = []
    while start <= end:
        cutoffs.append(start)
        start += args.every
    figures = backtest.round_figures(backtest.score(backtest.run(series, cutoffs, settings,
                                                                 events)))
    if args.json:
        print(json.dumps(figures, indent=2), file=out)
        return EXIT_OK
    print(f"{len(cutoffs)} cut-offs from {cutoffs[0]:%Y-%m-%d %H:%M} to "
          f"{cutoffs[-1]:%Y-%m-%d %H:%M} UTC, {len(series)} series", file=out)
    print(render_backtest(figures), file=out, end="")
    return EXIT_OK


def _report(store: Store, settings: Settings, args: argparse.Namespace, now: datetime,
            out: TextIO) -> int:
    from forecaster.config import demand_factors
    from forecaster.report.gather import keep, make, write

    factors = tuple(args.what_if) if args.what_if else demand_factors(settings.report_what_if)
    made = make(store, _policies(args.policies, settings), args.week, now, factors,
                settings.seed)
    keep(store, made)
    page = write(made, args.out)
    report = made.report
    print(f"week {report.week}: run {report.run_id} as of {report.as_of:%Y-%m-%d %H:%M} UTC, "
          f"{len(report.risks)} risks, {len(report.plans)} services", file=out)
    print(f"wrote {page}\nwrote {page.with_suffix('.json')}", file=out)
    return EXIT_OK


def _remote_for(settings: Settings, refused: StoreLockedError,
                err: TextIO) -> RemoteStore:
    """The server that holds ``settings.db``, to read through its API.

    Raises:
        StoreLockedError: ``refused`` itself, when no live forecaster server holds the file.
    """
    from forecaster.store import lock

    owner = lock.serving_owner(settings.db)
    if owner is None or owner.url is None:
        raise refused
    from forecaster.client import RemoteStore

    # the first configured token: a read token when there is one, else a write token
    token = next(iter(settings.tokens()), None)
    print(f"forecaster: {settings.db} is held by the forecaster server at {owner.url} "
          f"(process {owner.pid}); reading through its HTTP API", file=err)
    return RemoteStore(owner.url, token=token)


def _read(settings: Settings, now: datetime, err: TextIO,
          read: Callable[[StoreReads], int]) -> int:
    """Run a read command on the file, or through the server that holds it."""
    from forecaster.store import Store

    try:
        store = Store.open(settings.db, now=now, settings=settings)
    except StoreLockedError as refused:
        import httpx

        from forecaster.client import RemoteError

        with _remote_for(settings, refused, err) as remote:
            try:
                return read(remote)
            except (RemoteError, httpx.HTTPError) as exc:
                raise StoreLockedError(f"{refused} Reading through it failed: {exc}"
                                       + (" (set read_tokens or FORECASTER_READ_TOKENS to a "
                                          "token it accepts)" if isinstance(exc, RemoteError)
                                          and exc.status == 401 else "")) from None
    with store:
        return read(store)


def _interventions(args: argparse.Namespace, now: datetime,
                   out: TextIO) -> Callable[[StoreReads], int]:
    def read(store: StoreReads) -> int:
        from forecaster.summary import render_interventions, service_answers

        frame = store.interventions()
        if args.by_service:
            frame = service_answers(frame)
        if args.json:
            print(frame_json(frame), file=out)
            return EXIT_OK
        run = store.run()
        as_of = run["as_of"] if run else now
        print(render_interventions(frame, run, as_of, show_all=args.all), file=out, end="")
        return EXIT_OK

    return read


def _anomalies(args: argparse.Namespace, out: TextIO) -> Callable[[StoreReads], int]:
    def read(store: StoreReads) -> int:
        import polars as pl

        from forecaster.summary import render_anomalies

        frame = store.anomalies(since=args.since, service=args.service)
        if args.precursors:
            frame = frame.filter(pl.col("precursor"))
        if args.json:
            print(frame_json(frame), file=out)
            return EXIT_OK
        print(render_anomalies(frame, store.run()), file=out, end="")
        return EXIT_OK

    return read


def _demo(settings: Settings, args: argparse.Namespace, clock: Callable[[], datetime],
          out: TextIO, err: TextIO) -> int:
    from forecaster.demo import DEMO_DB, DemoRunFailed, run_demo, try_hint
    from forecaster.store.lock import ForeignDatabaseError

    # Only an explicit --db moves the demo: `db` from the environment or a settings file names
    # the user's own database, which the demo must never rebuild.
    settings = settings.replace(db=args.db or DEMO_DB)
    try:
        run_demo(settings, args.data, clock, out, as_of=args.now)
    except ForeignDatabaseError as exc:
        print(f"forecaster: {exc}", file=err)
        return EXIT_DATABASE
    except DemoRunFailed as exc:
        print(f"forecaster: refresh failed: {exc}", file=err)
        return EXIT_RUN_FAILED
    if not args.serve:
        print(try_hint(settings.db), file=out)
        return EXIT_OK
    import json

    from forecaster.server import serve

    settings = settings.replace(policies=str(args.data / "policies.toml"))
    url = f"http://{settings.host}:{settings.port}"
    end = json.loads((args.data / "fleet" / "truth.json").read_text())["end"]
    print(f"\nServing the demo at {url} with the scheduler refreshing every "
          f"{settings.refresh_every} (Ctrl-C stops it). Try:\n"
          f"  curl {url}/v1/interventions\n"
          f"  curl '{url}/v1/interventions?by_service=true&min_p_breach=0.5'\n"
          f"  curl {url}/v1/services/rag-search\n"
          f"  curl {url}/v1/series/code-assist:latency_p95_ms/forecast\n"
          f"  curl '{url}/v1/series/embed-batch:requests_per_s/history?points=100'\n"
          f"  curl {url}/v1/anomalies\n"
          f"  curl {url}/metrics\n"
          f"  open {url}/docs\n"
          f"The server answers for the current time; the sample data ends at {end} UTC.\n"
          f"{try_hint(settings.db, url)}", file=out, flush=True)
    return serve(settings, clock, err)


def run(argv: Sequence[str], environ: dict[str, str], clock: Callable[[], datetime],
        out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command.

    Args:
        argv: Arguments without the program name.
        environ: The environment (settings are read from ``FORECASTER_*``).
        clock: The current time (UTC, naive); read once for the command, and again by runs to
            record when they finished.
        out: Where output goes (default standard output).
        err: Where messages go (default standard error).

    Returns:
        The exit status.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    from forecaster.config import load_settings

    settings = load_settings(environ, args.config, {"db": args.db})
    now = clock()
    if args.command == "fleet":
        from forecaster import fleet

        chosen = {k: v for k, v in (("seed", args.seed), ("days", args.days),
                                    ("future_days", args.future_days)) if v is not None}
        for path in fleet.write(fleet.generate(**chosen), args.out):
            print(f"wrote {path}", file=out)
        return EXIT_OK
    if args.command == "demo":
        return _demo(settings, args, clock, out, err)
    if args.command == "serve":
        from forecaster.server import serve

        settings = settings.replace(**{k: v for k, v in (
            ("host", args.host), ("port", args.port),
            ("policies", str(args.policies) if args.policies else None)) if v is not None})
        return serve(settings, clock, err)
    if args.command == "interventions":
        return _read(settings, now, err, _interventions(args, now, out))
    if args.command == "anomalies":
        return _read(settings, now, err, _anomalies(args, out))
    from forecaster.store import LATEST_VERSION, Store

    # checked before the database is opened: a wrong flag or file changes nothing
    pulls = (_prometheus_plan(args, settings, now)
             if args.command == "ingest" and args.kind == "prometheus" else None)
    with Store.open(settings.db, now=now, settings=settings) as store:
        if args.command == "migrate":
            print(f"{settings.db}: schema version {store.schema_version} "
                  f"(latest {LATEST_VERSION})", file=out)
            return EXIT_OK
        if args.command == "summary":
            from forecaster.summary import render_summary

            print(render_summary(store.series_summary()), file=out)
            return EXIT_OK
        if args.command == "refresh":
            from forecaster.pipeline import run_once

            policies = _policies(args.policies, settings)
            result = run_once(store, settings, policies, args.now or now,
                              reselect=args.reselect, clock=clock)
            print(result.summary(), file=out)
            if result.status != "published":
                print(f"forecaster: refresh failed: {result.error}", file=err)
                return EXIT_RUN_FAILED
            return EXIT_OK
        if args.command == "backtest":
            return _backtest(store, settings, args, out)
        if args.command == "report":
            return _report(store, settings, args, now, out)
        if pulls is not None:
            return _ingest_prometheus(store, settings, pulls, now, out, err)
        from forecaster.sources.files import ReadSpec, ingest_files

        spec = ReadSpec(columns=dict(args.column), service=args.service,
                        time_unit=args.time_unit, fmt=args.format, strict=args.strict,
                        ignore_extra=args.ignore_extra,
                        max_errors=settings.max_reported_errors)
        results = ingest_files(store, args.files, args.kind, spec, now)
        status = _print_reports(results, out, err)
        if args.errors is not None:
            _write_errors(store, args, spec, results, now)
        return status


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: every outcome is an exit status and at most a one-line message."""
    environ = dict(os.environ)
    debug = environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        status = run(sys.argv[1:] if argv is None else argv, environ, utcnow)
        sys.stdout.flush()  # inside the try: a reader that went away shows up here
        return status
    except BrokenPipeError:
        # `forecaster interventions --json | head`: the reader has what it wanted.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("forecaster: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (StoreLockedError, SchemaVersionError) as exc:
        print(f"forecaster: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    except (ConfigError, InputError, ForecasterError) as exc:
        print(f"forecaster: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a message, not a dump
        if debug:
            traceback.print_exc()
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"forecaster: unexpected error: {type(exc).__name__}"
                  f"{': ' + first if first else ''} (set {DEBUG_VARIABLE}=1 for the traceback)",
                  file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
