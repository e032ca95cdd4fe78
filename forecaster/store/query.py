"""What every part of the store does with a cursor: one row, a polars frame, a quoted name.

Values always travel as parameters or through registered Arrow tables, never inside SQL text.
The only text assembled at run time is an *identifier* (a column of an input file, an object to
drop), quoted with :func:`quote_ident`, placed into fixed templates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import polars as pl


def one(cur: duckdb.DuckDBPyConnection, query: str,
        params: Sequence[object] | None = None) -> tuple[Any, ...]:
    """The first row of a query that always returns one."""
    # fetchall, not fetchone: DuckDB 2.0 refuses further work on a cursor with an unfinished result.
    rows = cur.execute(query, params or []).fetchall()
    assert rows, query
    return tuple(rows[0])


def frame(cur: duckdb.DuckDBPyConnection, query: str,
          params: Sequence[object] | None = None) -> pl.DataFrame:
    """A query's result as a polars frame."""
    # DuckDB 2.0: results of execute() have no .pl(); go through a relation.
    if params is None:
        return cur.sql(query).pl()
    return cur.sql(query, params=list(params)).pl()


def quote_ident(name: str) -> str:
    """Quote a name (an input file's column, an object of the file) as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
