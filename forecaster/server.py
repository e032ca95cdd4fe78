"""``forecaster serve``: the API and the scheduler in one process, the only one to open the file."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TextIO

from forecaster.config import Settings
from forecaster.errors import ConfigError
from forecaster.store import Store


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(settings: Settings) -> str | None:
    """Refuse to serve beyond this machine without tokens; say so when open on loopback.

    Returns:
        A notice to print, if any.

    Raises:
        ConfigError: tokens are missing and the host is not a loopback address.
    """
    if settings.tokens():
        return None
    if not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to serve on {settings.host} without tokens: anyone who can reach it could "
            "read and write. Set read_tokens and write_tokens (FORECASTER_READ_TOKENS, "
            "FORECASTER_WRITE_TOKENS), or bind to 127.0.0.1.")
    return (f"no tokens configured: serving on {settings.host} only (loopback); anyone on this "
            "machine can read and write. Set read_tokens and write_tokens to require tokens.")


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, which kills the process
        before the store is closed; here a signal only stops the server, and serve() returns."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer


def serve(settings: Settings, clock: Callable[[], datetime], err: TextIO) -> int:
    """Open the store, start the API and the scheduler, and serve until stopped.

    Args:
        settings: Host, port, tokens, database, refresh interval, sources.
        clock: The current time (UTC, naive).
        err: Where notices go.

    Returns:
        A process exit status.
    """
    import uvicorn

    from forecaster.api import create_app
    from forecaster.service import Service

    notice = check_binding(settings)
    url = f"http://{settings.host}:{settings.port}"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    with Store.open(settings.db, now=clock(), settings=settings, server_url=url) as store:
        service = Service(store, settings, clock)
        app = create_app(service)
        if notice:
            print(f"forecaster: {notice}", file=err)
        if store.interrupted_runs:
            ids = ", ".join(str(r) for r in store.interrupted_runs)
            print(f"forecaster: run(s) {ids} were left running by a process that stopped; "
                  "marked failed (see /v1/runs)", file=err)
        print(f"forecaster: serving {settings.db} at {url} (API docs {url}/docs); refreshing "
              f"every {settings.refresh_every}", file=err, flush=True)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                                access_log=False)
        _graceful_server_class()(config).run()
    return 0
