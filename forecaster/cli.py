"""Thin commands over the modules; the clock and the environment are read here, once."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import polars as pl

from forecaster import fleet, utcnow
from forecaster.config import Settings, load_settings
from forecaster.demo import run_demo
from forecaster.ingest import TIME_UNITS, ReadSpec, ingest_files, rejects_of_file
from forecaster.pipeline import run_once
from forecaster.policies import Policy, load_policies, parse_duration
from forecaster.schema import (
    ConfigError,
    ForecasterError,
    IngestReport,
    InputError,
    SchemaVersionError,
    StoreLockedError,
    to_utc_naive,
)
from forecaster.server import serve
from forecaster.store import LATEST_VERSION, Store
from forecaster.summary import (
    render_anomalies,
    render_backtest,
    render_interventions,
    render_summary,
    service_answers,
)

EXIT_OK = 0
EXIT_REJECTED = 1  # some rows or files were refused; the rest was stored
EXIT_USAGE = 2
EXIT_DATABASE = 3  # the database is held by another process, or too new


def _column_pair(text: str) -> tuple[str, str]:
    target, sep, source = text.partition("=")
    if not sep or not target or not source:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=SOURCE_COLUMN")
    return target, source


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-26T08:00:00Z") from None
    return to_utc_naive(value)


def _policies(path: Path | None, settings: Settings) -> tuple[Policy, ...]:
    chosen = path or (Path(settings.policies) if settings.policies else None)
    return load_policies(chosen)


def _frame_json(frame: pl.DataFrame) -> str:
    return json.dumps([{k: v.isoformat() if isinstance(v, datetime) else v
                        for k, v in row.items()} for row in frame.iter_rows(named=True)],
                      indent=2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecaster",
        description="Predictive maintenance for LLM services: when will each need an "
                    "intervention, how sure, and by when to act.")
    parser.add_argument("--db", type=Path, help="DuckDB file (default: FORECASTER_DB or "
                        "./forecaster.duckdb)")
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
        p.add_argument("--time-unit", choices=tuple(TIME_UNITS),
                       help="times are epoch numbers in this unit")
        p.add_argument("--ignore-extra", action="store_true",
                       help="skip columns that are not understood instead of refusing the file")
        p.add_argument("--errors", type=Path, metavar="CSV",
                       help="write every rejected row (file, row, field, message) to this CSV")

    refresh = commands.add_parser("refresh", help="forecast, compute time to intervention and "
                                  "publish one run")
    refresh.add_argument("--now", type=_timestamp, help="the time to answer for (ISO 8601; "
                         "default: the current time); later points are ignored")
    refresh.add_argument("--policies", type=Path, help="policy TOML file (default: setting "
                         "`policies`)")
    refresh.add_argument("--reselect", action="store_true",
                         help="re-make every model choice now")

    answers = commands.add_parser("interventions",
                                  help="the latest published answers, most urgent first")
    answers.add_argument("--json", action="store_true", help="print JSON")
    answers.add_argument("--all", action="store_true", help="list the series that are ok too")
    answers.add_argument("--by-service", action="store_true",
                         help="one answer per service: its most urgent series")

    found = commands.add_parser("anomalies", help="anomalies the latest published run found, "
                                "newest first")
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
    back.add_argument("--every", type=parse_duration, default=timedelta(hours=12),
                      help="time between cut-offs (default 12h)")
    back.add_argument("--policies", type=Path, help="policy TOML file (default: setting "
                      "`policies`)")
    back.add_argument("--json", action="store_true", help="print JSON")

    commands.add_parser("summary", help="per-service summary of what is stored")
    commands.add_parser("migrate", help="create or upgrade the database schema")

    gen = commands.add_parser("fleet", help="generate the seeded sample fleet")
    gen.add_argument("--out", type=Path, default=Path("data/fleet"))
    gen.add_argument("--seed", type=int, default=fleet.DEFAULT_SEED)
    gen.add_argument("--days", type=int, default=fleet.DEFAULT_DAYS)
    gen.add_argument("--future-days", type=int, default=fleet.DEFAULT_FUTURE_DAYS)

    serve = commands.add_parser("serve", help="run the HTTP API with the refresh scheduler")
    serve.add_argument("--host", help="address to bind (default: setting `host`, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: setting `port`, 8000)")
    serve.add_argument("--policies", type=Path, help="policy TOML file (default: setting "
                       "`policies`); read again by every refresh")

    demo = commands.add_parser("demo", help="build the demo database and show it")
    demo.add_argument("--data", type=Path, default=Path("data"))
    demo.add_argument("--now", type=_timestamp, default=None,
                      help="answer as of this time (default: the end of the sample data)")
    demo.add_argument("--serve", action="store_true",
                      help="then serve the demo database (API and scheduler) until stopped")
    return parser


def _print_reports(results: Sequence[IngestReport | InputError], out: TextIO) -> int:
    status = EXIT_OK
    stored = updated = duplicates = rejected = 0
    for result in results:
        if isinstance(result, InputError):
            print(f"refused: {result}", file=sys.stderr)
            status = EXIT_REJECTED
            continue
        print(result.summary(), file=out)
        for error in result.errors:
            print(f"  rejected: {error}", file=sys.stderr)
        if result.rejected > len(result.errors):
            print(f"  ... and {result.rejected - len(result.errors)} more rejected rows "
                  "(--errors FILE lists them all)", file=sys.stderr)
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
    with args.errors.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "row", "field", "message"])
        for path, result in zip(args.files, results, strict=True):
            if isinstance(result, IngestReport) and result.rejected:
                frame = rejects_of_file(store, path, args.kind, spec, now)
                for row in frame.iter_rows():
                    writer.writerow([str(path), *row])


def _backtest(store: Store, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from forecaster import backtest

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


def run(argv: Sequence[str], environ: dict[str, str], now: datetime) -> int:
    """Run one command.

    Args:
        argv: Arguments without the program name.
        environ: The environment (settings are read from ``FORECASTER_*``).
        now: The current time (UTC, naive).

    Returns:
        The exit status.
    """
    args = _parser().parse_args(argv)
    settings = load_settings(environ, args.config, {"db": args.db})
    out = sys.stdout
    if args.command == "fleet":
        generated = fleet.generate(seed=args.seed, days=args.days, future_days=args.future_days)
        for path in fleet.write(generated, args.out):
            print(f"wrote {path}", file=out)
        return EXIT_OK
    if args.command == "demo":
        status = run_demo(settings, args.data, now, out, as_of=args.now)
        if status != EXIT_OK or not args.serve:
            return status
        settings = settings.replace(policies=str(args.data / "policies.toml"))
        url = f"http://{settings.host}:{settings.port}"
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
              "The server answers for the current time; the sample data ends at "
              f"{json.loads((args.data / 'fleet' / 'truth.json').read_text())['end']} UTC.",
              file=out, flush=True)
        return serve(settings, utcnow, sys.stderr)
    if args.command == "serve":
        settings = settings.replace(**{k: v for k, v in (
            ("host", args.host), ("port", args.port),
            ("policies", str(args.policies) if args.policies else None)) if v is not None})
        return serve(settings, utcnow, sys.stderr)
    with Store.open(settings.db, now=now, settings=settings) as store:
        if args.command == "migrate":
            print(f"{settings.db}: schema version {store.schema_version} "
                  f"(latest {LATEST_VERSION})", file=out)
            return EXIT_OK
        if args.command == "summary":
            print(render_summary(store.series_summary()), file=out)
            return EXIT_OK
        if args.command == "refresh":
            policies = _policies(args.policies, settings)
            result = run_once(store, settings, policies, args.now or now, reselect=args.reselect)
            print(result.summary(), file=out)
            return EXIT_OK
        if args.command == "interventions":
            frame = store.interventions()
            if args.by_service:
                frame = service_answers(frame)
            if args.json:
                print(_frame_json(frame), file=out)
                return EXIT_OK
            run = store.run()
            as_of = run["as_of"] if run else now
            print(render_interventions(frame, run, as_of, show_all=args.all), file=out, end="")
            return EXIT_OK
        if args.command == "backtest":
            return _backtest(store, settings, args, out)
        if args.command == "anomalies":
            frame = store.anomalies(since=args.since, service=args.service)
            if args.precursors:
                frame = frame.filter(pl.col("precursor"))
            if args.json:
                print(_frame_json(frame), file=out)
                return EXIT_OK
            print(render_anomalies(frame, store.run()), file=out, end="")
            return EXIT_OK
        spec = ReadSpec(columns=dict(args.column), service=args.service,
                        time_unit=args.time_unit, fmt=args.format, strict=args.strict,
                        ignore_extra=args.ignore_extra,
                        max_errors=settings.max_reported_errors)
        results = ingest_files(store, args.files, args.kind, spec, now)
        status = _print_reports(results, out)
        if args.errors is not None:
            _write_errors(store, args, spec, results, now)
        return status


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    try:
        return run(sys.argv[1:] if argv is None else argv, dict(os.environ), utcnow())
    except (StoreLockedError, SchemaVersionError) as exc:
        print(f"forecaster: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    except (ConfigError, InputError, ForecasterError) as exc:
        print(f"forecaster: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
