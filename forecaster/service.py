"""The long-running service: one open store, the refresh job on an APScheduler clock, and the
state the HTTP API reports (jobs, failures, ingest counts).

The computation of a refresh runs in a worker process (the store is read and written here, the
only process that may open it), so the API stays responsive while it runs. One refresh at a
time: the scheduler's interval job and ``POST /v1/runs`` share one lock; a run asked for while
another is going is refused (409 from the API), and a scheduled run that finds one going is
skipped (the next tick comes soon). Missed ticks are coalesced into one. A job that
fails is recorded as a failed run, logged and counted, and never stops the scheduler.

The worker process and any process it starts die with the server, however it stops (even
``kill -9``): see ``_worker_init``. A run a killed server left ``running`` is marked failed when
the file is next opened (:meth:`forecaster.store.Store.open`).

The weekly capacity-planning report is the second job: a cron trigger at ``report_day``
``report_time`` in ``report_timezone`` makes the report of the last full ISO week from the stored
runs and keeps it in the store. Like the refresh, the store is read and written here and the
heavy part (capacity fits, charts, the page) runs in the worker process; a week without a
published run is recorded as skipped, a failure as a failure (job state, log), and neither stops
the scheduler. ``POST /v1/reports`` makes one now through :meth:`Service.make_report`; one report
at a time. The scheduler's single worker thread runs its jobs one after another.

With ``prometheus_sources`` set, each refresh first pulls what is new in each Prometheus source
(:class:`forecaster.sources.pulls.Puller`): a failing source is recorded (``/readyz``,
``/metrics``, the log) and never stops the others or the refresh.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from forecaster.clock import to_utc_naive
from forecaster.config import Settings, clock_time, demand_factors
from forecaster.errors import InputError
from forecaster.pipeline import RunResult, run_once
from forecaster.policies import Policy, load_policies
from forecaster.sources.files import ReadSpec, ingest_files
from forecaster.sources.pulls import Puller
from forecaster.store import Store

if TYPE_CHECKING:
    from forecaster.report.build import Inputs
    from forecaster.report.week import Week

T = TypeVar("T")

log = logging.getLogger("forecaster.service")


class RefreshBusyError(RuntimeError):
    """A refresh is already running."""

    def __init__(self, run_id: int | None) -> None:
        super().__init__(f"refresh run {run_id} is still running; try again when it has finished"
                         if run_id is not None else "a refresh is still running")
        self.run_id = run_id


class ReportBusyError(RuntimeError):
    """A report is already being made."""

    def __init__(self, week: str | None) -> None:
        super().__init__(f"the report of {week} is being made; try again when it is done"
                         if week else "a report is being made; try again when it is done")
        self.week = week


@dataclass(slots=True)
class JobStatus:
    """The last outcome of one job.

    Attributes:
        name: ``refresh`` or ``report``.
        runs: Times the job ran (skipped ones included).
        failures: Times it failed.
        skipped: Times it found nothing to do (the report: no run published in its week).
        last_started: When it last started (the service's clock).
        last_finished: When it last finished.
        last_ok: Whether the last run succeeded (None: never ran, or skipped).
        last_error: The last failure's error, until a run succeeds.
        last_skip: Why the last skipped run was skipped.
        last_run_id: The run it last made (refresh) or read (report).
        last_week: The week it last reported on (report).
        last_duration_s: How long the last run took.
    """

    name: str
    runs: int = 0
    failures: int = 0
    skipped: int = 0
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    last_skip: str | None = None
    last_run_id: int | None = None
    last_week: str | None = None
    last_duration_s: float | None = None


def _compute_pool() -> ProcessPoolExecutor:
    """A one-process pool for the computation, its process started now from this thread.

    The computation runs in a process of its own so that it never holds the interpreter lock the
    API's event loop needs; "spawn", because forking a process that holds DuckDB and scheduler
    threads is unsafe. The process is started here rather than at the first submit, so that it is
    the child of this thread: on Linux the kernel's parent-death signal fires when the *thread*
    that started a process ends, and only a pool made from the main thread (which lives as long
    as the server) may rely on it. See :func:`_worker_init` for the rest of the lifeline.
    """
    arm = threading.current_thread() is threading.main_thread()
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(), arm))
    # submit starts the process, in this thread; its imports go on without holding us up
    pool.submit(os.getpid)
    return pool


def _pool_usable(pool: ProcessPoolExecutor) -> bool:
    """Whether the pool's process is alive (a dead one breaks the pool for good)."""
    try:
        pool.submit(os.getpid).result()
    except BrokenProcessPool:
        return False
    return True


# -- the worker's lifeline -------------------------------------------------------------------
# A server killed with SIGKILL cannot stop its worker, and the worker's own helpers
# (statsforecast forks a pool when forecast_jobs > 1) cannot see it die: they must notice it
# themselves. Two layers: the kernel's parent-death signal where it applies (Linux; the worker
# when started from the server's main thread, and every process forked below it, armed at fork),
# and a watchdog thread in the worker that polls its parent everywhere else.

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_WATCH_EVERY_S = 0.25


_prctl: Any = None  # libc's prctl, looked up once before any fork (dlopen is unsafe after one)


def _load_prctl() -> None:
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False


def _die_with_parent(parent: int) -> bool:
    """Ask the kernel to SIGKILL this process when the thread that started it ends (Linux).

    Returns:
        Whether the signal is armed. Exits at once if the parent is already gone (it may have
        died before the signal was armed).
    """
    _load_prctl()
    if not _prctl:
        return False
    armed = bool(_prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)
    if os.getppid() != parent:
        os._exit(1)
    return armed


_forking = 0  # the pid of the process forking now, set in it before the fork: the child's copy


def _note_forking() -> None:
    global _forking
    _forking = os.getpid()


def _arm_forked_child() -> None:
    # Runs in every child the worker (or its children) forks: the child dies with its parent.
    # The parent's id is the one noted before the fork, not getppid(): a parent killed before
    # this line runs would make the child an orphan that passes the check.
    _die_with_parent(_forking)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, grandchildren, ...), from /proc (Linux; empty
    elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc/self/stat").exists() else ():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # the command name is in parentheses and may hold spaces; the parent id follows it
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_descendants_and_exit() -> None:
    try:
        for pid in reversed(descendants(os.getpid())):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    finally:
        os._exit(1)  # whatever went wrong above, the orphan must not live on


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_WATCH_EVERY_S)
    _kill_descendants_and_exit()


