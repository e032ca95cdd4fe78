"""What goes over the wire: the error type, JSON and Arrow bodies, and bounded body reads.

Every JSON answer is written by :func:`dumps` (times as ISO 8601 with ``Z``, compact separators,
NaN as null in frames), so that a body built once and cached is the body a client gets.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import polars as pl
from fastapi import Request, Response
from starlette.exceptions import HTTPException

from forecaster.clock import json_default
from forecaster.media import ARROW

JSON = "application/json"
# Text columns of the store that hold JSON documents: answered as JSON, not as strings.
_JSON_COLUMNS = ("precursors", "features", "reliability")


class ApiError(HTTPException):
    """An error answered as JSON with a clear message."""


def shown(value: object, limit: int = 60) -> str:
    """A value for a message, cut short: a client's input must not make the answer huge.

    Args:
        value: What the client sent.
        limit: The most characters of its ``repr`` to show.
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def problems(errors: list[Any]) -> str:
    """Pydantic's validation errors as one line naming each field and what it got.

    Args:
        errors: ``ValidationError.errors()`` or ``RequestValidationError.errors()``.
    """
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
        + (f" (got {shown(e['input'])})"
           if "input" in e and not isinstance(e["input"], dict | list) else "")
        for e in errors)


def records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON objects: NaN as null, JSON text columns parsed.

    Args:
        frame: Rows read from the store.
    """
    # NaN is no JSON: a float that is not a number is written as null
    rows = frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None)).to_dicts()
    for name in _JSON_COLUMNS:
        if name in frame.columns:
            for row in rows:
                if isinstance(row[name], str):
                    row[name] = json.loads(row[name])
    return rows


def dumps(body: object) -> bytes:
    """``body`` as compact JSON bytes (times as ISO 8601 in UTC)."""
    return json.dumps(body, default=json_default, separators=(",", ":")).encode()


def arrow(frame: pl.DataFrame) -> bytes:
    """``frame`` as an Arrow IPC stream."""
    sink = io.BytesIO()
    frame.write_ipc_stream(sink)
    return sink.getvalue()


def wants_arrow(request: Request) -> bool:
    """Whether the client asked for Arrow IPC streams (``Accept``)."""
    return ARROW in request.headers.get("accept", "")


def json_response(body: object, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """A JSON answer written by :func:`dumps`.

    Args:
        body: What to answer.
        status: The HTTP status code.
        headers: Extra headers (ETag, Cache-Control, Location, ...).
    """
    return Response(dumps(body), status_code=status, media_type=JSON, headers=headers)


def frame_response(request: Request, frame: pl.DataFrame, wrap: dict[str, Any],
                   status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A frame as Arrow when asked for, else JSON: ``{**wrap, "items": [rows]}``.

    Args:
        request: The request (its ``Accept`` header chooses).
        frame: The rows to answer.
        wrap: Keys that come before ``items`` in JSON (Arrow carries the frame only).
        status: The HTTP status code.
        headers: Extra headers.
    """
    if wants_arrow(request):
        return Response(arrow(frame), status_code=status, media_type=ARROW, headers=headers)
    return json_response({**wrap, "items": records(frame)}, status, headers)


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (checked before reading when
    the client says its length, and while reading otherwise).

    Args:
        request: The request whose body to read.
        limit: The most bytes taken (``max_request_bytes``).

    Raises:
        ApiError: (413) the body is larger than ``limit``.
    """
    declared = request.headers.get("content-length")
    too_large = ApiError(413, f"the body is larger than {limit} bytes (max_request_bytes); "
                              "send smaller batches")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


# A JSON string literal (escapes included), or an unterminated one up to the end: a match can
# never fail, so no quote inside a string is tried again as a start (which would be quadratic).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_EMPTY_PAIR = re.compile(rb"[\[{][\]}]")


def too_deep(body: bytes, depth: int) -> bool:
    """Whether JSON ``body`` nests arrays and objects more than ``depth`` levels, found without
    parsing it (a parser recurses per level) in time linear in the body.

    Strings are dropped, then only brackets are kept; each pass removes every innermost pair
    and so one level. Brackets left after ``depth`` passes mean deeper nesting (or brackets
    that do not match, which the parser then refuses).

    Args:
        body: The raw body.
        depth: How many levels of arrays and objects are allowed.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(depth):
        if not brackets:
            return False
        brackets = _EMPTY_PAIR.sub(b"", brackets)
    return bool(brackets)


def parse_json(body: bytes, depth: int, shape: str) -> Any:
    """A request body parsed, refused with 422 when it is not JSON or nests too deep.

    Args:
        body: The raw body, already bounded in size.
        depth: How many levels of arrays and objects the body may nest.
        shape: What the body should be, for messages.

    Raises:
        ApiError: (422) the body is not UTF-8 JSON, nests too deep, or holds a value JSON
            cannot carry here.
    """
    deep = ApiError(422, f"the body nests arrays or objects more than {depth} level"
                         f"{'s' if depth > 1 else ''} deep; {shape}")
    if too_deep(body, depth):
        try:
            json.loads(body)
        except RecursionError:
            raise deep from None
        except ValueError:
            pass  # not JSON at all: say that below
        else:
            raise deep
    try:
        return json.loads(body)
    except RecursionError:  # pragma: no cover - too_deep found it first
        raise deep from None
    except UnicodeDecodeError as exc:
        raise ApiError(422, f"the body is not UTF-8 text (byte {exc.start}); {shape}") from None
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"the body is not JSON: {exc.msg} at line {exc.lineno} column "
                            f"{exc.colno}; {shape}") from None
    except ValueError:  # an integer too long to convert, for one
        raise ApiError(422, f"the body holds a value JSON cannot carry here; {shape}") from None
