"""ISO weeks, the unit of the capacity-planning report: ``2026-W48`` is Monday 00:00 UTC to the
next Monday."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from forecaster.clock import MAX_YEAR, MIN_YEAR

_WEEK_RE = re.compile(r"(\d{4})-W(\d{2})")


@dataclass(frozen=True, slots=True)
class Week:
    """One ISO week.

    Attributes:
        year: ISO year (which can differ from the calendar year around New Year).
        number: ISO week number, 1 to 52 or 53.
    """

    year: int
    number: int

    @property
    def label(self) -> str:
        """``YYYY-Www``, the form URLs and file names use."""
        return f"{self.year}-W{self.number:02d}"

    @property
    def start(self) -> datetime:
        """Monday 00:00 UTC (naive, as the store keeps times)."""
        monday = date.fromisocalendar(self.year, self.number, 1)
        return datetime(monday.year, monday.month, monday.day)

    @property
    def end(self) -> datetime:
        """The next Monday 00:00 UTC: the week is ``start <= t < end``."""
        return self.start + timedelta(days=7)

    def previous(self) -> Week:
        """The week before."""
        return week_of(self.start - timedelta(days=1))

    def __str__(self) -> str:
        return self.label


def week_of(moment: datetime) -> Week:
    """The ISO week holding ``moment`` (UTC, naive)."""
    year, number, _ = moment.isocalendar()
    return Week(year, number)


def last_full_week(now: datetime) -> Week:
    """The latest week that has ended by ``now``: the one a Monday-morning report is about."""
    return week_of(now).previous()


def parse_week(text: str) -> Week:
    """``2026-W48`` -> :class:`Week`.

    Raises:
        ValueError: not of the form ``YYYY-Www``, or a week the year does not have; the message
            names the text and the form.
    """
    match = _WEEK_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"week {text!r} is not of the form YYYY-Www (for example 2026-W48)")
    year, number = int(match[1]), int(match[2])
    if not MIN_YEAR <= year <= MAX_YEAR:  # the store's years; also keeps `date` from failing
        raise ValueError(f"week {text!r} is outside the years {MIN_YEAR} to {MAX_YEAR} "
                         "(YYYY-Www, for example 2026-W48)")
    try:
        date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ValueError(f"week {text!r} does not exist: {year} has weeks 01 to "
                         f"{date(year, 12, 28).isocalendar()[1]:02d}") from None
    return Week(year, number)
