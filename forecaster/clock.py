"""The clock and how times are written outside the store.

The store keeps times in UTC without a time zone; everything that leaves the process (the API's
JSON, the CLI's JSON) writes them as ISO 8601 with a ``Z``. This module imports nothing heavy, so
that the command line can start without loading the numerical stack.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def utcnow() -> datetime:
    """The current time in UTC, naive, as the store keeps times."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso_utc(value: datetime) -> str:
    """ISO 8601 text of a time: ``Z`` for a naive (UTC) time, its own offset otherwise.

    Args:
        value: A time; naive times are UTC, as the store keeps them.
    """
    return value.isoformat() + ("Z" if value.tzinfo is None else "")


def json_default(value: object) -> object:
    """``json.dumps(default=...)`` for what frames and rows hold besides JSON types.

    Times become ISO 8601 UTC with ``Z``, dates ISO 8601, durations seconds.

    Raises:
        TypeError: for any other type, as ``json`` expects.
    """
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__}")
