"""A real Prometheus for tests: Debian's package (installed when missing; the test machine runs as
root), started on a loopback port with a temporary data folder, and its `promtool`."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from debian import installed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binaries() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``, installing Debian's ``prometheus`` if needed."""
    prometheus, promtool = installed("prometheus", "prometheus", "promtool")
    return prometheus, promtool


def promtool(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``promtool`` with ``args``."""
    return subprocess.run([binaries()[1], *args], capture_output=True, text=True,
                          timeout=timeout)


@dataclass
class Prometheus:
    """A running Prometheus."""

    url: str
    data: Path
    config: Path
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def query(self, promql: str, at: float | None = None) -> list[dict[str, object]]:
        """An instant query's result vector (``GET /api/v1/query``)."""
        params: dict[str, str | float] = {"query": promql}
        if at is not None:
            params["time"] = at
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30).json()
        assert body["status"] == "success", body
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(folder: Path, config: str = "global:\n  scrape_interval: 15s\n",
          data: Path | None = None, extra_args: tuple[str, ...] = ()) -> Prometheus:
    """Start Prometheus with ``config`` (YAML text) on a free loopback port.

    Args:
        folder: Where its config, log and (unless ``data`` is given) TSDB go.
        config: The prometheus.yml text.
        data: A TSDB folder to serve (for example one filled by ``promtool tsdb
            create-blocks-from openmetrics``).
        extra_args: More command-line flags.
    """
    prometheus, _ = binaries()
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(config)
    data = data or folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = folder / "prometheus.log"
    process = subprocess.Popen(
        [prometheus, f"--config.file={config_file}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=3650d",
         "--web.enable-lifecycle", *extra_args],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    server = Prometheus(f"http://127.0.0.1:{port}", data, config_file, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, server.output()[-3000:]
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"prometheus did not become ready:\n{server.output()[-3000:]}")
