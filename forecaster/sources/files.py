"""Files, request logs and frames -> validated rows -> the store.

This module decides *what* to read (format, which column is which, time unit); the store
validates and merges the rows inside DuckDB, so that large inputs never pass through Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from forecaster.errors import InputError
from forecaster.ingest_report import IngestReport
from forecaster.store import IngestOptions, Source, Store

# Target columns: name -> required.
POINT_COLUMNS: dict[str, bool] = {
    "ts": True, "service": True, "metric": True, "value": True, "unit": False,
}
REQUEST_COLUMNS: dict[str, bool] = {
    "ts": True, "service": True, "request_id": False, "latency_ms": False, "ttft_ms": False,
    "status": False, "error": False, "prompt_tokens": False, "completion_tokens": False,
    "quality_score": False, "feedback": False,
}

# Microseconds per unit of an epoch-number timestamp.
TIME_UNITS: dict[str, float] = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}

_FORMATS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "json", ".ndjson": "json", ".json": "json",
}
# Columns a reader adds on its own.
_READER_COLUMNS = {"file_row_number"}


@dataclass(frozen=True, slots=True)
class ReadSpec:
    """How to read inputs, beyond their content.

    Attributes:
        columns: Target column -> source column, for inputs whose columns are named otherwise
            (``{"ts": "TIMESTAMP"}``).
        service: The service of every row, for inputs without a service column.
        time_unit: ``s``, ``ms``, ``us`` or ``ns`` when times are epoch numbers; None for
            ISO 8601 text (or native timestamps).
        fmt: ``csv``, ``parquet`` or ``json``; None to go by the file name.
        strict: Store nothing from an input that has a rejected row.
        ignore_extra: Skip columns that are not understood instead of refusing the input.
        max_errors: How many rejected rows each report lists.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    service: str | None = None
    time_unit: str | None = None
    fmt: str | None = None
    strict: bool = False
    ignore_extra: bool = False
    max_errors: int = 20


def detect_format(path: Path) -> str:
    """The format of a file from its name (``.gz``/``.zst`` compression allowed).

    Raises:
        InputError: the name does not say.
    """
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in (".gz", ".zst"):
        suffixes.pop()
    if suffixes and suffixes[-1] in _FORMATS:
        return _FORMATS[suffixes[-1]]
    raise InputError(
        f"{path}: cannot tell the format from the name; use a .csv, .parquet or .jsonl name "
        "or pass --format csv|parquet|json")


def plan_columns(
    label: str,
    available: Iterable[str],
    allowed: Mapping[str, bool],
    spec: ReadSpec,
) -> dict[str, str]:
    """Decide which input column feeds each target column.

    Args:
        label: The input's name, for messages.
        available: The input's column names.
        allowed: Target columns and whether each is required.
        spec: Renames, a constant service, and whether to skip unknown columns.

    Returns:
        Target -> source column, for every target the input provides.

    Raises:
        InputError: a required column is missing, a rename names no column or no target, or
            an unknown column is present and ``spec.ignore_extra`` is False.
    """
    available = [c for c in available if c not in _READER_COLUMNS]
    for target, source in spec.columns.items():
        if target not in allowed:
            raise InputError(f"--column {target}={source}: {target!r} is not a column we read; "
                             f"known: {', '.join(allowed)}")
        if source not in available:
            raise InputError(f"{label}: --column {target}={source}: no column {source!r}; "
                             f"columns found: {', '.join(available)}")
    plan = dict(spec.columns)
    renamed = set(plan.values())
    for col in available:
        if col in renamed:
            continue
        if col in allowed and col not in plan:
            plan[col] = col
        elif not spec.ignore_extra:
            raise InputError(
                f"{label}: unknown column {col!r}; known: {', '.join(allowed)}. Rename it with "
                f"--column NAME={col}, or skip unknown columns with --ignore-extra")
    if spec.service is not None:
        if "service" in plan:
            raise InputError(f"{label}: has a service column and --service was given too; "
                             "use one of them")
        plan_needed = {k: v for k, v in allowed.items() if k != "service"}
    else:
        plan_needed = dict(allowed)
    missing = [t for t, required in plan_needed.items() if required and t not in plan]
    if missing:
        hint = " (or give --service NAME)" if "service" in missing else ""
        raise InputError(f"{label}: missing column(s) {', '.join(missing)}{hint}; "
                         f"columns found: {', '.join(available)}")
    return plan


