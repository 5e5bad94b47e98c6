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

import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill.errors import BadInput, PrivilegeError
from actionhost_backfill.redact import mask_url

DEFAULT_STATE_SCHEMA = "actionhost"
VERSION_TABLE = "actionhost_version"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def backend_of(url_or_dialect_name: URL | str) -> str:
    """'postgresql', 'mysql' (MariaDB included) or 'sqlite'."""
    name = (
        url_or_dialect_name.get_backend_name()
        if isinstance(url_or_dialect_name, URL)
        else url_or_dialect_name
    )
    return "mysql" if name in ("mysql", "mariadb") else name


@dataclass(frozen=True)
class StateLocation:
    """The resolved home of the toolkit's tables for one cell database."""

    backend: str
    schema: str
    """SQL-level qualifier: PostgreSQL schema, MySQL database or SQLite alias."""
    sqlite_path: str | None = None

    def describe(self) -> str:
        if self.backend == "postgresql":
            return f'PostgreSQL schema "{self.schema}"'
        if self.backend == "mysql":
            return f"MySQL/MariaDB database `{self.schema}`"
        return f"SQLite file {self.sqlite_path} (attached as {self.schema})"

    def qualified(self, table: str) -> str:
        return f"{self.schema}.{table}"


def resolve_state_location(url: URL, state_schema: str | None = None) -> StateLocation:
    """Work out the state schema for ``url``; ``state_schema`` overrides the default."""
    backend = backend_of(url)
    if state_schema is not None and not _IDENTIFIER.match(state_schema):
        raise BadInput(
            f"--state-schema must be a plain SQL identifier of at most 63 letters, digits "
            f"or underscores, not starting with a digit (got {state_schema!r})"
        )
    if backend == "postgresql":
        name = state_schema or DEFAULT_STATE_SCHEMA
        if name == "public":
            raise BadInput(
                "--state-schema public is the Nova cell schema: pick another name "
                "(default: actionhost)"
            )
        return StateLocation(backend, name)
    if backend == "mysql":
        database = url.database
        if not database:
            raise BadInput(
                f"{mask_url(url)} names no database: add the Nova cell database, "
                "e.g. mysql+pymysql://nova:***@db/nova"
            )
        name = state_schema or f"{database}_{DEFAULT_STATE_SCHEMA}"
        if len(name) > 64:
            raise BadInput(
                f"state database name {name!r} is longer than MySQL's 64 characters: "
                "pass a shorter --state-schema"
            )
        if name == database:
            raise BadInput(
                f"--state-schema {name} is the Nova cell database itself: pick another "
                f"name (default: {database}_{DEFAULT_STATE_SCHEMA})"
            )
        return StateLocation(backend, name)
    if backend == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            raise BadInput(
                "in-memory SQLite databases cannot hold resumable state: use a file, "
                "e.g. sqlite:///nova.sqlite"
            )
        name = state_schema or DEFAULT_STATE_SCHEMA
        if name.lower() in ("main", "temp"):
            raise BadInput(f"--state-schema {name} is reserved by SQLite: pick another name")
        cell = Path(database)
        path = cell.with_name(f"{cell.stem}.{name}.sqlite")
        return StateLocation(backend, name, str(path))
    raise BadInput(
        f"unsupported database {backend!r}: use postgresql://, mysql+pymysql:// or sqlite:///"
    )


def state_schema_exists(conn: sa.Connection, location: StateLocation) -> bool:
    """Whether the state schema exists (for SQLite: whether it is attached)."""
    if location.backend == "postgresql":
        return bool(
            conn.execute(
                sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": location.schema}
            ).first()
        )
    if location.backend == "mysql":
        return bool(
            conn.execute(
                sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                {"n": location.schema},
            ).first()
        )
    rows = conn.exec_driver_sql("PRAGMA database_list").fetchall()
    return any(row[1] == location.schema for row in rows)


def ensure_state_schema(conn: sa.Connection, location: StateLocation) -> bool:
    """Create the state schema if missing; return True when it was created.

    Fails with a :class:`PrivilegeError` that names the GRANT or option to use.
    """
    if state_schema_exists(conn, location):
        return False
    if location.backend == "sqlite":
        raise BadInput(
            f"state file {location.sqlite_path} is not attached: internal error, "
            "please report it with --debug output"
        )
    try:
        if location.backend == "postgresql":
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{location.schema}"')
        else:
            conn.exec_driver_sql(
                f"CREATE DATABASE IF NOT EXISTS `{location.schema}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
    except sa.exc.DBAPIError as exc:
        if not _is_privilege_error(exc):
            raise
        conn.rollback()
        user = conn.engine.url.username or "<user>"
        database = conn.engine.url.database or "<database>"
        if location.backend == "postgresql":
            raise PrivilegeError(
                f'cannot create schema "{location.schema}" in database {database} '
                f"(permission denied): run GRANT CREATE ON DATABASE {database} TO {user}; "
                f'or CREATE SCHEMA "{location.schema}" AUTHORIZATION {user}; as the '
                "database owner, or pass --state-schema naming a schema you own"
            ) from None
        raise PrivilegeError(
            f"cannot create database `{location.schema}` (access denied): run "
            f"GRANT ALL PRIVILEGES ON `{location.schema}`.* TO '{user}'@'%'; "
            "or pass --state-schema naming a database you can write"
        ) from None
    return True


def _is_privilege_error(exc: sa.exc.DBAPIError) -> bool:
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == "42501":  # PostgreSQL insufficient_privilege
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in (1044, 1045, 1142, 1227)
