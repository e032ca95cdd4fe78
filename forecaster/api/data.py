"""Stored data: the series, and their points (one series downsampled, or all in long format).

Routes carry their doc in ``summary``: a docstring would become the operation's OpenAPI
description.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Query, Request, Response

from forecaster.api.deps import READ, StoreDep, known_series
from forecaster.api.params import NAME, SeriesPath, ServiceName, Time, time_query, utc
from forecaster.api.wire import frame_response
from forecaster.names import NAME_RULE

router = APIRouter(prefix="/v1", tags=["data"], dependencies=[READ])


@router.get("/series", summary="Every stored series")
def series(request: Request, store: StoreDep) -> Response:
    return frame_response(request, store.series(), {})


@router.get("/series/{uid}/history", summary="Stored points of one series, optionally downsampled")
def series_history(
    request: Request, uid: SeriesPath, store: StoreDep,
    start: Annotated[Time, time_query("from (inclusive)")] = None,
    end: Annotated[Time, time_query("to (exclusive)")] = None,
    points: Annotated[int | None, Query(
        ge=1, le=100_000, description="downsample to about this many buckets (mean, min, "
                                      "max and count of each)")] = None,
) -> Response:
    service_name, metric = known_series(store, uid)
    frame = store.history(service_name, metric, utc(start, "start"), utc(end, "end"))
    if points is not None:
        frame = downsample(frame, points)
    return frame_response(request, frame, {"unique_id": uid})


@router.get("/history", summary="Stored points in long format (unique_id, ds, y)")
def history(
    request: Request, store: StoreDep, service_name: ServiceName = None,
    metric: Annotated[str | None, Query(pattern=NAME, description=(
        f"only this metric ({NAME_RULE})"))] = None,
    start: Annotated[Time, time_query("from (inclusive)")] = None,
    end: Annotated[Time, time_query("to (exclusive)")] = None,
) -> Response:
    return frame_response(request, store.history(service_name, metric, utc(start, "start"),
                                                 utc(end, "end")), {})


def downsample(frame: pl.DataFrame, points: int) -> pl.DataFrame:
    """About ``points`` equal time buckets: their start, mean, min, max and count.

    Args:
        frame: One series' points (``unique_id``, ``ds``, ``y``).
        points: How many buckets at most; a frame this short is returned whole, each point a
            bucket of one.
    """
    if frame.height <= points:
        return frame.with_columns(y_min=pl.col("y"), y_max=pl.col("y"), n=pl.lit(1, pl.UInt32))
    first, last = frame["ds"].min(), frame["ds"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    span_us = max(1, int((last - first).total_seconds() * 1e6))
    every = f"{-(-span_us // points)}us"
    return (frame.sort("ds")
            .group_by_dynamic("ds", every=every, group_by="unique_id", start_by="datapoint")
            .agg(y=pl.col("y").mean(), y_min=pl.col("y").min(), y_max=pl.col("y").max(),
                 n=pl.len().cast(pl.UInt32)))
