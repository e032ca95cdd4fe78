"""The DuckDB store: one file, one writable connection per process, a cursor per thread."""

from __future__ import annotations

import codecs
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from forecaster.clock import MAX_YEAR, MIN_YEAR
from forecaster.config import Settings
from forecaster.errors import InputError, SchemaVersionError, StoreLockedError
from forecaster.ingest_report import IngestReport, RowError
from forecaster.kinds import (
    KIND_RANGE,
    REQUEST_NUMBERS,
    ROLLUP_METRICS,
    ROLLUP_SECONDS,
    metric_kind,
)
from forecaster.names import MAX_UNIT_CHARS, NAME_RULE, is_valid_name
from forecaster.store import lock, sql
from forecaster.store.migrations import LATEST_VERSION, current_version, migrate, newer_message

_TIMESTAMP_TYPES = ("TIMESTAMP", "DATE")

# A staged input's columns: target name -> (source column, DuckDB type).
Columns = dict[str, tuple[str, str]]
# (service, metric, unit, kind) of a series as it arrives.
SeriesKey = tuple[str, str, str | None, str]


@dataclass(frozen=True, slots=True)
class Source:
    """An input to stage: a file of a known format, or an Arrow table.

    Attributes:
        label: How to name it in messages (the file name, or ``"frame"``).
        path: The file, for file inputs.
        fmt: ``csv``, ``parquet`` or ``json`` (newline-delimited) for files.
        table: The rows, for in-memory inputs.
    """

    label: str
    path: Path | None = None
    fmt: str | None = None
    table: pa.Table | None = None


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """How to read one input.

    Attributes:
        columns: Target column -> source column, for every target column the input has.
        service: The service for every row, when the input has no service column.
        us_per_unit: Microseconds per unit of epoch-number timestamps; None for ISO 8601 text.
        strict: All-or-nothing: store nothing from an input that has a rejected row.
        max_errors: How many rejected rows to list in the report.
        now: The time recorded in the ingest log (UTC, naive).
    """

    columns: Mapping[str, str]
    now: datetime
    service: str | None = None
    us_per_unit: float | None = None
    strict: bool = False
    max_errors: int = 20


