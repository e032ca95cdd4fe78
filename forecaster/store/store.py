"""The DuckDB store: one file, one writable connection per process, a cursor per thread.

:class:`Store` owns the connection, the per-thread cursors and the write lock, and opens the
transactions; what it keeps is read and written by the part that keeps it (``points``,
``request_logs``, ``events``, ``runs``, ``scores``), functions over a cursor.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from forecaster.config import Settings
from forecaster.errors import StoreLockedError
from forecaster.ingest_report import IngestReport
from forecaster.store import events, lock, points, reports, request_logs, runs, scores, staging
from forecaster.store.connection import HELD, connect, empty_for, set_utc
from forecaster.store.migrations import current_version, migrate, require_latest
from forecaster.store.reads import run_or_latest
from forecaster.store.staging import IngestOptions, Source


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
        db = Path(path)
        con = connect(db, settings or Settings(), read_only=read_only)
        try:
            if read_only:
                require_latest(con, db)
            else:
                migrate(con, now, path=str(db))
                lock.write_owner(db, server_url)
                first = HELD.add(db) == 0
                try:
                    interrupted = runs.fail_interrupted_runs(con, now) if first else []
                except BaseException:
                    HELD.remove(db)
                    raise
        except BaseException:
            con.close()
            raise
        store = cls(con, db, read_only)
        if not read_only:
            store.interrupted_runs = interrupted
        return store

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
        db = Path(path)
        if db.exists() and (not db.is_file() or not lock.is_duckdb_file(db)):
            raise lock.ForeignDatabaseError(f"{db} exists and is not a DuckDB database file")
        if HELD.count(db):
            raise StoreLockedError(f"{db} is open in this process; close it before rebuilding it")
        con = connect(db, settings or Settings(), read_only=False)
        try:
            empty_for(con, db, maker, now)
            migrate(con, now, path=str(db))
            lock.write_owner(db, None)
        except BaseException:
            con.close()
            raise
        HELD.add(db)
        return cls(con, db, False)

    def close(self) -> None:
        """Close the database and release the file."""
        if self._closed:
            return
        self._closed = True
        self._con.close()
        if not self.read_only and HELD.remove(self.path) == 0:
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
            set_utc(cur)
            self._local.cursor = cur
        return cur

    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A private cursor holding the write lock; its temp tables vanish with it."""
        with self._write_lock:
            cur = self._con.cursor()
            set_utc(cur)
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
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    @contextmanager
    def _dry_run(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction on a private cursor that is always rolled back."""
        with self._writer() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            finally:
                cur.execute("ROLLBACK")

    # -----------------------------------------------------------------------------------------
    # Ingest (staging, points, request_logs)

    def source_columns(self, source: Source) -> dict[str, str]:
        """The columns of an input and their DuckDB types, in order.

        Raises:
            InputError: the input cannot be read.
        """
        return staging.source_columns(self.cursor(), source)

    def ingest_points(self, source: Source, options: IngestOptions) -> IngestReport:
        """Validate and store metric points (``ts, service, metric, value[, unit]``).

        Rows with a bad field are rejected and reported; the others are stored, unless
        ``options.strict``. Writing a point already stored with the same value changes nothing;
        with another value, the stored value is replaced. Within one input, the last row of a
        repeated (series, ts) wins.
        """
        with self._transaction() as cur:
            return points.ingest_points(cur, source, options)

    def ingest_requests(self, source: Source, options: IngestOptions) -> IngestReport:
        """Validate and store LLM request-log rows and roll them up into 5-minute points.

        Every bucket that gains a request is recomputed from all stored requests of that bucket,
        so overlapping or repeated logs give the same points as one log holding their union.
        """
        with self._transaction() as cur:
            return request_logs.ingest_requests(cur, source, options)

    def all_rejects(self, source: Source, options: IngestOptions, kind: str) -> pl.DataFrame:
        """Every rejected row of an input (row, field, message), without storing anything."""
        with self._dry_run() as cur, staging.reading(source):
            if kind == "points":
                points.check_points(cur, source, options)
            else:
                request_logs.check_requests(cur, source, options)
            return staging.all_rejects(cur)

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
            return runs.start_run(cur, started_at, as_of, trigger)

    def publish_run(
        self, run_id: int, finished_at: datetime, *, run_series: pl.DataFrame,
        forecasts: pl.DataFrame, interventions: pl.DataFrame, choices: pl.DataFrame, detail: str,
        anomalies: pl.DataFrame | None = None,
    ) -> None:
        """Publish everything a run computed, and mark it published, in one transaction;
        ``finished_at`` is the wall-clock time (UTC, naive)."""
        with self._transaction() as cur:
            runs.publish_run(cur, run_id, finished_at, run_series=run_series,
                             forecasts=forecasts, interventions=interventions, choices=choices,
                             detail=detail, anomalies=anomalies)

    def fail_run(self, run_id: int, finished_at: datetime, error: str, detail: str) -> None:
        """Mark a run failed at ``finished_at`` (wall clock); nothing it computed is published."""
        with self._transaction() as cur:
            runs.fail_run(cur, run_id, finished_at, error, detail)

    def model_choices(self) -> dict[int, tuple[str, datetime]]:
        """Stored model choice and when it was made, by series id."""
        return runs.model_choices(self.cursor())

    def latest_run_id(self) -> int | None:
        """The newest published run, if any."""
        return runs.latest_run_id(self.cursor())

    def run(self, run_id: int | None = None) -> dict[str, Any] | None:
        """One run's row (default: the latest published run), or None."""
        return runs.run(self.cursor(), run_or_latest(run_id, self.latest_run_id))

    def runs(self, limit: int = 20) -> pl.DataFrame:
        """The newest runs, published or not."""
        return runs.runs(self.cursor(), limit)

    def run_before(self, end: datetime) -> dict[str, Any] | None:
        """The latest published run whose as-of time is before ``end`` (a week's last run)."""
        return runs.run_before(self.cursor(), end)

    def anomalies_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Anomalies any published run found in ``[start, end)``, once per series and time."""
        return runs.anomalies_between(self.cursor(), start, end)

    # -----------------------------------------------------------------------------------------
    # Reports

    def save_report(self, *, week: str, week_start: datetime, run_id: int, as_of: datetime,
                    made_at: datetime, html: str, figures: str) -> None:
        """Keep a week's capacity-planning report (replacing an earlier one of that week)."""
        with self._writer() as cur:
            reports.save_report(cur, week=week, week_start=week_start, run_id=run_id,
                                as_of=as_of, made_at=made_at, html=html, figures=figures)

    def reports(self, limit: int = 52) -> pl.DataFrame:
        """The kept reports, newest week first: week, week_start, run_id, as_of, made_at,
        html_bytes."""
        return reports.reports(self.cursor(), limit)

    def report(self, week: str | None = None) -> dict[str, Any] | None:
        """One kept report (default: the newest week's) with its ``html`` and ``figures``."""
        return reports.report(self.cursor(), week)

    def interventions(self, run_id: int | None = None) -> pl.DataFrame:
        """A published run's answers (default: the latest), most urgent first."""
        return runs.interventions(self.cursor(), run_or_latest(run_id, self.latest_run_id))

    def anomalies(self, since: datetime | None = None, service: str | None = None,
                  run_id: int | None = None) -> pl.DataFrame:
        """Anomalies a published run found (default: the latest), newest first.

        Args:
            since: Only those at or after this time (UTC, naive).
            service: Only this service's.
            run_id: The run; default the latest published one.
        """
        return runs.anomalies(self.cursor(), run_or_latest(run_id, self.latest_run_id),
                              since, service)

    def forecasts(self, unique_id: str | None = None, run_id: int | None = None) -> pl.DataFrame:
        """A published run's forecast quantiles (default: the latest run), metric scale."""
        return runs.forecasts(self.cursor(), run_or_latest(run_id, self.latest_run_id),
                              unique_id)

    def run_series(self, run_id: int | None = None) -> pl.DataFrame:
        """Provenance of each series in a run: status, model, window, freshness, flags."""
        return runs.run_series(self.cursor(), run_or_latest(run_id, self.latest_run_id))

    # -----------------------------------------------------------------------------------------
    # Scores

    def score_estimates(self, now: datetime) -> int:
        """Score, once each, the published estimates whose horizon has passed by ``now``
        against the points up to ``now``; returns how many were scored."""
        with self._transaction() as cur:
            return scores.score_estimates(cur, now)

    def reliability(self, since: datetime = datetime(1970, 1, 1)) -> tuple[
            pl.DataFrame, dict[str, Any]]:
        """How right the published estimates made since ``since`` were, per series and overall
        (coverage of [eta_p10, eta_p90], ETA error, Brier score, false alarms, misses)."""
        return scores.reliability(self.cursor(), since)

    def calibration_record(self, since: datetime) -> pl.DataFrame:
        """The scored estimates made since ``since`` with their raw first-passage
        distribution (the columns of ``forecaster.engine.calibration.Scored``)."""
        return scores.calibration_record(self.cursor(), since)

    # -----------------------------------------------------------------------------------------
    # Events

    def add_event(self, *, service: str, ts: datetime, kind: str, now: datetime,
                  metric: str | None = None, detail: str | None = None) -> int:
        """Record something that changes a series' behaviour (deploy, retrain, scale-out).

        Returns:
            The new event's id.
        """
        with self._writer() as cur:
            return events.add_event(cur, service=service, ts=ts, kind=kind, now=now,
                                    metric=metric, detail=detail)

    def events(self, service: str | None = None) -> pl.DataFrame:
        """Recorded events, oldest first."""
        return events.events(self.cursor(), service)

    # -----------------------------------------------------------------------------------------
    # Series and points

    def series(self) -> pl.DataFrame:
        """Every series: series_id, unique_id, service, metric, unit, kind."""
        return points.series(self.cursor())

    def history(
        self,
        service: str | None = None,
        metric: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pl.DataFrame:
        """Stored points in long format (unique_id, ds, y), ds in UTC, ``start <= ds < end``."""
        return points.history(self.cursor(), service, metric, start, end)

    def points_up_to(self, series_ids: Sequence[int], end: datetime) -> pa.Table:
        """Points (series_id, ts, value) of some series with ``ts <= end``, sorted."""
        return points.points_up_to(self.cursor(), series_ids, end)

    def series_summary(self) -> pl.DataFrame:
        """Per series: points, first and last time, last value, recent means, range."""
        return points.series_summary(self.cursor())

    def counts(self) -> dict[str, int]:
        """Rows in the main tables."""
        return points.counts(self.cursor())
