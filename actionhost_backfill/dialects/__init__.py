"""What differs per backend, in one class per backend.

:func:`for_connection` picks the :class:`~actionhost_backfill.dialects.base.Dialect`
of a connection, :func:`for_url` that of a database URL; each class registers
itself by the SQLAlchemy dialect name it serves (``__dialect__``).
:mod:`~actionhost_backfill.dialects.bulk` loads rows the cheapest way each
driver offers.
"""

from __future__ import annotations

import re

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
from actionhost_backfill.errors import BadInput

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def for_connection(conn: sa.Connection | sa.Engine) -> Dialect:
    """The dialect of a connection (MariaDB told apart from MySQL here, once)."""
    return dialect_class(conn.dialect.name).for_server(conn.dialect)


def for_backend(name: str | None) -> Dialect:
    """The dialect of a backend name (``postgresql``, ``mysql``, ``mariadb``, ``sqlite``)."""
    return dialect_class(name or "")()


def for_url(url: URL) -> Dialect:
    """The dialect of a database URL (before connecting: MariaDB reads as MySQL)."""
    return for_backend(url.get_backend_name())


def resolve_state_location(url: URL, state_schema: str | None = None) -> StateLocation:
    """Work out the state schema for ``url``; ``state_schema`` overrides the default."""
    if state_schema is not None and not _IDENTIFIER.match(state_schema):
        raise BadInput(
            f"--state-schema must be a plain SQL identifier of at most 63 letters, digits "
            f"or underscores, not starting with a digit (got {state_schema!r})"
        )
    return for_url(url).resolve_location(url, state_schema)


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
    "resolve_state_location",
]
