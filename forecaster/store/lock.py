"""Who holds a database file, who made it, and the message a second process gets.

DuckDB lets no second process open a file that one process holds for writing, not even
read-only. The holder writes ``<db>.owner`` (JSON: pid, command, url) so that the refused process
can say who holds the file and what to do instead (read through the server's HTTP API, when the
holder is a server).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from forecaster.errors import ForecasterError

_PID_RE = re.compile(r"\(PID (\d+)\)")


@dataclass(frozen=True, slots=True)
class Owner:
    """The process that holds a database file.

    Attributes:
        pid: Its process id.
        command: Its command line, shortened.
        url: The HTTP address it serves, when it is a server.
    """

    pid: int
    command: str
    url: str | None = None


def owner_path(db: Path) -> Path:
    """Where the holder of ``db`` describes itself."""
    return db.with_name(db.name + ".owner")


def write_owner(db: Path, url: str | None) -> Owner:
    """Describe this process as the holder of ``db``."""
    owner = Owner(pid=os.getpid(), command=" ".join(sys.argv)[:200] or "python", url=url)
    path = owner_path(db)
    tmp = path.with_name(path.name + f".{owner.pid}.tmp")
    tmp.write_text(json.dumps({"pid": owner.pid, "command": owner.command, "url": url}))
    tmp.replace(path)
    return owner


def clear_owner(db: Path) -> None:
    """Remove the holder's description if it is this process's."""
    found = read_owner(db)
    if found is not None and found.pid == os.getpid():
        owner_path(db).unlink(missing_ok=True)


def read_owner(db: Path) -> Owner | None:
    """The recorded holder of ``db``, if any."""
    try:
        data = json.loads(owner_path(db).read_text())
        return Owner(pid=int(data["pid"]), command=str(data.get("command", "")),
                     url=data.get("url"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def locked_message(db: Path, duckdb_message: str) -> str:
    """A message for a process refused by the lock, naming the holder and what to do.

    Args:
        db: The database file.
        duckdb_message: DuckDB's own error text (it names the holder's PID).
    """
    match = _PID_RE.search(duckdb_message)
    pid = int(match.group(1)) if match else None
    owner = read_owner(db)
    if owner is not None and (pid is None or owner.pid == pid):
        who = f"process {owner.pid} ({owner.command})"
        url = owner.url
    else:
        who = f"process {pid}" if pid is not None else "another process"
        url = None
    lines = [f"{db} is in use by {who}."]
    lines.append("DuckDB lets only one process open a database file while it is written to.")
    if url:
        lines.append(f"That process is a forecaster server at {url}: use its HTTP API "
                     "instead of opening the file.")
    else:
        lines.append("Wait for it to finish, stop it, or work on a copy of the file.")
    return " ".join(lines)


# Bytes 8 to 12 of every DuckDB database file.
_DUCKDB_MAGIC = b"DUCK"


class ForeignDatabaseError(ForecasterError):
    """A command that rebuilds a database was pointed at a file it did not make."""


def is_duckdb_file(path: Path) -> bool:
    """Whether ``path`` is a DuckDB database file (an empty file counts: DuckDB makes it one)."""
    with path.open("rb") as handle:
        head = handle.read(12)
    return not head or head[8:12] == _DUCKDB_MAGIC


def serving_owner(db: Path) -> Owner | None:
    """The forecaster server that holds ``db``, if its record names a live process with a URL.

    The record is advisory (a killed server leaves it behind), so the process must still exist.
    """
    owner = read_owner(db)
    if owner is None or not owner.url or owner.pid == os.getpid():
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, run by another user
    return owner