def _options(plan: dict[str, str], spec: ReadSpec, now: datetime) -> IngestOptions:
    if spec.time_unit is not None and spec.time_unit not in TIME_UNITS:
        raise InputError(f"time unit {spec.time_unit!r} is not one of {', '.join(TIME_UNITS)}")
    return IngestOptions(
        columns=plan, now=now, service=spec.service,
        us_per_unit=TIME_UNITS[spec.time_unit] if spec.time_unit else None,
        strict=spec.strict, max_errors=spec.max_errors)


def _file_source(path: Path, spec: ReadSpec) -> Source:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    return Source(label=str(path), path=path, fmt=spec.fmt or detect_format(path))


def _frame_source(frame: Any, label: str) -> Source:
    """Arrow from a polars or pandas frame (or an Arrow table)."""
    if isinstance(frame, pa.Table):
        table = frame
    elif hasattr(frame, "to_arrow"):  # polars
        table = frame.to_arrow()
    else:
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{label}: expected a polars or pandas frame, got "
                             f"{type(frame).__name__}: {exc}") from None
    return Source(label=label, table=table)


def _is_blank(path: Path) -> bool:
    """Whether a file holds nothing but white space (only a small file is read to tell)."""
    try:
        size = path.stat().st_size
        return size == 0 or (size <= 4096 and not path.read_bytes().strip())
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _columns(store: Store, source: Source) -> dict[str, str]:
    """The input's columns, refusing JSON lines that are not objects.

    Raises:
        InputError: the input cannot be read, or its JSON lines are not objects.
    """
    columns = store.source_columns(source)
    if source.fmt == "json" and columns == {"json": "JSON"}:
        # DuckDB's name for the whole value of a line that is not an object
        raise InputError(f"{source.label}: each line must be one JSON object with keys such as "
                         '{"ts": "2026-11-26T08:00:00Z", "service": "chat", ...}')
    return columns


def ingest(store: Store, source: Source, kind: str, spec: ReadSpec, now: datetime) -> IngestReport:
    """Validate and store one input of points (``kind="points"``) or requests.

    An empty file (nothing but white space) is an input of no rows: nothing is stored.

    Raises:
        InputError: the input as a whole cannot be used (format, columns).
    """
    if source.path is not None and _is_blank(source.path):
        return IngestReport(source=source.label,
                            requests_stored=None if kind == "points" else 0)
    allowed = POINT_COLUMNS if kind == "points" else REQUEST_COLUMNS
    plan = plan_columns(source.label, _columns(store, source), allowed, spec)
    options = _options(plan, spec, now)
    if kind == "points":
        return store.ingest_points(source, options)
    return store.ingest_requests(source, options)


def ingest_files(
    store: Store, paths: Iterable[Path], kind: str, spec: ReadSpec, now: datetime
) -> list[IngestReport | InputError]:
    """Ingest files one by one; a file that cannot be used does not stop the others.

    Returns:
        Per file, its report or the error that refused it.
    """
    results: list[IngestReport | InputError] = []
    for path in paths:
        try:
            results.append(ingest(store, _file_source(Path(path), spec), kind, spec, now))
        except InputError as exc:
            results.append(exc)
    return results


def ingest_points_frame(
    store: Store, frame: Any, now: datetime, spec: ReadSpec | None = None, label: str = "frame"
) -> IngestReport:
    """Store points from a polars or pandas frame (columns ``ts, service, metric, value``)."""
    return ingest(store, _frame_source(frame, label), "points", spec or ReadSpec(), now)


def ingest_requests_frame(
    store: Store, frame: Any, now: datetime, spec: ReadSpec | None = None, label: str = "frame"
) -> IngestReport:
    """Store request-log rows from a polars or pandas frame and roll them up."""
    return ingest(store, _frame_source(frame, label), "requests", spec or ReadSpec(), now)


def rejects_of_file(store: Store, path: Path, kind: str, spec: ReadSpec,
                    now: datetime) -> pl.DataFrame:
    """Every rejected row of a file as a polars frame (row, field, message); stores nothing."""
    source = _file_source(Path(path), spec)
    if _is_blank(Path(path)):
        return pl.DataFrame(schema={"row": pl.Int64, "field": pl.String, "message": pl.String})
    allowed = POINT_COLUMNS if kind == "points" else REQUEST_COLUMNS
    plan = plan_columns(source.label, _columns(store, source), allowed, spec)
    return store.all_rejects(source, _options(plan, spec, now), kind)
