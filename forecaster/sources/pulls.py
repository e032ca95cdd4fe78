"""The service's continuous pull: before each refresh, what is new in each configured Prometheus
source since its last pull, and what each source's last pull did (``/readyz``, ``/metrics``).

Each source is pulled from where its last successful pull ended, less ``prometheus_overlap``
(samples that arrive late change the most recent evaluations; points are idempotent, so the
overlap comes back as duplicates or updates), to the refresh's time. How far each source got is
kept in memory only: after a restart, or for a source new in the file, the pull starts
``prometheus_lookback`` back, which stores nothing twice (the store's ingest log would also do,
but it keys inputs by label, and a restart that re-reads a week costs seconds). The sources file
is read again at every pull, so edits apply at the next refresh; a file that cannot be read is
recorded as the failure of ``sources_file``. A failing source never stops the others or the
refresh: its failure is recorded, logged and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from forecaster.config import Settings
from forecaster.ingest_report import IngestReport
from forecaster.sources.presets import load_sources
from forecaster.sources.prometheus import (
    EPOCH,
    PrometheusError,
    Pull,
    Source,
    connection,
    ingest_all,
)
from forecaster.store import Store

log = logging.getLogger("forecaster.prometheus")

SOURCES_FILE = "sources_file"  # the status of the sources file itself


@dataclass(slots=True)
class SourceStatus:
    """One source as the service last pulled it (``/readyz``, ``/metrics``).

    Attributes:
        source: Its name.
        url: The Prometheus it is read from.
        pulls: Pulls tried by this process.
        failures: Pulls that failed (nothing stored).
        last_attempt: When the last pull was tried (the service's clock).
        last_ok: Whether it succeeded; None before the first.
        last_error: Why the last pull failed, until one succeeds.
        pulled_until: The end of the last successful pull: the next starts there, less the
            overlap.
        last_rows: Points the last successful pull passed to the store.
        last_stored: ... of which new.
        last_updated: ... of which changed a stored value.
        last_skipped: NaN and infinite values it skipped.
        last_warnings: What it left out and why.
    """

    source: str
    url: str
    pulls: int = 0
    failures: int = 0
    last_attempt: datetime | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    pulled_until: datetime | None = None
    last_rows: int = 0
    last_stored: int = 0
    last_updated: int = 0
    last_skipped: int = 0
    last_warnings: list[str] = field(default_factory=list)


class Puller:
    """Pulls the configured sources and keeps how far each got (see the module's docstring).

    Args:
        settings: ``prometheus_*`` settings and ``max_reported_errors``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._status: dict[str, SourceStatus] = {}

    @property
    def configured(self) -> bool:
        """Whether a sources file is set."""
        return bool(self.settings.prometheus_sources)

    def statuses(self) -> list[SourceStatus]:
        """Every source pulled so far (and the sources file's own, if it failed), by name."""
        return sorted(self._status.values(), key=lambda s: s.source)

    def pull(self, store: Store, now: datetime) -> list[Pull]:
        """Pull every configured source up to ``now``; never raises.

        Returns:
            The successful pulls (their reports count the rows).
        """
        if not self.configured:
            return []
        path = Path(self.settings.prometheus_sources)
        try:
            conn = connection(self.settings)
            sources = load_sources(path)
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop the refresh
            self._record_failure(SOURCES_FILE, str(path), now, f"{exc}")
            log.error("Prometheus sources not pulled: %s", exc)
            return []
        # a source taken out of the file is no longer shown; the file itself is fine now
        names = {s.name for s in sources}
        self._status = {k: v for k, v in self._status.items() if k in names}
        jobs = [(s, self._start(s, now), now) for s in sources]
        results = ingest_all(store, jobs, conn, now, max_errors=self.settings.max_reported_errors,
                             contain=True)
        done = []
        for (source, _, _), result in zip(jobs, results, strict=True):
            url = source.url or conn.url
            if isinstance(result, PrometheusError):
                self._record_failure(source.name, url, now, str(result))
                log.error("Prometheus pull failed: %s", result)
                continue
            status = self._status.setdefault(source.name, SourceStatus(source.name, url))
            report = result.report or IngestReport(source=source.name)
            status.url, status.pulls, status.last_attempt = url, status.pulls + 1, now
            status.last_ok, status.last_error, status.pulled_until = True, None, now
            status.last_rows, status.last_stored = report.rows, report.stored
            status.last_updated, status.last_skipped = report.updated, result.nan + result.infinite
            status.last_warnings = list(result.warnings)
            for warning in result.warnings:
                log.warning("Prometheus source %s: %s", source.name, warning)
            log.info("%s", result.summary())
            done.append(result)
        return done

    def _start(self, source: Source, now: datetime) -> datetime:
        status = self._status.get(source.name)
        earliest = now - self.settings.prometheus_lookback
        if status is None or status.pulled_until is None:
            return earliest
        return max(earliest, min(status.pulled_until, now) - self.settings.prometheus_overlap)

    def _record_failure(self, name: str, url: str, now: datetime, error: str) -> None:
        status = self._status.setdefault(name, SourceStatus(name, url))
        status.url, status.pulls, status.failures = url, status.pulls + 1, status.failures + 1
        status.last_attempt, status.last_ok, status.last_error = now, False, error

    def report(self) -> dict[str, Any]:
        """The sources' state, as ``/readyz`` shows it."""
        statuses = self.statuses()
        return {
            "configured": self.configured,
            "ok": all(s.last_ok is not False for s in statuses),
            "failing": [s.source for s in statuses if s.last_ok is False],
            "sources": [{
                "source": s.source, "url": s.url, "ok": s.last_ok, "error": s.last_error,
                "pulled_until": s.pulled_until, "last_attempt": s.last_attempt,
                "pulls": s.pulls, "failures": s.failures, "rows": s.last_rows,
                "stored": s.last_stored, "updated": s.last_updated, "skipped": s.last_skipped,
                "warnings": s.last_warnings} for s in statuses],
        }


def epoch_seconds(value: datetime) -> float:
    """A naive UTC time as seconds since the epoch (``/metrics`` timestamps)."""
    return (value - EPOCH).total_seconds()


__all__ = ["SOURCES_FILE", "Puller", "SourceStatus", "epoch_seconds"]


