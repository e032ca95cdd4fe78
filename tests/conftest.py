"""Shared fixtures: real DuckDB files in a temporary folder, a fixed clock."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from forecaster.store import Store

NOW = datetime(2026, 11, 26, 12, 0, 0)
ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.duckdb"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(db_path, now=NOW) as opened:
        yield opened


def run_cli(*args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed command in a child process, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "forecaster", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env=full_env, timeout=300)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
