"""What differs per backend, in one class per backend.

:func:`for_connection` picks the :class:`~actionhost_backfill.dialects.base.Dialect`
of a connection, :func:`for_url` that of a database URL; each class registers
itself by the SQLAlchemy dialect name it serves (``__dialect__``).
:mod:`~actionhost_backfill.dialects.bulk` loads rows the cheapest way each
driver offers.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill.dialects import mysql, postgresql, sqlite  # noqa: F401  (registers them)
from actionhost_backfill.dialects.base import (
    DEFAULT_STATE_SCHEMA,
    VERSION_TABLE,
    Dialect,
    SchemaChange,
    StateLocation,
    dialect_class,
    family_of,
)


def for_connection(conn: sa.Connection | sa.Engine) -> Dialect:
    """The dialect of a connection (MariaDB told apart from MySQL here, once)."""
    return dialect_class(conn.dialect.name).for_server(conn.dialect)


def for_backend(name: str | None) -> Dialect:
    """The dialect of a backend name (``postgresql``, ``mysql``, ``mariadb``, ``sqlite``)."""
    return dialect_class(name or "")()


def for_url(url: URL) -> Dialect:
    """The dialect of a database URL (before connecting: MariaDB reads as MySQL)."""
    return for_backend(url.get_backend_name())


__all__ = [
    "DEFAULT_STATE_SCHEMA",
    "VERSION_TABLE",
    "Dialect",
    "SchemaChange",
    "StateLocation",
    "family_of",
    "for_backend",
    "for_connection",
    "for_url",
]
