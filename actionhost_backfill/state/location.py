"""Where the toolkit keeps its own tables, outside the Nova cell schema.

Nova's ``archive_deleted_rows`` reflects every table of the cell database's
default schema and fails on any it does not know, and ``nova-manage db purge``
empties every ``shadow_*`` table; Nova's own Alembic history sits in
``alembic_version``.  So everything the toolkit owns (its version table,
the ledger of schema changes, runs, checkpoints, audit, the runner lease)
lives in a *state schema* beside the cell schema:

* PostgreSQL: a schema (default ``actionhost``) in the cell's database;
* MySQL/MariaDB: a database on the same server (default
  ``<cell database>_actionhost``, because one server often hosts several
  cells and a database name is server-wide);
* SQLite: a separate file beside the cell file
  (``<cell stem>.<name>.sqlite``) attached under the name (default
  ``actionhost``).
"""

from __future__ import annotations

import sqlalchemy as sa

from actionhost_backfill.dialects import (
    DEFAULT_STATE_SCHEMA,
    VERSION_TABLE,
    StateLocation,
    resolve_state_location,
)
from actionhost_backfill.errors import PrivilegeError

__all__ = [
    "DEFAULT_STATE_SCHEMA",
    "VERSION_TABLE",
    "StateLocation",
    "ensure_state_schema",
    "resolve_state_location",
    "state_schema_exists",
]


def state_schema_exists(conn: sa.Connection, location: StateLocation) -> bool:
    """Whether the state schema exists (for SQLite: whether it is attached)."""
    return location.dialect.state_schema_exists(conn, location)


def ensure_state_schema(conn: sa.Connection, location: StateLocation) -> bool:
    """Create the state schema if missing; return True when it was created.

    Fails with a :class:`PrivilegeError` that names the GRANT or option to use.
    """
    if state_schema_exists(conn, location):
        return False
    try:
        location.dialect.create_state_schema(conn, location)
    except sa.exc.DBAPIError as exc:
        if not _is_privilege_error(exc):
            raise
        conn.rollback()
        user = conn.engine.url.username or "<user>"
        database = conn.engine.url.database or "<database>"
        raise PrivilegeError(
            location.dialect.state_schema_denied(location, user, database)
        ) from None
    return True


def _is_privilege_error(exc: sa.exc.DBAPIError) -> bool:
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == "42501":  # PostgreSQL insufficient_privilege
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in (1044, 1045, 1142, 1227)
