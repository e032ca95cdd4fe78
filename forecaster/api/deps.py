"""What the routers share: the service and the run cache from the app, the token checks, the
latest run, and the ETag and Cache-Control of its answers.

``create_app`` puts the :class:`~forecaster.service.Service`, the :class:`RunCache` and the
tokens on ``app.state``; routes get them through the ``*Dep`` parameter types below.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any

import polars as pl
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from forecaster.api.wire import ApiError
from forecaster.names import split_unique_id
from forecaster.service import Service
from forecaster.store import Store

MAX_CACHED_BODIES = 256  # answers of the latest run kept in memory (least recently used go)


class RunCache:
    """Built response bodies of the latest published run (they never change), the
    ``max_entries`` most recently used only: keys hold client-chosen values."""

    def __init__(self, latest: int | None, max_entries: int = MAX_CACHED_BODIES) -> None:
        self.latest = latest
        self.max_entries = max_entries
        self.bodies: OrderedDict[tuple[object, ...], bytes] = OrderedDict()

    def published(self, run_id: int) -> None:
        """A new run is out: forget the old one's bodies (called from the refresh thread, so
        the dict is replaced, not emptied under a reader)."""
        self.latest = run_id
        self.bodies = OrderedDict()

    def get(self, key: tuple[object, ...]) -> bytes | None:
        """The cached body for ``key``, if any (it becomes the most recently used)."""
        bodies = self.bodies
        body = bodies.get(key)
        if body is not None:
            bodies.move_to_end(key)
        return body

    def put(self, key: tuple[object, ...], body: bytes) -> None:
        """Keep ``body`` if it belongs to the latest run; drop the least recently used."""
        if key[0] != self.latest:
            return
        bodies = self.bodies
        bodies[key] = body
        while len(bodies) > self.max_entries:
            bodies.popitem(last=False)


# Async, so that FastAPI calls them in the event loop rather than in a worker thread.
async def get_service(request: Request) -> Service:
    """The service the app was created over."""
    service: Service = request.app.state.service
    return service


async def get_store(request: Request) -> Store:
    """The service's store."""
    service: Service = request.app.state.service
    return service.store


async def get_cache(request: Request) -> RunCache:
    """The bodies of the latest published run, and its id."""
    cache: RunCache = request.app.state.cache
    return cache


ServiceDep = Annotated[Service, Depends(get_service)]
StoreDep = Annotated[Store, Depends(get_store)]
CacheDep = Annotated[RunCache, Depends(get_cache)]


def need(scope: str) -> Callable[[Request], None]:
    """A dependency that checks the bearer token for ``scope`` (``read`` or ``write``).

    It runs before the operation reads a body. Without tokens (``app.state.tokens`` empty) the
    server is bound to loopback only and every request passes.
    """
    def check(request: Request) -> None:
        tokens: dict[str, str] = request.app.state.tokens
        if not tokens:
            return  # no tokens: the server is bound to loopback only
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                           headers=challenge)
        granted = next((s for t, s in tokens.items()
                        if hmac.compare_digest(t.encode(), token.strip().encode())), None)
        if granted is None:
            raise ApiError(401, "unknown bearer token", headers=challenge)
        if scope == "write" and granted != "write":
            raise ApiError(403, f"this token may only read; {request.method} "
                                f"{request.url.path} needs a token from write_tokens")
    return check


READ: Any = Depends(need("read"))
WRITE: Any = Depends(need("write"))


def latest_run(cache: RunCache) -> int:
    """The latest published run's id.

    Raises:
        ApiError: (404) no run has been published yet.
    """
    if cache.latest is None:
        raise ApiError(404, "no published run yet: POST /v1/runs starts one, or wait for "
                            "the scheduled refresh")
    return cache.latest


def max_age(service: Service) -> int:
    """Seconds until the next scheduled refresh, at most the refresh interval."""
    every = int(service.settings.refresh_every.total_seconds())
    nxt = service.next_refresh_at()
    if nxt is None:
        return every
    return max(0, min(every, int((nxt - service.clock()).total_seconds())))


def run_headers(service: Service, run_id: int) -> dict[str, str]:
    """The ETag and Cache-Control of an answer of run ``run_id``."""
    return {"ETag": f'"run-{run_id}"', "Cache-Control": f"max-age={max_age(service)}"}


def not_modified(request: Request, run_id: int) -> bool:
    """Whether the client's ``If-None-Match`` names run ``run_id``'s ETag (or ``*``)."""
    asked = request.headers.get("if-none-match", "")
    tags = {t.strip().removeprefix("W/") for t in asked.split(",")}
    return f'"run-{run_id}"' in tags or "*" in tags


async def cached(cache: RunCache, key: tuple[object, ...], build: Callable[[], bytes]) -> bytes:
    """The body for ``key`` from the cache, or built in a worker thread and kept.

    Args:
        cache: The run cache.
        key: The run id first, then everything the body depends on.
        build: Builds the body (it reads the store, so it runs off the event loop).
    """
    body = cache.get(key)
    if body is None:
        body = await run_in_threadpool(build)
        cache.put(key, body)
    return body


def known_series(store: Store, uid: str) -> tuple[str, str]:
    """The service and metric of a stored series.

    Raises:
        ApiError: (422) ``uid`` is not ``service:metric``; (404) no such series.
    """
    try:
        service_name, metric = split_unique_id(uid)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    series = store.series()
    if series.filter(pl.col("unique_id") == uid).is_empty():
        raise ApiError(404, f"no series {uid!r}; GET /v1/series lists them")
    return service_name, metric
