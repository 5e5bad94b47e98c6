"""What differs per backend: session setup, bulk load, set-based writes, temporary tables.

:func:`for_connection` picks the :class:`~actionhost_backfill.dialects.base.Dialect`
of a connection; :mod:`~actionhost_backfill.dialects.bulk` loads rows the
cheapest way each driver offers.
"""

from __future__ import annotations

import sqlalchemy as sa

from actionhost_backfill.dialects.base import Dialect
from actionhost_backfill.dialects.mysql import MySQL
from actionhost_backfill.dialects.postgresql import PostgreSQL
from actionhost_backfill.dialects.sqlite import SQLite

_BY_NAME: dict[str, type[Dialect]] = {
    "postgresql": PostgreSQL,
    "mysql": MySQL,
    "mariadb": MySQL,
    "sqlite": SQLite,
}


def for_connection(conn: sa.Connection | sa.Engine) -> Dialect:
    return _BY_NAME[conn.dialect.name]()


def for_backend(name: str) -> Dialect:
    """The dialect of a backend name (``postgresql``, ``mysql``, ``mariadb``, ``sqlite``)."""
    return _BY_NAME.get(name, Dialect)()


__all__ = ["Dialect", "for_connection"]
