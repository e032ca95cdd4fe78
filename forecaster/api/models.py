"""The bodies the API documents: what the ingest operations take, and what an error looks like.

Batches are read and checked row by row (:mod:`forecaster.api.rows`), not by these models: they
are the OpenAPI description of a row. An event is validated by :class:`EventIn`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from forecaster.api.params import NAME, TIME_HELP, YEARS, iso_text
from forecaster.api.rows import MAX_FIELD_CHARS
from forecaster.kinds import REQUEST_NUMBERS
from forecaster.names import MAX_UNIT_CHARS, NAME_RULE

EVENT_DEPTH = 1  # an event is one flat object
MAX_KIND_CHARS = 64
MAX_DETAIL_CHARS = 2_000

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["status", "message"], "additionalProperties": False,
        "properties": {"status": {"type": "integer"},
                       "message": {"type": "string", "description": "what was wrong and what "
                                                                    "is allowed"}}}}}


class EventIn(BaseModel):
    """Something that changed a service: a deploy, a retrain, a scale-out done."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(pattern=NAME, description=f"service name ({NAME_RULE})")
    ts: Annotated[datetime, BeforeValidator(iso_text)] = Field(
        description=f"when it happened ({TIME_HELP})", json_schema_extra={"pattern": YEARS})
    kind: str = Field(min_length=1, max_length=MAX_KIND_CHARS, pattern=r"\S",
                      description="what it was: deploy, retrain, scale_out, rollback, ...")
    metric: str | None = Field(default=None, pattern=NAME,
                               description=f"the one metric it concerns, if any ({NAME_RULE})")
    detail: str | None = Field(default=None, max_length=MAX_DETAIL_CHARS, description="free text")


class PointIn(BaseModel):
    """One point of a batch (documentation of ``POST /v1/points``; the store validates rows)."""

    model_config = ConfigDict(extra="forbid")

    ts: datetime = Field(description=f"when it was measured ({TIME_HELP})",
                         json_schema_extra={"pattern": YEARS})
    service: str = Field(pattern=NAME, description=f"service name ({NAME_RULE})")
    metric: str = Field(pattern=NAME, description=f"metric name ({NAME_RULE})")
    value: float = Field(description="the measured value, finite, in the metric kind's range")
    unit: str | None = Field(default=None, max_length=MAX_UNIT_CHARS,
                             description="its unit (the first one a series gets stays)")


def _number(name: str, description: str) -> Any:
    """A request-log number field with the ingest's bounds for it."""
    lo, hi, _whole = REQUEST_NUMBERS[name]
    return Field(default=None, ge=lo, le=hi, description=description)


class RequestIn(BaseModel):
    """One request-log row (documentation of ``POST /v1/requests``)."""

    model_config = ConfigDict(extra="forbid")

    ts: datetime = Field(description=f"when the request was made ({TIME_HELP})",
                         json_schema_extra={"pattern": YEARS})
    service: str = Field(pattern=NAME, description=f"service name ({NAME_RULE})")
    request_id: str | None = Field(default=None, max_length=MAX_FIELD_CHARS,
                                   description="an id; a repeated id is counted once")
    latency_ms: float | None = _number("latency_ms", "end-to-end latency, milliseconds")
    ttft_ms: float | None = _number("ttft_ms", "time to first token, milliseconds")
    status: int | None = Field(default=None, ge=100, le=599, description="HTTP status code")
    error: bool | None = Field(default=None, description="whether the request failed")
    prompt_tokens: int | None = _number("prompt_tokens", "tokens in")
    completion_tokens: int | None = _number("completion_tokens", "tokens out")
    quality_score: float | None = _number("quality_score", "a quality score in [0, 1]")
    feedback: float | None = _number("feedback", "user feedback (negative is bad)")


def batch_body(kind: str, row: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a batch: an array of rows, or ``{kind: [rows]}``.

    Args:
        kind: The batch's key and path (``points`` or ``requests``).
        row: The model documenting one row.
    """
    rows = {"type": "array", "minItems": 1, "items": row.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "anyOf": [rows, {"type": "object", "required": [kind], "additionalProperties": False,
                         "properties": {kind: rows}}]}}}}}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an operation that reads ``model`` itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema()}}}}