def _worker_init(parent: int, arm: bool) -> None:
    """The compute process's initializer: tie its life, and its helpers', to the server's.

    Args:
        parent: The server's process id.
        arm: Whether the process was started from the server's main thread, so that the
            kernel's parent-death signal may be used (from another thread it would fire when
            that thread ends, killing a healthy worker).
    """
    _load_prctl()  # now, in the worker: its forked helpers only call it
    if arm:
        _die_with_parent(parent)
    elif os.getppid() != parent:
        os._exit(1)
    if sys.platform.startswith("linux"):
        # A spawned process inherits "spawn" as its default start method, so statsforecast's
        # helpers (forecast_jobs > 1) would be spawned: each re-importing everything, and, being
        # exec'd, beyond the reach of the fork hook below (they outlived a killed worker). The
        # worker holds no DuckDB or scheduler threads, so it forks them, as the CLI does.
        multiprocessing.set_start_method("fork", force=True)
    if hasattr(os, "register_at_fork"):
        # statsforecast's helpers are forked from the worker's main thread, which lives as long
        # as the worker: the kernel signal is right for them.
        os.register_at_fork(before=_note_forking, after_in_child=_arm_forked_child)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog",
                     daemon=True).start()


def report_trigger(settings: Settings) -> CronTrigger:
    """The weekly report's trigger: ``report_day`` at ``report_time`` in ``report_timezone``
    (the settings were checked when read)."""
    hour, minute = clock_time(settings.report_time)
    return CronTrigger(day_of_week=settings.report_day, hour=hour, minute=minute,
                       timezone=ZoneInfo(settings.report_timezone))


