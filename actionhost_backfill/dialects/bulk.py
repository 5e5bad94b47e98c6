"""Fast bulk inserts of plain tuples, the cheapest way each driver offers.

PostgreSQL: ``COPY ... FROM STDIN`` through psycopg 3.  MySQL/MariaDB:
PyMySQL's ``executemany`` on ``INSERT ... VALUES``, which it rewrites into
multi-row statements.  SQLite: ``executemany`` on a prepared statement.  The
caller owns the transaction; values must already be in column order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import sqlalchemy as sa

from actionhost_backfill.dialects.base import family_of

#: Values per IN-list, and rows per multi-row INSERT on MySQL (well under
#: max_allowed_packet).
CHUNK = 2000
#: SQLAlchemy's storage format for DateTime on SQLite.
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def chunks(values: Iterable, size: int = CHUNK) -> Iterator[list]:
    """``values`` in lists of at most ``size``."""
    batch: list = []
    for value in values:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _sqlite_row(row: tuple) -> tuple:
    """Datetimes as SQLAlchemy's SQLite DateTime stores them, so SQL comparisons agree."""
    return tuple(v.strftime(SQLITE_DATETIME) if isinstance(v, datetime) else v for v in row)


def insert_rows(
    conn: sa.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple],
    *,
    schema: str | None = None,
) -> int:
    """Insert ``rows`` into ``schema.table(columns)``; return how many."""
    rows = list(rows)
    if not rows:
        return 0
    backend = family_of(conn.dialect.name)
    quote = conn.dialect.identifier_preparer.quote_identifier
    target = quote(table) if not schema else f"{quote(schema)}.{quote(table)}"
    names = ", ".join(quote(c) for c in columns)
    if not conn.in_transaction():
        conn.begin()  # the raw cursor below must run inside the caller's transaction
    cursor = conn.connection.driver_connection.cursor()
    dbapi = conn.dialect.loaded_dbapi
    try:
        if backend == "postgresql":
            with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        elif backend == "mysql":
            marks = ", ".join(["%s"] * len(columns))
            sql = f"INSERT INTO {target} ({names}) VALUES ({marks})"
            for part in chunks(rows):
                cursor.executemany(sql, part)
        else:
            marks = ", ".join(["?"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {target} ({names}) VALUES ({marks})", map(_sqlite_row, rows)
            )
    except dbapi.Error as exc:
        # The raw cursor bypasses SQLAlchemy: wrap driver errors as it would, so
        # callers classify them (a lost server, a lock wait) like any other.
        raise sa.exc.DBAPIError.instance(
            f"bulk insert into {target}", None, exc, dbapi.Error, dialect=conn.dialect
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            cursor.close()
    return len(rows)
