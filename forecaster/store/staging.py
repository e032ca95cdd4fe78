"""Staging an input for ingest: what to read and how, the input exposed to SQL with its columns
read as typed expressions, rejected rows counted and reported, the ingest log.

Points (:mod:`forecaster.store.points`) and request logs (:mod:`forecaster.store.request_logs`)
are both staged here, then checked and stored by their own module.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from forecaster.clock import MAX_YEAR, MIN_YEAR
from forecaster.errors import InputError
from forecaster.ingest_report import IngestReport, RowError
from forecaster.names import NAME_RULE, is_valid_name
from forecaster.store import staging_sql as sql
from forecaster.store.query import quote_ident

_TIMESTAMP_TYPES = ("TIMESTAMP", "DATE")
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                  "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")

# A staged input's columns: target name -> (source column, DuckDB type).
Columns = dict[str, tuple[str, str]]


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


# ---------------------------------------------------------------------------------------------
# Reading an input


def source_columns(cur: duckdb.DuckDBPyConnection, source: Source) -> dict[str, str]:
    """The columns of an input and their DuckDB types, in order.

    Raises:
        InputError: the input cannot be read.
    """
    rel = _relation(cur, source)
    return {name: str(kind) for name, kind in zip(rel.columns, rel.types, strict=True)}


def stage(cur: duckdb.DuckDBPyConnection, source: Source, options: IngestOptions) -> Columns:
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
        # it, inside the ingest's transaction (see reading): nothing of the file is stored.
        cur.execute(sql.SRC_FROM_COLUMN.format(row=quote_ident("file_row_number")))
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


@contextmanager
def reading(source: Source) -> Iterator[None]:
    """Turn DuckDB's error on a Parquet page it cannot decode, raised by whichever statement of
    the ingest reads it first, into the input's error (the transaction around it rolls back)."""
    try:
        yield
    except duckdb.Error as exc:
        if source.fmt != "parquet":
            raise
        raise _unreadable(source, exc, "cannot read") from None


def drop_staging(cur: duckdb.DuckDBPyConnection) -> None:
    """Drop what staging and checking an input left on ``cur``."""
    for statement in sql.DROP_STAGING:
        cur.execute(statement)
    for name in ("meta", "key_series", "raw_input"):
        try:
            cur.unregister(name)
        except duckdb.Error:
            pass


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


def _unreadable(source: Source, exc: BaseException, doing: str) -> InputError:
    """The error for an input DuckDB could not read, saying why where we can tell better."""
    problem = None
    if source.path is not None and source.fmt in ("csv", "json"):
        # DuckDB's CSV sniffer reports bad bytes as "cannot detect the dialect"
        problem = _utf8_problem(source.path)
    return InputError(f"{source.label}: {doing}: {problem or _read_error(exc)}")


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


# ---------------------------------------------------------------------------------------------
# A column as a SQL expression


def _is_numeric(type_name: str) -> bool:
    return type_name.startswith(_NUMERIC_TYPES)


def number_field(columns: Columns, target: str, missing: str) -> tuple[str, str]:
    """(raw, number) expressions of an optional numeric field; ``missing`` for both when the
    input has no such column."""
    if target not in columns:
        return missing, missing
    name, type_name = columns[target]
    c = quote_ident(name)
    if _is_numeric(type_name):
        return sql.RAW_NATIVE.format(c=c), sql.NUMBER_FROM_NATIVE.format(c=c)
    t = as_text(columns, target)
    return sql.RAW_TEXT.format(t=t), sql.NUMBER_FROM_TEXT.format(t=t)


def as_text(columns: Columns, target: str) -> str:
    """The expression reading a source column as text (a JSON string unquoted)."""
    name, type_name = columns[target]
    template = sql.TEXT_OF_JSON if type_name == "JSON" else sql.TEXT_OF_COLUMN
    return template.format(c=quote_ident(name))


def ts_exprs(columns: Columns) -> dict[str, str]:
    """The ``ts_raw`` and ``ts`` expressions of the time column, by what it holds."""
    name, type_name = columns["ts"]
    c = quote_ident(name)
    if type_name.startswith(_TIMESTAMP_TYPES):
        return {"ts_raw": sql.RAW_NATIVE.format(c=c), "ts": sql.TS_FROM_TIMESTAMP.format(c=c)}
    if _is_numeric(type_name):
        return {"ts_raw": sql.RAW_NATIVE.format(c=c), "ts": sql.TS_FROM_NUMBER.format(c=c)}
    t = as_text(columns, "ts")
    return {"ts_raw": sql.RAW_TEXT.format(t=t), "ts": sql.TS_FROM_TEXT.format(t=t)}


def text(columns: Columns, target: str, missing: str) -> str:
    """The trimmed text of an optional column (NULL when blank); ``missing`` without one."""
    if target not in columns:
        return missing
    return sql.RAW_TEXT.format(t=as_text(columns, target))


# ---------------------------------------------------------------------------------------------
# Checks and what is reported


def name_problem(field: str, name: str | None) -> str | None:
    """Why ``name`` is not a valid service or metric name, or None when it is."""
    if name is None:
        return f"missing {field}"
    if not is_valid_name(name):
        return f"{field} {name[:60]!r} is not a valid name; allowed: {NAME_RULE}"
    return None


def report_counts(cur: duckdb.DuckDBPyConnection, report: IngestReport, options: IngestOptions,
                  counts: list[tuple[int, int, int]]) -> list[int]:
    """Fill the report's row and reject counts, and list the first rejected rows of view
    ``checked``; return the keys that have accepted rows.

    Args:
        cur: The cursor the input is staged on.
        report: The report to fill.
        options: How the input is read (``max_errors``, ``strict``).
        counts: (key id, rows, rejected rows) per key of the input.
    """
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


def all_rejects(cur: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every rejected row of view ``checked`` (row, field, message)."""
    return cur.sql(sql.ALL_REJECTS).pl()


def log_ingest(cur: duckdb.DuckDBPyConnection, report: IngestReport, kind: str,
               now: datetime) -> None:
    """Record an ingest in ``ingest_log``, in its transaction on ``cur``."""
    if report.strict_aborted:
        # Nothing of this input is kept, but the attempt is: roll back and log alone.
        cur.execute("ROLLBACK")
        cur.execute("BEGIN TRANSACTION")
    cur.execute(sql.LOG_INGEST, [now, report.source, kind, report.rows, report.stored,
                                 report.updated, report.duplicates, report.rejected,
                                 report.strict_aborted])
