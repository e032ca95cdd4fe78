"""Debian packages the tests need (a browser, a Prometheus), installed when missing: the test
machine runs as root, and CI starts from a machine that has only Python."""

from __future__ import annotations

import shutil
import subprocess


def installed(package: str, *commands: str) -> list[str]:
    """The paths of ``commands``, installing ``package`` with apt-get first when one is missing
    (after ``apt-get update`` when the first try fails: a fresh machine has no package lists).

    Raises:
        AssertionError: the package could not be installed; apt-get's own error is shown.
    """
    if any(shutil.which(c) is None for c in commands):
        done = subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True,
                              text=True, timeout=900)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=900)
            done = subprocess.run(["apt-get", "install", "-y", "-q", package],
                                  capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"apt-get install {package} failed:\n{done.stderr[-2000:]}"
    found = [shutil.which(c) for c in commands]
    assert all(found), f"{package} is installed but {commands} are not all on PATH"
    return [str(f) for f in found]