class _Held:
    """The files this process holds open writable, with how many stores hold each.

    DuckDB's lock keeps other processes out, not this one: a second ``Store.open`` of a file in
    the same process shares the database. Only the first open may treat a ``running`` run as
    left by a dead process, and only the last close may remove the owner record.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}

    @staticmethod
    def key(db: Path) -> str:
        return str(db.resolve())

    def count(self, db: Path) -> int:
        with self._lock:
            return self._count.get(self.key(db), 0)

    def add(self, db: Path) -> int:
        """Count one more holder; returns how many held it before."""
        with self._lock:
            before = self._count.get(self.key(db), 0)
            self._count[self.key(db)] = before + 1
            return before

    def remove(self, db: Path) -> int:
        """Count one holder less; returns how many still hold it."""
        with self._lock:
            left = max(0, self._count.get(self.key(db), 0) - 1)
            if left:
                self._count[self.key(db)] = left
            else:
                self._count.pop(self.key(db), None)
            return left


_HELD = _Held()


class Store:
    """An open forecaster database.

    Use :meth:`open`. The process that opens a file writable holds it until :meth:`close`; every
    thread gets its own cursor through :meth:`cursor`; writes are serialised by a lock, so the
    merge that keeps one point per (series, timestamp) never races itself.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._closed = False
        # runs a stopped process had left running, marked failed when this process opened it
        self.interrupted_runs: list[int] = []

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        now: datetime,
        settings: Settings | None = None,
        read_only: bool = False,
        server_url: str | None = None,
    ) -> Store:
        """Open (and create or upgrade) a database file.

        Args:
            path: The DuckDB file; created when missing (unless ``read_only``).
            now: The current time (UTC, naive), recorded for applied migrations.
            settings: DuckDB threads and memory limit come from here.
            read_only: Open without writing; the file must exist and be up to date.
            server_url: When this process serves HTTP, its address, so that a second process
                refused by the lock can be pointed to the API.

        Raises:
            StoreLockedError: another process holds the file.
            SchemaVersionError: the file was written by a newer forecaster.

        Opened writable, the file is this process's alone (DuckDB's lock), so a run still
        ``running`` in it was left so by a process that stopped before finishing it: it is marked
        failed, with why (see :attr:`interrupted_runs`), unless this process already holds the
        file open (then the run may be this process's own, still going).
        """
        settings = settings or Settings()
        db = Path(path)
        config: dict[str, str | bool | int | float | list[str]] = {}
        if settings.duckdb_threads:
            config["threads"] = settings.duckdb_threads
        if settings.duckdb_memory_limit:
            config["memory_limit"] = settings.duckdb_memory_limit
        if not read_only:
            db.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(db), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreLockedError(lock.locked_message(db, text)) from None
            raise
        _set_utc(con)
        try:
            if read_only:
                version = current_version(con)
                if version > LATEST_VERSION:
                    raise SchemaVersionError(newer_message(str(db), version))
                if version < LATEST_VERSION:
                    raise SchemaVersionError(
                        f"{db} has schema version {version}; open it writable once to upgrade it "
                        f"to {LATEST_VERSION}")
            else:
                migrate(con, now, path=str(db))
                lock.write_owner(db, server_url)
                first = _HELD.add(db) == 0
                try:
                    interrupted = _fail_interrupted_runs(con, now) if first else []
                except BaseException:
                    _HELD.remove(db)
                    raise
        except BaseException:
            con.close()
            raise
        store = cls(con, db, read_only)
        if not read_only:
            store.interrupted_runs = interrupted
        return store

    def close(self) -> None:
        """Close the database and release the file."""
        if self._closed:
            return
        self._closed = True
        self._con.close()
        if not self.read_only and _HELD.remove(self.path) == 0:
            lock.clear_owner(self.path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        return current_version(self.cursor())

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (DuckDB connections are not safe to share between threads)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            _set_utc(cur)
            self._local.cursor = cur
        return cur

    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A private cursor holding the write lock; its temp tables vanish with it."""
        with self._write_lock:
            cur = self._con.cursor()
            _set_utc(cur)
            try:
                yield cur
            finally:
                cur.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction on a private cursor: committed on success, else rolled back."""
        with self._writer() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
                _drop_staging(cur)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # -----------------------------------------------------------------------------------------
    # Ingest

    def source_columns(self, source: Source) -> dict[str, str]:
        """The columns of an input and their DuckDB types, in order.

        Raises:
            InputError: the input cannot be read.
        """
        rel = _relation(self.cursor(), source)
        return {name: str(kind) for name, kind in zip(rel.columns, rel.types, strict=True)}

    def ingest_points(self, source: Source, options: IngestOptions) -> IngestReport:
        """Validate and store metric points (``ts, service, metric, value[, unit]``).

        Rows with a bad field are rejected and reported; the others are stored, unless
        ``options.strict``. Writing a point already stored with the same value changes nothing;
        with another value, the stored value is replaced. Within one input, the last row of a
        repeated (series, ts) wins.
        """
        report = IngestReport(source=source.label)
        with self._transaction() as cur, _reading(source):
            keys = self._check_points(cur, source, options)
            accepted_keys = self._count_and_report(cur, report, options, by_key=True)
            if not report.strict_aborted:
                series_ids = _ensure_series(cur, [keys[k] for k in accepted_keys])
                of_key = [series_ids[keys[k][:2]] for k in accepted_keys]
                cur.register("key_series", pa.table({
                    "key_id": pa.array(accepted_keys, pa.int32()),
                    "series_id": pa.array(of_key, pa.int32())}))
                for statement in ([sql.INCOMING_FROM_GROUPED] if len(set(of_key)) == len(of_key)
                                  else sql.INCOMING_FROM_GROUPED_KEYS):
                    cur.execute(statement)
                self._merge_incoming(cur, report)
                report.duplicates = report.rows - report.rejected - report.stored - report.updated
            self._log(cur, report, "points", options.now)
        return report

    def ingest_requests(self, source: Source, options: IngestOptions) -> IngestReport:
        """Validate and store LLM request-log rows and roll them up into 5-minute points.

        Every bucket that gains a request is recomputed from all stored requests of that bucket,
        so overlapping or repeated logs give the same points as one log holding their union.
        """
        report = IngestReport(source=source.label, requests_stored=0)
        with self._transaction() as cur, _reading(source):
            self._check_requests(cur, source, options)
            self._count_and_report(cur, report, options, by_key=False)
            if not report.strict_aborted:
                cur.execute(sql.NEW_REQUESTS)
                (new,) = _one(cur, sql.COUNT_NEW_REQUESTS)
                report.requests_stored = int(new)
                report.duplicates = report.rows - report.rejected - report.requests_stored
                if new:
                    cur.execute(sql.INSERT_NEW_REQUESTS)
                    self._roll_up(cur, report)
            self._log(cur, report, "requests", options.now)
        return report

    def all_rejects(self, source: Source, options: IngestOptions, kind: str) -> pl.DataFrame:
        """Every rejected row of an input (row, field, message), without storing anything."""
        with self._writer() as cur, _reading(source):
            cur.execute("BEGIN TRANSACTION")
            try:
                if kind == "points":
                    self._check_points(cur, source, options)
                else:
                    self._check_requests(cur, source, options)
                return cur.sql(sql.ALL_REJECTS).pl()
            finally:
                cur.execute("ROLLBACK")

    def _stage(
        self, cur: duckdb.DuckDBPyConnection, source: Source, options: IngestOptions
    ) -> Columns:
        """Expose the input as view ``src`` with a 0-based ``__row``; return its columns."""
        cur.execute(sql.CREATE_PARAMS, [options.service, options.us_per_unit,
                                        datetime(MIN_YEAR, 1, 1), datetime(MAX_YEAR + 1, 1, 1)])
        rel = _relation(cur, source)
        if source.table is not None:
            # A view over a Python object must be a registration, not a stored view.
            cur.register("raw_input", source.table)
        else:
            rel.create_view("raw_input", replace=True)
        types = {name: str(kind) for name, kind in zip(rel.columns, rel.types, strict=True)}
        if source.fmt == "parquet":
            # Read where it lies, column by column: a copy would cost the time of the load and
            # the memory of the file. A page found damaged half-way fails the statement reading
            # it, inside the ingest's transaction (see _reading): nothing of the file is stored.
            cur.execute(sql.SRC_FROM_COLUMN.format(row=sql.quote_ident("file_row_number")))
        else:
            # Text is read here, once: a file that turns out unreadable half-way (bad bytes)
            # fails now, as an InputError. Insertion order is preserved (DuckDB's default), so
            # rowid is the input's row order.
            try:
                cur.execute(sql.MATERIALIZE_RAW)
            except duckdb.Error as exc:
                raise _unreadable(source, exc, "cannot read") from None
            cur.execute(sql.SRC_FROM_ROWID)
        return {target: (col, types[col]) for target, col in options.columns.items()}

    def _check_points(
        self, cur: duckdb.DuckDBPyConnection, source: Source, options: IngestOptions
    ) -> dict[int, SeriesKey]:
        """Define view ``checked`` over the input; return the input's series keys by key id."""
        columns = self._stage(cur, source, options)
        cur.execute(sql.NORMALIZE_POINTS.format(**_point_exprs(columns)))
        incoming = cur.execute(sql.DISTINCT_POINT_KEYS).fetchall()
        stored = {(s, m): u for s, m, u, _ in cur.execute(sql.STORED_SERIES).fetchall()}
        meta, keys = _point_meta(incoming, stored)
        cur.register("meta", meta)
        cur.execute(sql.CHECK_POINTS)
        return keys

    def _check_requests(
        self, cur: duckdb.DuckDBPyConnection, source: Source, options: IngestOptions
    ) -> None:
        """Define view ``checked`` over a request-log input."""
        columns = self._stage(cur, source, options)
        cur.execute(sql.NORMALIZE_REQUESTS.format(**_request_exprs(columns)))
        services = [s for (s,) in cur.execute(sql.DISTINCT_REQUEST_SERVICES).fetchall()]
        verdicts = [_name_problem("service", s) for s in services]
        cur.register("meta", pa.table({
            "k_service": pa.array([s or "" for s in services], pa.string()),
            "reject_field": pa.array([v and "service" for v in verdicts], pa.string()),
            "reject_message": pa.array(verdicts, pa.string())}))
        cur.execute(sql.CHECK_REQUESTS)

    def _count_and_report(
        self, cur: duckdb.DuckDBPyConnection, report: IngestReport, options: IngestOptions,
        *, by_key: bool,
    ) -> list[int]:
        """Fill row and reject counts; return the key ids that have accepted rows.

        With ``by_key`` (points), the checked rows are also grouped into temp table ``grouped``.
        """
        if by_key:
            cur.execute(sql.GROUP_CHECKED)
            counts = cur.execute(sql.COUNT_BY_KEY).fetchall()
        else:
            counts = [(0, *_one(cur, sql.COUNT_CHECKED))]
        report.rows = sum(int(n) for _, n, _ in counts)
        report.rejected = sum(int(bad) for _, _, bad in counts)
        if report.rejected:
            report.errors = [
                RowError(report.source, int(row) + 1, field, message)
                for row, field, message in
                cur.execute(sql.FIRST_REJECTS, [options.max_errors]).fetchall()
            ]
        report.strict_aborted = bool(options.strict and report.rejected)
        return sorted(int(key) for key, n, bad in counts if n > bad)

    def _merge_incoming(self, cur: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
        """Merge temp table ``incoming`` (series_id, ts, value) into ``points``."""
        (updated,) = _one(cur, sql.UPDATE_CHANGED_POINTS)
        (stored,) = _one(cur, sql.INSERT_NEW_POINTS)
        report.updated += int(updated)
        report.stored += int(stored)

    def _roll_up(self, cur: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
        width = float(ROLLUP_SECONDS)
        cur.execute(sql.TOUCHED_BUCKETS, [width])
        cur.execute(sql.ROLLUP_TOUCHED, [width, width, width, width])
        cur.execute(sql.ROLLED_LONG)
        pairs = cur.execute(sql.ROLLED_SERIES).fetchall()
        _ensure_series(cur, [(service, metric, ROLLUP_METRICS[metric][1],
                              ROLLUP_METRICS[metric][0].value) for service, metric in pairs])
        cur.execute(sql.INCOMING_FROM_ROLLED)
        self._merge_incoming(cur, report)

    def _log(self, cur: duckdb.DuckDBPyConnection, report: IngestReport, kind: str,
             now: datetime) -> None:
        if report.strict_aborted:
            # Nothing of this input is kept, but the attempt is: roll back and log alone.
            cur.execute("ROLLBACK")
            cur.execute("BEGIN TRANSACTION")
        cur.execute(sql.LOG_INGEST, [now, report.source, kind, report.rows, report.stored,
                                     report.updated, report.duplicates, report.rejected,
                                     report.strict_aborted])

    # -----------------------------------------------------------------------------------------
    # Runs

    def start_run(self, started_at: datetime, as_of: datetime, trigger: str) -> int:
        """Record a run as started (not yet visible to readers); returns its id.

        Args:
            started_at: When it started (wall clock, UTC, naive).
            as_of: The time its answers are for.
            trigger: Who asked.
        """
        with self._transaction() as cur:
            (run_id,) = _one(cur, sql.START_RUN, [started_at, as_of, trigger])
        return int(run_id)

    def publish_run(
        self, run_id: int, finished_at: datetime, *, run_series: pl.DataFrame,
        forecasts: pl.DataFrame, interventions: pl.DataFrame, choices: pl.DataFrame, detail: str,
        anomalies: pl.DataFrame | None = None,
    ) -> None:
        """Publish everything a run computed, and mark it published, in one transaction;
        ``finished_at`` is the wall-clock time (UTC, naive)."""
        with self._transaction() as cur:
            for name, frame, statement in (
                    ("new_run_series", run_series, sql.PUBLISH_RUN_SERIES),
                    ("new_forecasts", forecasts, sql.PUBLISH_FORECASTS),
                    ("new_interventions", interventions, sql.PUBLISH_INTERVENTIONS),
                    ("new_choices", choices, sql.SAVE_CHOICES),
                    ("new_anomalies", anomalies if anomalies is not None else pl.DataFrame(),
                     sql.PUBLISH_ANOMALIES)):
                if frame.height:
                    cur.register(name, frame.to_arrow())
                    cur.execute(statement)
                    cur.unregister(name)
            cur.execute(sql.FINISH_RUN, ["published", finished_at, None, detail, run_id])

    def fail_run(self, run_id: int, finished_at: datetime, error: str, detail: str) -> None:
        """Mark a run failed at ``finished_at`` (wall clock); nothing it computed is published."""
        with self._transaction() as cur:
            cur.execute(sql.FINISH_RUN, ["failed", finished_at, error, detail, run_id])

    def model_choices(self) -> dict[int, tuple[str, datetime]]:
        """Stored model choice and when it was made, by series id."""
        rows = self.cursor().execute(sql.MODEL_CHOICES).fetchall()
        return {int(sid): (model, at) for sid, model, at in rows}

    def points_up_to(self, series_ids: Sequence[int], end: datetime) -> pa.Table:
        """Points (series_id, ts, value) of some series with ``ts <= end``, sorted."""
        return self.cursor().sql(sql.POINTS_UP_TO, params=[end, list(series_ids)]
                                 ).to_arrow_table()

    def latest_run_id(self) -> int | None:
        """The newest published run, if any."""
        rows = self.cursor().execute(sql.LATEST_PUBLISHED_RUN).fetchall()
        return int(rows[0][0]) if rows else None

    def run(self, run_id: int | None = None) -> dict[str, Any] | None:
        """One run's row (default: the latest published run), or None."""
        run_id = run_id if run_id is not None else self.latest_run_id()
        rows = _frame(self.cursor(), sql.RUN, [run_id]).to_dicts()
        return rows[0] if rows else None

    def runs(self, limit: int = 20) -> pl.DataFrame:
        """The newest runs, published or not."""
        return _frame(self.cursor(), sql.RUNS, [limit])

    def interventions(self, run_id: int | None = None) -> pl.DataFrame:
        """A published run's answers (default: the latest), most urgent first."""
        run_id = run_id if run_id is not None else self.latest_run_id()
        return _frame(self.cursor(), sql.INTERVENTIONS, [run_id])

    def score_estimates(self, now: datetime) -> int:
        """Score, once each, the published estimates whose horizon has passed by ``now``
        against the points up to ``now``; returns how many were scored."""
        with self._transaction() as cur:
            [(inserted,)] = cur.execute(sql.SCORE_ESTIMATES, [now]).fetchall()
        return int(inserted)

    def reliability(self, since: datetime = datetime(1970, 1, 1)) -> tuple[
            pl.DataFrame, dict[str, Any]]:
        """How right the published estimates made since ``since`` were, per series and overall
        (coverage of [eta_p10, eta_p90], ETA error, Brier score, false alarms, misses)."""
        cur = self.cursor()
        per_series = _frame(cur, sql.RELIABILITY, [since])
        overall = _frame(cur, sql.RELIABILITY_OVERALL, [since]).to_dicts()[0]
        return per_series, overall

    def calibration_record(self, since: datetime) -> pl.DataFrame:
        """The scored estimates made since ``since`` with their raw first-passage
        distribution (the columns of ``forecaster.engine.calibration.Scored``)."""
        return _frame(self.cursor(), sql.CALIBRATION_RECORD, [since])

    def anomalies(self, since: datetime | None = None, service: str | None = None,
                  run_id: int | None = None) -> pl.DataFrame:
        """Anomalies a published run found (default: the latest), newest first.

        Args:
            since: Only those at or after this time (UTC, naive).
            service: Only this service's.
            run_id: The run; default the latest published one.
        """
        run_id = run_id if run_id is not None else self.latest_run_id()
        return _frame(self.cursor(), sql.ANOMALIES, [run_id, since, since, service, service])

    def forecasts(self, unique_id: str | None = None, run_id: int | None = None) -> pl.DataFrame:
        """A published run's forecast quantiles (default: the latest run), metric scale."""
        run_id = run_id if run_id is not None else self.latest_run_id()
        return _frame(self.cursor(), sql.FORECASTS, [run_id, unique_id, unique_id])

    def run_series(self, run_id: int | None = None) -> pl.DataFrame:
        """Provenance of each series in a run: status, model, window, freshness, flags."""
        run_id = run_id if run_id is not None else self.latest_run_id()
        return _frame(self.cursor(), sql.RUN_SERIES, [run_id])

    # -----------------------------------------------------------------------------------------
    # Events

    def add_event(self, *, service: str, ts: datetime, kind: str, now: datetime,
                  metric: str | None = None, detail: str | None = None) -> int:
        """Record something that changes a series' behaviour (deploy, retrain, scale-out).

        Returns:
            The new event's id.
        """
        with self._writer() as cur:
            (event_id,) = _one(cur, sql.INSERT_EVENT, [service, ts, kind, metric, detail, now])
        return int(event_id)

    def events(self, service: str | None = None) -> pl.DataFrame:
        """Recorded events, oldest first."""
        return _frame(self.cursor(), sql.EVENTS, [service, service])

    # -----------------------------------------------------------------------------------------
    # Reads

    def series(self) -> pl.DataFrame:
        """Every series: series_id, unique_id, service, metric, unit, kind."""
        return self.cursor().sql(sql.SERIES).pl()

    def history(
        self,
        service: str | None = None,
        metric: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.DataFrame:
        """Stored points in long format (unique_id, ds, y), ds in UTC, ``start <= ds < end``."""
        params = [service, service, metric, metric, start, start, end, end]
        return _frame(self.cursor(), sql.HISTORY, params)

    def series_summary(self) -> pl.DataFrame:
        """Per series: points, first and last time, last value, recent means, range."""
        return self.cursor().sql(sql.SERIES_SUMMARY).pl()

    def counts(self) -> dict[str, int]:
        """Rows in the main tables."""
        series, points, requests, events = _one(self.cursor(), sql.COUNTS)
        return {"series": series, "points": points, "requests": requests, "events": events}

    @classmethod
    def rebuild(
        cls,
        path: Path | str,
        *,
        maker: str,
        now: datetime,
        settings: Settings | None = None,
    ) -> Store:
        """Open ``path`` as a new, empty database made by ``maker``, holding its lock throughout.

        A missing file is created. An existing file is emptied in place, while this process
        holds its lock, and only when ``maker`` made it (or it has no table at all): the file is
        never deleted or replaced, so a process that held it first keeps its data, and the
        ``.wal`` beside it stays DuckDB's own business.

        Args:
            path: The DuckDB file.
            maker: Who rebuilds it (``"demo"``); recorded inside the file.
            now: The current time (UTC, naive), recorded with the marker and migrations.
            settings: DuckDB threads and memory limit come from here.

        Raises:
            StoreLockedError: another process holds the file; nothing was touched.
            ForeignDatabaseError: the file exists and ``maker`` did not make it; nothing was
                touched.
        """
        settings = settings or Settings()
        db = Path(path)
        if db.exists() and (not db.is_file() or not lock.is_duckdb_file(db)):
            raise lock.ForeignDatabaseError(f"{db} exists and is not a DuckDB database file")
        if _HELD.count(db):
            raise StoreLockedError(f"{db} is open in this process; close it before rebuilding it")
        config: dict[str, str | bool | int | float | list[str]] = {}
        if settings.duckdb_threads:
            config["threads"] = settings.duckdb_threads
        if settings.duckdb_memory_limit:
            config["memory_limit"] = settings.duckdb_memory_limit
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(db), config=config)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreLockedError(lock.locked_message(db, text)) from None
            raise
        try:
            _set_utc(con)
            objects = [(str(kind), str(name)) for kind, name in
                       con.execute(sql.USER_OBJECTS).fetchall()]
            if objects and not cls._made_by(con, maker, {name for _, name in objects}):
                raise lock.ForeignDatabaseError(
                    f"{db} was not made by the {maker} (it holds {len(objects)} tables, views or "
                    "sequences of its own)")
            con.execute("BEGIN TRANSACTION")
            for kind, name in objects:
                con.execute(sql.drop_object(kind, name))
            con.execute(sql.CREATE_MADE_BY)
            con.execute(sql.MARK_MADE_BY, [maker, now])
            con.execute("COMMIT")
            migrate(con, now, path=str(db))
            lock.write_owner(db, None)
        except BaseException:
            con.close()
            raise
        _HELD.add(db)
        return cls(con, db, False)

    @staticmethod
    def _made_by(con: duckdb.DuckDBPyConnection, maker: str, names: set[str]) -> bool:
        """Whether the file's marker names ``maker``; in a file older than the marker, whether
        ``maker`` ran in it and every ingest in it read the sample fleet (the demo of old wrote
        into the default database, which a user may since have filled: that one is kept)."""
        if "made_by" in names:
            return bool(_one(con, sql.IS_MADE_BY, [maker])[0])
        if "runs" in names and "ingest_log" in names:
            ran = bool(_one(con, sql.HAS_RUN_OF_TRIGGER, [maker])[0])
            return ran and not _one(con, sql.INGESTS_NOT_OF_THE_SAMPLE)[0]
        return False


# ---------------------------------------------------------------------------------------------
# Helpers


def _set_utc(con: duckdb.DuckDBPyConnection) -> None:
    # Without the ICU extension DuckDB already works in UTC; with it, make sure it does, since
    # TIMESTAMPTZ -> TIMESTAMP casts then follow the session time zone.
    try:
        con.execute(sql.SET_UTC)
    except duckdb.Error:
        pass


# How the error of a run failed on open begins (metrics_text counts them by it).
INTERRUPTED = "interrupted:"


def _fail_interrupted_runs(con: duckdb.DuckDBPyConnection, now: datetime) -> list[int]:
    # Only for a file opened writable: no other process can be running a run in it.
    at = f"{now:%Y-%m-%dT%H:%M:%S}Z"
    error = (f"{INTERRUPTED} the process that ran it stopped before it finished; marked failed "
             f"when the file was next opened at {at}")
    detail = json.dumps({"stage": "interrupted", "marked_failed_at": at})
    rows = con.execute(sql.FAIL_INTERRUPTED_RUNS, [error, detail]).fetchall()
    return sorted(int(run_id) for (run_id,) in rows)


def _one(cur: duckdb.DuckDBPyConnection, query: str,
         params: Sequence[object] | None = None) -> tuple[Any, ...]:
    # fetchall, not fetchone: DuckDB 2.0 refuses further work on a cursor with an unfinished result.
    rows = cur.execute(query, params or []).fetchall()
    assert rows, query
    return tuple(rows[0])


def _frame(cur: duckdb.DuckDBPyConnection, query: str,
           params: Sequence[object]) -> pl.DataFrame:
    # DuckDB 2.0: results of execute() have no .pl(); go through Arrow.
    return cur.sql(query, params=list(params)).pl()


def _read_error(exc: BaseException) -> str:
    """A reader's error in one line: where, and what was wrong there.

    DuckDB's CSV errors put the place on the first line ("CSV Error on Line: 9"), then the
    line's text and the problem ("Invalid unicode ... not utf-8 encoded"), then suggestions.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    problem = next((line for line in lines[1:4] if not line.startswith(
        ("Original Line", "Possible Solution", "file =", "  "))), None)
    text = lines[0] if problem is None else f"{lines[0]}: {problem}"
    return text[:400]


def _relation(cur: duckdb.DuckDBPyConnection, source: Source) -> duckdb.DuckDBPyRelation:
    try:
        if source.table is not None:
            return cur.from_arrow(source.table)
        assert source.path is not None
        path = str(source.path)
        if source.fmt == "parquet":
            return cur.read_parquet(path, file_row_number=True)
        if source.fmt == "csv":
            return cur.read_csv(path, all_varchar=True, header=True)
        if source.fmt == "json":
            # Every field as JSON, read as text later: DuckDB's own type detection would turn
            # "epoch" into a date and take offsets of 99 hours, past our ISO 8601 check.
            names = cur.read_json(path, format="newline_delimited").columns
            return cur.read_json(path, format="newline_delimited",
                                 columns={name: "JSON" for name in names})
    except duckdb.Error as exc:
        raise _unreadable(source, exc, f"cannot read as {source.fmt}") from None
    raise InputError(f"{source.label}: unknown format {source.fmt!r}; use csv, parquet or json")


@contextmanager
def _reading(source: Source) -> Iterator[None]:
    """Turn DuckDB's error on a Parquet page it cannot decode, raised by whichever statement of
    the ingest reads it first, into the input's error (the transaction around it rolls back)."""
    try:
        yield
    except duckdb.Error as exc:
        if source.fmt != "parquet":
            raise
        raise _unreadable(source, exc, "cannot read") from None


def _unreadable(source: Source, exc: BaseException, doing: str) -> InputError:
    """The error for an input DuckDB could not read, saying why where we can tell better."""
    problem = None
    if source.path is not None and source.fmt in ("csv", "json"):
        # DuckDB's CSV sniffer reports bad bytes as "cannot detect the dialect"
        problem = _utf8_problem(source.path)
    return InputError(f"{source.label}: {doing}: {problem or _read_error(exc)}")


def _utf8_problem(path: Path) -> str | None:
    """Where an uncompressed text file stops being UTF-8, or None when it is UTF-8 throughout."""
    if path.suffix.lower() in (".gz", ".zst"):
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    at = max(exc.start, 0)
                    line = lines + chunk.count(b"\n", 0, at) + 1
                    return (f"not UTF-8 text: line {line} "
                            f"(byte {offset + at + 1}) holds {chunk[at:at + 4]!r}; save the file "
                            "as UTF-8")
                lines += chunk.count(b"\n")
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "not UTF-8 text: it ends inside a character; save the file as UTF-8"
    except OSError:
        return None
    return None


_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                  "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")


def _is_numeric(type_name: str) -> bool:
    return type_name.startswith(_NUMERIC_TYPES)


def _field(columns: Columns, target: str, missing: str) -> tuple[str, str]:
    """(raw, number) expressions of an optional numeric field."""
    if target not in columns:
        return missing, missing
    name, type_name = columns[target]
    c = sql.quote_ident(name)
    if _is_numeric(type_name):
        return sql.RAW_NATIVE.format(c=c), sql.NUMBER_FROM_NATIVE.format(c=c)
    t = _as_text(columns, target)
    return sql.RAW_TEXT.format(t=t), sql.NUMBER_FROM_TEXT.format(t=t)


def _as_text(columns: Columns, target: str) -> str:
    """The expression reading a source column as text (a JSON string unquoted)."""
    name, type_name = columns[target]
    template = sql.TEXT_OF_JSON if type_name == "JSON" else sql.TEXT_OF_COLUMN
    return template.format(c=sql.quote_ident(name))


def _ts_exprs(columns: Columns) -> dict[str, str]:
    name, type_name = columns["ts"]
    c = sql.quote_ident(name)
    if type_name.startswith(_TIMESTAMP_TYPES):
        return {"ts_raw": sql.RAW_NATIVE.format(c=c), "ts": sql.TS_FROM_TIMESTAMP.format(c=c)}
    if _is_numeric(type_name):
        return {"ts_raw": sql.RAW_NATIVE.format(c=c), "ts": sql.TS_FROM_NUMBER.format(c=c)}
    t = _as_text(columns, "ts")
    return {"ts_raw": sql.RAW_TEXT.format(t=t), "ts": sql.TS_FROM_TEXT.format(t=t)}


def _text(columns: Columns, target: str, missing: str) -> str:
    if target not in columns:
        return missing
    return sql.RAW_TEXT.format(t=_as_text(columns, target))


def _point_exprs(columns: Columns) -> dict[str, str]:
    value_raw, value = _field(columns, "value", sql.NULL_NUMBER)
    return _ts_exprs(columns) | {
        "service": _text(columns, "service", sql.SERVICE_CONSTANT),
        "metric": _text(columns, "metric", sql.NULL_TEXT),
        "unit": _text(columns, "unit", sql.NULL_TEXT),
        "value_raw": value_raw,
        "value": value,
    }


def _request_exprs(columns: Columns) -> dict[str, str]:
    exprs = _ts_exprs(columns) | {
        "service": _text(columns, "service", sql.SERVICE_CONSTANT),
        "request_id": _text(columns, "request_id", sql.NULL_TEXT),
        "error_raw": _text(columns, "error", sql.NULL_TEXT),
        "error": (sql.BOOLEAN.format(t=_as_text(columns, "error"))
                  if "error" in columns else sql.NULL_BOOLEAN),
    }
    for field in (*REQUEST_NUMBERS, "status"):
        exprs[f"{field}_raw"], exprs[field] = _field(columns, field, sql.NULL_NUMBER)
    return exprs


def _name_problem(field: str, name: str | None) -> str | None:
    """Why ``name`` is not a valid service or metric name, or None when it is."""
    if name is None:
        return f"missing {field}"
    if not is_valid_name(name):
        return f"{field} {name[:60]!r} is not a valid name; allowed: {NAME_RULE}"
    return None


def _point_meta(
    incoming: list[tuple[str | None, str | None, str | None]],
    stored_units: dict[tuple[str, str], str | None],
) -> tuple[pa.Table, dict[int, SeriesKey]]:
    """The verdict on each distinct (service, metric, unit) of an input.

    Returns:
        The ``meta`` table for CHECK_POINTS, and the valid keys' series by key id.
    """
    units = dict(stored_units)
    # For a new series with several units in one input, the first in sorted order is kept.
    for service, metric, unit in sorted(incoming, key=lambda r: tuple(x or "" for x in r)):
        if unit is not None and len(unit) <= MAX_UNIT_CHARS \
                and units.get((service, metric)) is None:  # type: ignore[arg-type]
            units[(service, metric)] = unit  # type: ignore[index]
    cols: dict[str, list[object]] = {k: [] for k in (
        "key_id", "k_service", "k_metric", "k_unit", "kind", "lo", "hi", "reject_field",
        "reject_message")}
    keys: dict[int, SeriesKey] = {}
    for key_id, (service, metric, unit) in enumerate(incoming):
        kind = metric_kind(metric or "")
        lo, hi = KIND_RANGE[kind]
        field, problem = "service", _name_problem("service", service)
        if problem is None:
            field, problem = "metric", _name_problem("metric", metric)
        have = units.get((service, metric))  # type: ignore[arg-type]
        if problem is None and unit is not None and have is not None and have != unit:
            field, problem = "unit", (f"unit {unit!r} differs from the unit {have!r} of series "
                                      f"{service}:{metric}")
        if problem is None:
            keys[key_id] = (service, metric, unit if unit is not None else have, kind.value)  # type: ignore[assignment]
        for name, value in (("key_id", key_id), ("k_service", service or ""),
                            ("k_metric", metric or ""), ("k_unit", unit or ""),
                            ("kind", kind.value), ("lo", lo), ("hi", hi),
                            ("reject_field", field if problem else None),
                            ("reject_message", problem)):
            cols[name].append(value)
    schema = pa.schema([("key_id", pa.int32()), ("k_service", pa.string()),
                        ("k_metric", pa.string()), ("k_unit", pa.string()),
                        ("kind", pa.string()), ("lo", pa.float64()), ("hi", pa.float64()),
                        ("reject_field", pa.string()), ("reject_message", pa.string())])
    return pa.table(cols, schema=schema), keys


def _ensure_series(cur: duckdb.DuckDBPyConnection,
                   wanted: list[SeriesKey]) -> dict[tuple[str, str], int]:
    """Create the series that do not exist yet, give a unit to those stored without one; return
    every series id by (service, metric)."""
    # One row per series: an upsert may not touch a row twice.
    wanted = list({(w[0], w[1]): w for w in wanted}.values())
    if wanted:
        cur.register("new_series", pa.table({
            "service": pa.array([w[0] for w in wanted], pa.string()),
            "metric": pa.array([w[1] for w in wanted], pa.string()),
            "unit": pa.array([w[2] for w in wanted], pa.string()),
            "kind": pa.array([w[3] for w in wanted], pa.string())}))
        cur.execute(sql.INSERT_SERIES)
        cur.unregister("new_series")
    return {(s, m): int(i) for s, m, _, i in cur.execute(sql.STORED_SERIES).fetchall()}


def _drop_staging(cur: duckdb.DuckDBPyConnection) -> None:
    for statement in sql.DROP_STAGING:
        cur.execute(statement)
    for name in ("meta", "key_series", "raw_input"):
        try:
            cur.unregister(name)
        except duckdb.Error:
            pass
