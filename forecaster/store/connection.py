"""The database file: connecting to it, which files this process holds, and emptying a file a
command made so that it can be made again."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import duckdb

from forecaster.config import Settings
from forecaster.errors import StoreLockedError
from forecaster.store import lock
from forecaster.store.query import one, quote_ident

SET_UTC = "SET TimeZone = 'UTC'"

# Databases a command made and may rebuild (the demo's): a marker inside the file says who made it.

# Every table, view and sequence of the file, views first and sequences last, the order in
# which they can be dropped (a table's default may use a sequence, a view may read a table).
USER_OBJECTS = """
SELECT kind, name FROM (
    SELECT 1 AS rank, 'VIEW' AS kind, view_name AS name FROM duckdb_views()
    WHERE database_name = current_database() AND NOT internal AND NOT temporary
    UNION ALL
    SELECT 2, 'TABLE', table_name FROM duckdb_tables()
    WHERE database_name = current_database() AND NOT internal AND NOT temporary
    UNION ALL
    SELECT 3, 'SEQUENCE', sequence_name FROM duckdb_sequences()
    WHERE database_name = current_database() AND NOT temporary
) ORDER BY rank, name"""
CREATE_MADE_BY = """
CREATE TABLE made_by (maker VARCHAR NOT NULL, made_at TIMESTAMP NOT NULL)"""
MARK_MADE_BY = "INSERT INTO made_by VALUES (?, ?)"
IS_MADE_BY = "SELECT count(*) > 0 FROM made_by WHERE maker = ?"
# Databases made before the marker existed: the demo's run is the only trace of its maker.
HAS_RUN_OF_TRIGGER = "SELECT count(*) > 0 FROM runs WHERE trigger = ?"
# ... and whose every ingest read the shipped sample fleet (a constant pattern, not a value).
INGESTS_NOT_OF_THE_SAMPLE = """
SELECT count(*) > 0 FROM ingest_log WHERE source NOT LIKE '%fleet/points.parquet'"""


def drop_object(kind: str, name: str) -> str:
    """``DROP`` statement for one object listed by :data:`USER_OBJECTS` (identifiers cannot be
    parameters, so the name is quoted)."""
    if kind not in ("VIEW", "TABLE", "SEQUENCE"):
        raise ValueError(f"cannot drop a {kind}")
    return f"DROP {kind} IF EXISTS {quote_ident(name)}"


class Held:
    """The files this process holds open writable, with how many stores hold each.

    DuckDB's lock keeps other processes out, not this one: a second ``Store.open`` of a file in
    the same process shares the database. Only the first open may treat a ``running`` run as
    left by a dead process, and only the last close may remove the owner record.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}

    @staticmethod
    def key(db: Path) -> str:
        return str(db.resolve())

    def count(self, db: Path) -> int:
        with self._lock:
            return self._count.get(self.key(db), 0)

    def add(self, db: Path) -> int:
        """Count one more holder; returns how many held it before."""
        with self._lock:
            before = self._count.get(self.key(db), 0)
            self._count[self.key(db)] = before + 1
            return before

    def remove(self, db: Path) -> int:
        """Count one holder less; returns how many still hold it."""
        with self._lock:
            left = max(0, self._count.get(self.key(db), 0) - 1)
            if left:
                self._count[self.key(db)] = left
            else:
                self._count.pop(self.key(db), None)
            return left


HELD = Held()


def connect(db: Path, settings: Settings, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Connect to ``db`` (created when missing, unless ``read_only``), in UTC.

    Raises:
        StoreLockedError: another process holds the file.
    """
    config: dict[str, str | bool | int | float | list[str]] = {}
    if settings.duckdb_threads:
        config["threads"] = settings.duckdb_threads
    if settings.duckdb_memory_limit:
        config["memory_limit"] = settings.duckdb_memory_limit
    if not read_only:
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(db), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise StoreLockedError(lock.locked_message(db, text)) from None
        raise
    set_utc(con)
    return con


def set_utc(con: duckdb.DuckDBPyConnection) -> None:
    """Make a connection or cursor work in UTC."""
    # Without the ICU extension DuckDB already works in UTC; with it, make sure it does, since
    # TIMESTAMPTZ -> TIMESTAMP casts then follow the session time zone.
    try:
        con.execute(SET_UTC)
    except duckdb.Error:
        pass


def empty_for(con: duckdb.DuckDBPyConnection, db: Path, maker: str, now: datetime) -> None:
    """Drop every table, view and sequence of a file ``maker`` made (or one with none), and
    mark it as ``maker``'s, in one transaction.

    Raises:
        ForeignDatabaseError: the file holds objects and ``maker`` did not make it; nothing was
            touched.
    """
    objects = [(str(kind), str(name)) for kind, name in con.execute(USER_OBJECTS).fetchall()]
    if objects and not made_by(con, maker, {name for _, name in objects}):
        raise lock.ForeignDatabaseError(
            f"{db} was not made by the {maker} (it holds {len(objects)} tables, views or "
            "sequences of its own)")
    con.execute("BEGIN TRANSACTION")
    for kind, name in objects:
        con.execute(drop_object(kind, name))
    con.execute(CREATE_MADE_BY)
    con.execute(MARK_MADE_BY, [maker, now])
    con.execute("COMMIT")


def made_by(con: duckdb.DuckDBPyConnection, maker: str, names: set[str]) -> bool:
    """Whether the file's marker names ``maker``; in a file older than the marker, whether
    ``maker`` ran in it and every ingest in it read the sample fleet (the demo of old wrote
    into the default database, which a user may since have filled: that one is kept).

    Args:
        con: The file's connection.
        maker: Who would rebuild it.
        names: The names of the file's tables, views and sequences.
    """
    if "made_by" in names:
        return bool(one(con, IS_MADE_BY, [maker])[0])
    if "runs" in names and "ingest_log" in names:
        ran = bool(one(con, HAS_RUN_OF_TRIGGER, [maker])[0])
        return ran and not one(con, INGESTS_NOT_OF_THE_SAMPLE)[0]
    return False
