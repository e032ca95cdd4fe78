"""Path and query parameters shared by the routers, with the bounds and help they document.

The documented patterns are what generated clients and fuzzers send; the checks that decide are
the store's (:func:`forecaster.clock.utc_in_range` for times).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BeforeValidator

from forecaster.api.wire import ApiError
from forecaster.clock import MAX_YEAR, MIN_YEAR, utc_in_range
from forecaster.names import NAME_PATTERN, NAME_RULE
from forecaster.types import DECISIONS

NAME = f"^{NAME_PATTERN}$"
UID = f"^{NAME_PATTERN}:{NAME_PATTERN}$"
ID_MAX = 2**63 - 1  # the store's ids are BIGINT
TIME_HELP = (f"ISO 8601 date-time in the years {MIN_YEAR} to {MAX_YEAR} (UTC); an offset is "
             "converted to UTC, none means UTC")
DECISION_HELP = f"only these (repeatable): {', '.join(DECISIONS)}"
# Times in the store's range start with these years (documented, so that generated clients and
# fuzzers send times the API takes; the check itself is utc_in_range's).
YEARS = "^(19[7-9][0-9]|2[01][0-9][0-9])-"
_ISO_DATE = re.compile(r"\s*[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_text(value: object) -> object:
    """Refuse what pydantic would read as an epoch number: times are ISO 8601 text.

    Raises:
        ValueError: ``value`` is neither None, a datetime nor text starting with a date.
    """
    if value is None or isinstance(value, datetime) or (
            isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("expected an ISO 8601 date-time such as 2026-11-26T08:00:00Z")


Time = Annotated[datetime | None, BeforeValidator(iso_text)]
RunId = Annotated[int | None, Query(ge=1, le=ID_MAX,
                                    description="default: the latest published run")]
PathRunId = Annotated[int, Path(ge=1, le=ID_MAX, description="a run id")]
ServiceName = Annotated[str | None, Query(alias="service", pattern=NAME, description=(
    f"only this service ({NAME_RULE})"))]
ServicePath = Annotated[str, Path(pattern=NAME, description=f"service name ({NAME_RULE})")]
SeriesPath = Annotated[str, Path(pattern=UID, description=(
    f"series id service:metric ({NAME_RULE} each)"))]


def time_query(description: str) -> Any:
    """A time query parameter's ``Query``: what it bounds, then the time format.

    Args:
        description: What the time means for the operation.
    """
    return Query(description=f"{description}; {TIME_HELP}",
                 json_schema_extra={"pattern": YEARS})


def utc(value: datetime | None, name: str) -> datetime | None:
    """A time parameter in UTC, refused with 422 (naming it) outside the store's years.

    Args:
        value: The parsed parameter, if given.
        name: Its name, for the message.

    Raises:
        ApiError: (422) the time is outside the store's years.
    """
    if value is None:
        return None
    try:
        return utc_in_range(value, name)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
