"""Versioned schema migrations: an older file is upgraded on open, a newer one is refused."""

from __future__ import annotations

from datetime import datetime

import duckdb

from forecaster.errors import SchemaVersionError
from forecaster.store import sql

LATEST_VERSION = max(version for version, _, _ in sql.MIGRATIONS)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of an open database; 0 for an empty one."""
    # fetchall: DuckDB 2.0 refuses further work on a cursor with an unfinished result.
    [(exists,)] = con.execute(sql.SCHEMA_VERSION_TABLE_EXISTS).fetchall()
    if not exists:
        return 0
    [(version,)] = con.execute(sql.SCHEMA_VERSION).fetchall()
    return int(version)


def newer_message(path: str, version: int) -> str:
    """What to say about a database written by a newer forecaster."""
    return (f"{path} has schema version {version}, but this forecaster knows versions up to "
            f"{LATEST_VERSION}: it was written by a newer forecaster. Upgrade forecaster "
            "(pip install -U forecaster) or open a copy made for this version.")


def migrate(
    con: duckdb.DuckDBPyConnection,
    applied_at: datetime,
    target: int = LATEST_VERSION,
    *,
    path: str = "database",
) -> tuple[int, int]:
    """Bring the schema up to ``target``, each step in its own transaction.

    Args:
        con: An open, writable connection.
        applied_at: The time recorded for each step applied (UTC, naive).
        target: The version to reach; lower than the latest only in tests of the upgrade path.
        path: How to name the database in messages.

    Returns:
        (version before, version after).

    Raises:
        SchemaVersionError: when the database is newer than this forecaster knows.
    """
    before = current_version(con)
    if before > LATEST_VERSION:
        raise SchemaVersionError(newer_message(path, before))
    for version, description, statements in sql.MIGRATIONS:
        if before < version <= target:
            con.execute("BEGIN TRANSACTION")
            try:
                for statement in statements:
                    con.execute(statement)
                con.execute(sql.RECORD_MIGRATION, [version, description, applied_at])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    return before, max(before, min(target, LATEST_VERSION))
