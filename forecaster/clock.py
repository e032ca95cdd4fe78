"""The clock and how times are written outside the store.

The store keeps times in UTC without a time zone; everything that leaves the process (the API's
JSON, the CLI's JSON) writes them as ISO 8601 with a ``Z``. This module imports nothing heavy, so
that the command line can start without loading the numerical stack.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

# Timestamps outside this range are almost always unit mistakes (ms read as s, or a zero date).
MIN_YEAR = 1970
MAX_YEAR = 2199



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


def to_utc_naive(value: datetime) -> datetime:
    """A time as the store keeps it: UTC without an offset (a naive time is taken as UTC).

    Raises:
        ValueError: the time in UTC falls outside the years a ``datetime`` can hold (year 1
            with a positive offset, year 9999 with a negative one).
    """
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError(f"time {value.isoformat()} is outside the years 1 to 9999 once "
                         "converted to UTC") from None


def utc_in_range(value: datetime, what: str) -> datetime:
    """``value`` as :func:`to_utc_naive` gives it, checked to lie in ``MIN_YEAR..MAX_YEAR``.

    Args:
        value: The time, naive (UTC) or with an offset.
        what: What the time is (a field or parameter name), for the message.

    Raises:
        ValueError: the time is outside the range, naming ``what`` and the range.
    """
    try:
        utc = to_utc_naive(value)
    except ValueError:
        utc = None
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"{what}: time {value.isoformat()} is outside the allowed range "
                         f"(years {MIN_YEAR} to {MAX_YEAR}, UTC)")
    return utc
