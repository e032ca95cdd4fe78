"""A pushed batch's rows as the ingest reads them: JSON row objects -> a frame of text columns.

The ingest then validates them like a CSV file's rows. A row with a field no store can keep is
left out here and reported with its row and field; one bad row does not cost the others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from forecaster.api.wire import ApiError, shown
from forecaster.ingest_report import IngestReport, RowError
from forecaster.names import MAX_UNIT_CHARS

# Bounds on what a request body may hold. A batch is an array of flat row objects, or an object
# holding that array: 3 levels of arrays and objects, and one more so that an array or object
# given as a field value (in either form) rejects its row, not the batch.
BATCH_DEPTH = 4
MAX_FIELD_CHARS = 1_000  # any one field of a batch row, as text
SCALARS = "text, a number, true/false or null"


class _BadField(ValueError):
    """A field value a batch row cannot have: that row is rejected, the batch goes on."""


@dataclass(frozen=True, slots=True)
class BatchRows:
    """A batch's rows as the ingest reads them, less the rows refused on the way.

    Attributes:
        frame: The rows that go to the ingest, as text columns.
        kept: The batch index (0-based) of each frame row, in order; None when no row was
            refused, so that frame row i is batch row i.
        rejected: How many rows were refused.
        errors: The first refused rows (row 1 is the first element of the batch), at most the
            ``max_errors`` asked for.
    """

    frame: pl.DataFrame
    kept: list[int] | None
    rejected: int
    errors: list[RowError]


def rows_frame(rows: list[Any], known: dict[str, bool], max_errors: int = 20,
               source: str = "batch") -> BatchRows:
    """JSON rows as a frame of text columns, validated by the ingest like a CSV file's (row 1 is
    the first element of the batch); one pass over the rows.

    A row with a field no store can keep (an array or object, text longer than
    ``MAX_FIELD_CHARS``, a unit longer than ``MAX_UNIT_CHARS``, a lone surrogate) is left out of
    the frame and reported with its row number and field: one bad row does not cost the others.

    Args:
        rows: The batch's row objects.
        known: The columns this kind of batch has (``ingest.POINT_COLUMNS`` or
            ``REQUEST_COLUMNS``).
        max_errors: How many refused rows to describe (the others are only counted).
        source: The label of the rows, for the errors.

    Raises:
        ApiError: (422) at the first row that is not an object or the first key that is not one
            of ``known``: the batch's shape is wrong, so none of it is read.
    """
    n = len(rows)
    columns: dict[str, list[str | None]] = {}
    keep: list[bool] | None = None
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ApiError(422, f"row {i + 1} is not a JSON object (it is "
                                f"{_json_type(row)}); each row is an object of "
                                f"{', '.join(known)}")
        bad = False
        for name, value in row.items():
            column = columns.get(name)
            if column is None:
                if name not in known:
                    raise ApiError(422, f"row {i + 1}: unknown field {shown(name)}; known: "
                                        f"{', '.join(known)}")
                column = columns[name] = [None] * n
            if bad:
                continue  # one reason per row; later keys are still checked for the shape
            try:
                column[i] = _text(value, name)
            except _BadField as exc:
                bad = True
                rejected += 1
                if keep is None:
                    keep = [True] * n
                keep[i] = False
                if len(errors) < max_errors:
                    errors.append(RowError(source, i + 1, name, str(exc)))
    frame = pl.DataFrame(columns, schema={name: pl.String for name in columns})
    if keep is None:
        return BatchRows(frame, None, 0, [])
    kept = [i for i, ok in enumerate(keep) if ok]
    return BatchRows(frame.filter(pl.Series(keep)), kept, rejected, errors)


def merge_report(report: IngestReport, batch: BatchRows, max_errors: int) -> IngestReport:
    """The ingest's report on ``batch.frame`` as a report on the whole batch: row numbers of the
    batch, and the rows refused before the ingest counted and listed in row order.

    Args:
        report: The ingest's report on the rows it was given.
        batch: What :func:`rows_frame` made of the batch.
        max_errors: How many refused rows to describe.
    """
    if batch.kept is None:
        return report
    kept = batch.kept
    moved = [RowError(e.source, kept[e.row - 1] + 1, e.field, e.message) for e in report.errors]
    return replace(report, rows=report.rows + batch.rejected,
                   rejected=report.rejected + batch.rejected,
                   errors=sorted(moved + batch.errors, key=lambda e: e.row)[:max_errors])


def unicode_problem(text: str, name: str) -> str | None:
    """Why ``text`` cannot be stored (a lone surrogate escape such as "\\ud800"), or None.

    Args:
        text: A field's text.
        name: The field's name, for the message.
    """
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return (f"{name} is not valid Unicode text (a lone surrogate at character "
                f"{exc.start + 1}); a field is UTF-8 text")
    return None


def _json_type(value: object) -> str:
    """What kind of JSON value ``value`` is, in words."""
    return ("an array" if isinstance(value, list) else "an object" if isinstance(value, dict)
            else "null" if value is None else "true/false" if isinstance(value, bool)
            else "a number" if isinstance(value, int | float) else "text")


def _quoted(text: str) -> str:
    """Text for a message, cut to 60 characters (the store's messages cut the same way)."""
    return repr(text[:60]) + ("..." if len(text) > 60 else "")


def _text(value: object, name: str) -> str | None:
    """A scalar field as the text a CSV cell would hold.

    Raises:
        _BadField: the value is an array or object, too long, or not valid Unicode text.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise _BadField(f"{name} is {_json_type(value)}; a field is {SCALARS}")
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_FIELD_CHARS:
        raise _BadField(f"{name} {_quoted(text)} is {len(text)} characters long; at most "
                        f"{MAX_FIELD_CHARS}")
    problem = unicode_problem(text, name)
    if problem is not None:
        raise _BadField(problem)
    if name == "unit":
        # Measured as the store does (spaces trimmed), with the store's message: a file's unit
        # gets the same check in CHECK_POINTS. Refused here, the unit never takes part in
        # choosing a new series' unit, so the batch's other rows are not judged against it.
        unit = text.strip(" ")
        if len(unit) > MAX_UNIT_CHARS:
            raise _BadField(f"unit {_quoted(unit)} is {len(unit)} characters long; at most "
                            f"{MAX_UNIT_CHARS}")
    return text
