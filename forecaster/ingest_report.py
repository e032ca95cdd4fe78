"""What one ingest did: rows read, stored, updated, duplicate and rejected, with the first
errors."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RowError:
    """One rejected input row.

    Attributes:
        source: The file name, or another label of where the rows came from.
        row: 1-based data row number (the header is not counted).
        field: The column whose value was refused.
        message: What was wrong and what is allowed.
    """

    source: str
    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: row {self.row}: {self.field}: {self.message}"


@dataclass(slots=True)
class IngestReport:
    """What one ingest call did.

    Attributes:
        source: Where the rows came from.
        rows: Rows read.
        stored: Points written that were not stored before.
        updated: Points whose stored value changed.
        duplicates: Rows that changed nothing (same point already stored, or repeated in the input).
        rejected: Rows refused; the first of them are in ``errors``.
        errors: Up to ``max_errors`` rejected rows, in input order.
        strict_aborted: True when ``strict`` was asked and nothing was stored because of rejects.
        requests_stored: For request logs: requests not seen before.
    """

    source: str
    rows: int = 0
    stored: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    strict_aborted: bool = False
    requests_stored: int | None = None

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return self.rejected == 0

    def summary(self) -> str:
        """One line a person can read."""
        parts = [f"{self.source}: {self.rows} rows"]
        if self.requests_stored is not None:
            parts.append(f"{self.requests_stored} new requests")
        parts += [
            f"{self.stored} points stored",
            f"{self.updated} updated",
            f"{self.duplicates} duplicate",
            f"{self.rejected} rejected",
        ]
        line = ", ".join(parts)
        if self.strict_aborted:
            line += " (strict: nothing stored)"
        return line