class Service:
    """The store, its refresh and report jobs and what the API reports about them.

    Args:
        store: The open database; this process is its only writer.
        settings: Settings read once at start.
        clock: The current time (UTC, naive); read only here, at the edge of each job.
    """

    def __init__(self, store: Store, settings: Settings,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.refresh_status = JobStatus("refresh")
        self.report_status = JobStatus("report")
        self.ingest_rows: Counter[tuple[str, str]] = Counter()
        self.puller = Puller(settings)
        self.on_publish: list[Callable[[int], None]] = []
        self._lock = threading.Lock()
        self._running: int | None = None
        self._report_lock = threading.Lock()
        self._reporting: str | None = None  # the week being reported on
        self._as_of = clock()
        self._started = time.monotonic()  # of the running refresh: durations are not clock-bound
        # resolved absolute path -> (mtime, size) ingested: one spelling for look-up and store
        self._seen_files: dict[str, tuple[float, int]] = {}
        self._scheduler: BackgroundScheduler | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._threads: list[threading.Thread] = []

    # -- scheduler ---------------------------------------------------------------------------

    def start(self, first_run_in: timedelta = timedelta(0)) -> None:
        """Start the scheduler: the refresh job every ``refresh_every``, the first one after
        ``first_run_in``; the report job at ``report_day`` ``report_time`` in
        ``report_timezone`` every week."""
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        scheduler.add_job(self.scheduled_refresh, "interval", id="refresh", name="refresh",
                          seconds=self.settings.refresh_every.total_seconds(),
                          next_run_time=self.clock().replace(tzinfo=UTC) + first_run_in)
        scheduler.add_job(self.scheduled_report, report_trigger(self.settings), id="report",
                          name="weekly report")
        # the worker first (from this thread: see _compute_pool), so the first run has it
        self._pool = _compute_pool()
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop the scheduler, waiting for a running job, and any run the API started."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        for thread in self._threads:
            thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def scheduler_running(self) -> bool:
        """Whether the scheduler is running."""
        return self._scheduler is not None and self._scheduler.running

    def next_refresh_at(self) -> datetime | None:
        """When the scheduler runs the refresh job next (UTC, naive)."""
        return self._next_run_at("refresh")

    def next_report_at(self) -> datetime | None:
        """When the scheduler makes the weekly report next (UTC, naive)."""
        return self._next_run_at("report")

    def _next_run_at(self, job_id: str) -> datetime | None:
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(job_id)
        if job is None or job.next_run_time is None:
            return None
        return to_utc_naive(job.next_run_time)

    def run_job_now(self, job_id: str) -> None:
        """Run a scheduled job (``refresh`` or ``report``) once now, on the scheduler's worker
        thread like its regular runs, which stay as they are.

        Raises:
            KeyError: the scheduler is not running, or has no such job.
        """
        scheduler = self._scheduler
        job = scheduler.get_job(job_id) if scheduler is not None else None
        if scheduler is None or job is None:
            raise KeyError(f"no scheduled job {job_id!r}; jobs: refresh, report (while the "
                           "scheduler runs)")
        scheduler.add_job(job.func, id=f"{job_id}-now", name=f"{job.name} (now)",
                          replace_existing=True)

    @property
    def running_run_id(self) -> int | None:
        """The run being computed now, if any."""
        return self._running

    # -- refresh -----------------------------------------------------------------------------

    def scheduled_refresh(self) -> None:
        """The interval job: refresh unless a refresh is going. Never raises."""
        try:
            run_id = self.begin_refresh("schedule")
        except RefreshBusyError:
            log.info("scheduled refresh skipped: run %s is still running", self._running)
            return
        self.finish_refresh(run_id)

    def request_refresh(self) -> int:
        """Start a refresh now in its own thread (``POST /v1/runs``).

        Returns:
            The new run's id.

        Raises:
            RefreshBusyError: a refresh is already running.
        """
        run_id = self.begin_refresh("api")
        thread = threading.Thread(target=self.finish_refresh, args=(run_id,),
                                  name=f"refresh-{run_id}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return run_id

    def begin_refresh(self, trigger: str) -> int:
        """Take the refresh lock and record a run as started."""
        if not self._lock.acquire(blocking=False):
            raise RefreshBusyError(self._running)
        try:
            now = self.clock()
            run_id = self.store.start_run(now, now, trigger)
        except BaseException:
            self._lock.release()
            raise
        self._running, self._as_of, self._started = run_id, now, time.monotonic()
        status = self.refresh_status
        status.last_started, status.last_run_id = now, run_id
        return run_id

    def finish_refresh(self, run_id: int) -> RunResult | None:
        """Ingest from the configured sources, then compute and publish run ``run_id``.

        A failure (raised before the run is computed, or a run that comes back failed) is
        recorded (failed run, job status, log) and not raised. Releases the lock taken by
        :meth:`begin_refresh`.

        Returns:
            The run's result (``status`` ``published`` or ``failed``), or None when it failed
            before the computation (ingest, policies).
        """
        status = self.refresh_status
        as_of = self._as_of  # the run answers as of when it was asked for
        result: RunResult | None = None
        try:
            stage = "ingest"
            try:
                self.ingest_sources(as_of)
                stage = "policies"
                policies = load_policies(Path(self.settings.policies)
                                         if self.settings.policies else None)
            except Exception as exc:
                # run_once records its own failures; these come before it
                self.store.fail_run(run_id, self.clock(), f"{type(exc).__name__}: {exc}",
                                    json.dumps({"stage": stage}))
                raise
            result = run_once(self.store, self.settings, policies, as_of, run_id=run_id,
                              executor=self._pool, clock=self.clock)
            if result.status == "published":
                status.last_ok, status.last_error = True, None
                log.info("%s", result.summary())
            else:
                status.failures += 1
                status.last_ok, status.last_error = False, result.error
                log.error("refresh run %s failed: %s (its detail holds the traceback)", run_id,
                          result.error)
                if self._pool is not None and not _pool_usable(self._pool):
                    # the computing process died (out of memory?): a fresh one for the next run
                    self._pool = _compute_pool()
        except Exception as exc:  # noqa: BLE001 - a failed job never stops the scheduler
            status.failures += 1
            status.last_ok, status.last_error = False, f"{type(exc).__name__}: {exc}"
            log.error("refresh run %s failed: %s\n%s", run_id, status.last_error,
                      traceback.format_exc())
        finally:
            status.runs += 1
            status.last_finished = self.clock()
            status.last_duration_s = time.monotonic() - self._started
            self._running = None
            self._lock.release()
        if result is not None and result.status == "published":
            for listener in self.on_publish:
                listener(run_id)
        return result

    # -- weekly report -----------------------------------------------------------------------

    def scheduled_report(self) -> None:
        """The weekly job: make and keep the report of the last full week. Never raises.

        A week without a published run is recorded as skipped (with the reason), a failure as a
        failure; both are logged and shown with the job's state (``/readyz``).
        """
        from forecaster.report.week import last_full_week

        status = self.report_status
        started = time.monotonic()
        now = self.clock()
        # the last full week of the report's own calendar: Monday 06:00 in Tokyo is Sunday
        # 21:00 UTC, and the week that just ended there is the one people expect
        local = now.replace(tzinfo=UTC).astimezone(ZoneInfo(self.settings.report_timezone))
        week = last_full_week(local.replace(tzinfo=None))
        status.last_started, status.last_week = now, week.label
        with self._report_lock:  # waits for a report the API is making
            self._reporting = week.label
            try:
                policies = self.policies()
                try:
                    inputs = self._report_inputs(policies, week)
                except InputError as exc:  # no run in the week: nothing to report on
                    status.skipped += 1
                    status.last_ok, status.last_skip = None, str(exc)
                    log.warning("weekly report skipped: %s", exc)
                else:
                    made = self._render_and_keep(inputs)
                    status.last_ok, status.last_error = True, None
                    status.last_run_id = made["run_id"]
                    log.info("weekly report of %s kept (run %s, %d bytes)", made["week"],
                             made["run_id"], made["html_bytes"])
            except Exception as exc:  # noqa: BLE001 - a failed job never stops the scheduler
                status.failures += 1
                status.last_ok, status.last_error = False, f"{type(exc).__name__}: {exc}"
                log.error("weekly report of %s failed: %s\n%s", week.label, status.last_error,
                          traceback.format_exc())
            finally:
                status.runs += 1
                status.last_finished = self.clock()
                status.last_duration_s = time.monotonic() - started
                self._reporting = None

    def make_report(self, week: Week | None) -> dict[str, Any]:
        """Make the report of ``week`` now (default: the newest published run's week) and keep
        it, replacing an earlier one of that week (``POST /v1/reports``).

        Returns:
            The kept report: week, week_start, run_id, as_of, made_at, html_bytes.

        Raises:
            ReportBusyError: a report is being made.
            InputError: no run published yet, or none in ``week``; the message names the week.
            ConfigError: the policy file cannot be read.
        """
        from forecaster.report.gather import latest_week

        if not self._report_lock.acquire(blocking=False):
            raise ReportBusyError(self._reporting)
        try:
            chosen = week if week is not None else latest_week(self.store)
            self._reporting = chosen.label
            return self._render_and_keep(self._report_inputs(self.policies(), chosen))
        finally:
            self._reporting = None
            self._report_lock.release()

    def policies(self) -> tuple[Policy, ...]:
        """The policies in force: the built-in ones and the ``policies`` file, read now (it may
        have changed since the last refresh).

        Raises:
            ConfigError: the file cannot be read or holds a bad policy.
        """
        return tuple(load_policies(Path(self.settings.policies) if self.settings.policies
                                   else None))

    def _report_inputs(self, policies: tuple[Policy, ...], week: Week) -> Inputs:
        """What the report of ``week`` reads, read here (the store's process).

        Raises:
            InputError: no run was published in ``week``.
        """
        from forecaster.report.gather import gather

        return gather(self.store, policies, week)

    def _render_and_keep(self, inputs: Inputs) -> dict[str, Any]:
        """Render a gathered report in the worker process and keep it in the store."""
        made_at = self.clock()
        from forecaster.report.gather import render as render_report

        page, figures = self._compute(render_report, inputs, made_at,
                                      demand_factors(self.settings.report_what_if),
                                      self.settings.seed)
        run_id, as_of = int(inputs.run["run_id"]), inputs.run["as_of"]
        self.store.save_report(week=inputs.week.label, week_start=inputs.week.start,
                               run_id=run_id, as_of=as_of, made_at=made_at, html=page,
                               figures=figures)
        return {"week": inputs.week.label, "week_start": inputs.week.start, "run_id": run_id,
                "as_of": as_of, "made_at": made_at, "html_bytes": len(page.encode())}

    def _compute(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in the worker process (in this thread when the service was not
        started); a worker that died is replaced for the next job."""
        pool = self._pool
        if pool is None:
            return work(*args)
        try:
            return pool.submit(work, *args).result()
        except BrokenProcessPool:
            if self._pool is pool:  # the refresh may have replaced it already
                self._pool = _compute_pool()
            raise

    def report_job(self) -> dict[str, Any]:
        """The weekly job's state, as ``/readyz`` shows it."""
        status = self.report_status
        return {"runs": status.runs, "failures": status.failures, "skipped": status.skipped,
                "last_ok": status.last_ok, "last_week": status.last_week,
                "last_error": status.last_error, "last_skip": status.last_skip,
                "last_finished": status.last_finished, "making": self._reporting,
                "next_report_at": self.next_report_at()}

    # -- ingest ------------------------------------------------------------------------------

    def ingest_sources(self, now: datetime) -> None:
        """Ingest the files matching ``ingest_points_from`` / ``ingest_requests_from`` that are
        new or changed since this process last read them (ingest is idempotent, so a file read
        again after a restart changes nothing), then pull the Prometheus sources up to ``now``
        (a failing source is recorded, never raised)."""
        for kind, pattern in (("points", self.settings.ingest_points_from),
                              ("requests", self.settings.ingest_requests_from)):
            if not pattern:
                continue
            fresh = []
            for name in sorted(glob.glob(pattern)):
                # one key for look-up and store: glob keeps "./in/x.csv" as spelled, Path
                # would not, and every refresh re-read every file
                path = Path(name).resolve()
                stat = path.stat()
                key = (stat.st_mtime, stat.st_size)
                if self._seen_files.get(str(path)) != key:
                    fresh.append((path, key))
            if not fresh:
                continue
            results = ingest_files(self.store, [p for p, _ in fresh], kind,
                                   ReadSpec(max_errors=self.settings.max_reported_errors), now)
            for (path, key), outcome in zip(fresh, results, strict=True):
                if isinstance(outcome, InputError):
                    log.error("ingest of %s refused: %s", path, outcome)
                    self.ingest_rows[(kind, "refused_files")] += 1
                    continue
                self._seen_files[str(path)] = key
                self.count_ingest(kind, outcome.stored, outcome.updated, outcome.duplicates,
                                  outcome.rejected)
                log.info("%s", outcome.summary())
        for pulled in self.puller.pull(self.store, now):
            if pulled.report is not None:
                self.count_ingest("prometheus", pulled.report.stored, pulled.report.updated,
                                  pulled.report.duplicates, pulled.report.rejected)

    def count_ingest(self, kind: str, stored: int, updated: int, duplicates: int,
                     rejected: int) -> None:
        """Add one ingest's rows to the counters /metrics reports."""
        for outcome, rows in (("stored", stored), ("updated", updated),
                              ("duplicate", duplicates), ("rejected", rejected)):
            self.ingest_rows[(kind, outcome)] += rows
