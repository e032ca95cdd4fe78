"""Names of services, metrics and series, and the long-frame column names."""

from __future__ import annotations

import re

# Long format, as statsforecast and utilsforecast use it.
UNIQUE_ID = "unique_id"
DS = "ds"
Y = "y"

# A service or metric name ends up in URLs (`/v1/series/{service}:{metric}`) and in Prometheus
# labels, so it is kept to a conservative alphabet.
NAME_PATTERN = r"[A-Za-z0-9_.\-]{1,200}"
NAME_RULE = "1 to 200 of the characters A-Z a-z 0-9 _ . -"
_NAME_RE = re.compile(NAME_PATTERN)

# A unit is a short label (ms, 1/s, %): longer text is a mistake (a description in the wrong
# column), refused per row with one limit and one message in files and API batches.
MAX_UNIT_CHARS = 32


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a valid service or metric name (see ``NAME_RULE``)."""
    return _NAME_RE.fullmatch(name) is not None


def unique_id(service: str, metric: str) -> str:
    """The series id used in long frames and URLs: ``service:metric``."""
    return f"{service}:{metric}"


def split_unique_id(uid: str) -> tuple[str, str]:
    """Split ``service:metric`` back into its parts.

    Raises:
        ValueError: when ``uid`` is not of that form.
    """
    service, sep, metric = uid.partition(":")
    if not sep or not is_valid_name(service) or not is_valid_name(metric):
        raise ValueError(f"series id {uid!r} is not of the form service:metric ({NAME_RULE} each)")
    return service, metric
