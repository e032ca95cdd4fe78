"""The notebooks run, top to bottom, against the public API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_explore_fleet_runs(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "notebooks" / "explore_fleet.py"),
                             str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "391104 points stored" in result.stdout
    assert "published, 42 series, 0 failed" in result.stdout
    assert "true first crossing 2026-12-02" in result.stdout
