"""The HTTP API: FastAPI, versioned under ``/v1``, OpenAPI docs at ``/docs``.

Every read comes from published runs only. Answers of a run are served from memory once built
(they cannot change), each with ``ETag: "run-<id>"`` so that ``If-None-Match`` gets a 304 until
the next run, and ``Cache-Control: max-age`` up to the next scheduled refresh. Frames are JSON by
default, or Arrow IPC streams with ``Accept: application/vnd.apache.arrow.stream`` (the Python
client uses that, so it gets the same polars frames as from a file).

Errors are JSON: ``{"error": {"status": 404, "message": "..."}}``. Every bad request gets a 4xx
that says what was wrong and what is allowed; an unexpected failure gets a 500 that names only an
id to look up in the server log, never the exception. The token is checked before a body is read,
bodies are read up to ``max_request_bytes`` (413 beyond), their nesting is bounded before they are
parsed, and the work per request is linear in its body.

Where things are: :mod:`~forecaster.api.app` wires the app; :mod:`~forecaster.api.deps` holds
what routes share (tokens, the latest run, ETags, the run cache); :mod:`~forecaster.api.wire`
the JSON and Arrow encoding and bounded body reads; :mod:`~forecaster.api.params` and
:mod:`~forecaster.api.models` the documented parameters and bodies; :mod:`~forecaster.api.rows`
a pushed batch's rows; and one router per resource: :mod:`~forecaster.api.health`,
:mod:`~forecaster.api.answers`, :mod:`~forecaster.api.data`, :mod:`~forecaster.api.runs`,
:mod:`~forecaster.api.ingest`, :mod:`~forecaster.api.reports`, :mod:`~forecaster.api.charts`.
"""

from __future__ import annotations

from forecaster.api.app import create_app
from forecaster.api.data import downsample
from forecaster.api.deps import MAX_CACHED_BODIES, RunCache
from forecaster.api.rows import BatchRows, merge_report, rows_frame
from forecaster.api.wire import ApiError, parse_json, read_limited, too_deep

__all__ = ["MAX_CACHED_BODIES", "ApiError", "BatchRows", "RunCache", "create_app", "downsample",
           "merge_report", "parse_json", "read_limited", "rows_frame", "too_deep"]
