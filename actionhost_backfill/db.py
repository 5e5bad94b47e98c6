"""Connections: URL checks, engines per backend, and driver errors made plain.

Three backends over real drivers: PostgreSQL (psycopg 3), MySQL/MariaDB
(PyMySQL) and SQLite.  URLs written for Nova (``mysql+pymysql://``,
``postgresql://``, and libpq's ``postgres://``) are accepted as they are.
On MySQL/MariaDB an explicit ``mysql+mysqldb://`` uses the compiled
``mysqlclient`` driver when it is installed (the optional
``actionhost-backfill[mysqlclient]`` extra), and PyMySQL otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from actionhost_backfill import dialects
from actionhost_backfill.dialects import StateLocation, resolve_state_location
from actionhost_backfill.errors import (
    ActionHostError,
    BadInput,
    DatabaseUnavailable,
    PrivilegeError,
)
from actionhost_backfill.redact import mask_url, scrub

_DRIVERS = {
    "postgresql": "psycopg",
    "mysql": "pymysql",
    "mariadb": "pymysql",
    "sqlite": "pysqlite",
}
#: Drivers used when installed and named explicitly in the URL, else the default above.
_OPTIONAL_DRIVERS = {"mysql": {"mysqldb": "MySQLdb"}, "mariadb": {"mysqldb": "MySQLdb"}}
_URL_HINT = "postgresql://user:password@host/nova, mysql+pymysql://user:password@host/nova or sqlite:///path/nova.sqlite"

Attach = Literal["create", "if-exists", "never"]

log = logging.getLogger(__name__)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def parse_url(raw: str | URL | None, *, option: str = "--db", need_database: bool = True) -> URL:
    """Parse and normalise a database URL, or raise :class:`BadInput`.

    ``need_database=False``: a server URL is enough (``--replica``, read for its
    replication status only)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise BadInput(
            f"no database given: pass {option} URL, set ACTIONHOST_DB_URL, or pass "
            "--nova-conf PATH (/etc/nova/nova.conf is read when it exists)"
        )
    try:
        url = raw if isinstance(raw, URL) else make_url(raw.strip())
    except (sa.exc.ArgumentError, ValueError):
        raise BadInput(
            f"{option} {mask_url(str(raw))} is not a database URL: expected {_URL_HINT}"
        ) from None
    if url.drivername == "postgres" or url.drivername.startswith("postgres+"):
        # The libpq/Heroku spelling (SQLAlchemy's own alias before 1.4): same server.
        url = url.set(drivername="postgresql" + url.drivername[len("postgres") :])
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise BadInput(
            f"{option} {mask_url(url)}: unsupported database {backend!r}: expected {_URL_HINT}"
        )
    driver = url.get_driver_name()
    named = "+" in url.drivername  # mysql:// names no driver: PyMySQL, as always
    optional = _OPTIONAL_DRIVERS.get(backend, {})
    if named and driver in optional and _installed(optional[driver]):
        return _checked(url.set(drivername=f"{backend}+{driver}"), option, need_database)
    if named and driver in optional:
        log.info(
            "%s: %s is not installed (pip install actionhost-backfill[mysqlclient]): using PyMySQL",
            mask_url(url),
            optional[driver],
        )
    if backend == "postgresql" and driver in ("psycopg2", "psycopg2cffi", "pg8000", "asyncpg"):
        driver = "psycopg"  # Nova's psycopg2 URLs: same server, our driver
    if backend in ("mysql", "mariadb") and driver in (
        "mysqldb",
        "mysqlconnector",
        "mariadbconnector",
    ):
        driver = "pymysql"
    if driver != _DRIVERS[backend] and not (backend == "sqlite" and driver == "pysqlite"):
        expected = _DRIVERS[backend]
        raise BadInput(
            f"{option} {mask_url(url)}: driver {driver!r} is not installed with the toolkit: "
            f"use {backend}+{expected}://"
        )
    return _checked(url.set(drivername=f"{backend}+{driver}"), option, need_database)


def _checked(url: URL, option: str, need_database: bool) -> URL:
    """``url`` (driver settled) if it names a database or need not."""
    backend = url.get_backend_name()
    if not need_database:
        return url
    if backend in ("mysql", "mariadb") and not url.database:
        raise BadInput(f"{option} {mask_url(url)} names no database: add /nova (the cell database)")
    if backend == "postgresql" and not url.database:
        raise BadInput(f"{option} {mask_url(url)} names no database: add /nova (the cell database)")
    return url


def create_engine(
    url: URL,
    location: StateLocation | None = None,
    *,
    attach: Attach = "if-exists",
    must_exist: bool = True,
    lock_timeout: float | None = None,
    sqlite_begin: Literal["DEFERRED", "IMMEDIATE"] = "DEFERRED",
) -> sa.Engine:
    """An engine for the cell database, with the SQLite state file attached.

    ``attach`` controls the SQLite state file: ``create`` attaches it (creating
    the file), ``if-exists`` attaches only an existing file (read-only commands
    must not create one), ``never`` leaves it out.  ``must_exist`` refuses to
    create a missing SQLite cell file (a typo must not make an empty database).
    ``sqlite_begin="IMMEDIATE"`` makes every transaction take SQLite's write
    lock up front, for engines that write: a deferred transaction that reads,
    then writes, fails at once (no waiting) when another writer got in between.
    """
    dialect = dialects.for_url(url)
    kwargs = dialect.engine_options(url, must_exist=must_exist, lock_timeout=lock_timeout)
    engine = sa.create_engine(url, poolclass=NullPool, **kwargs)
    dialect.configure_engine(engine, location, attach, sqlite_begin)
    return engine


@contextlib.contextmanager
def connect(engine: sa.Engine) -> Iterator[sa.Connection]:
    """Open a connection, turning driver failures into toolkit errors."""
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise translate_error(exc, engine.url) from None
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def open_engine(
    url: URL, state_schema: str | None, *, writes: bool = False
) -> tuple[StateLocation, sa.Engine]:
    """The state schema's location for ``url`` and an engine for a command that reads
    run state (``writes``: one that also writes it, taking SQLite's lock up front).
    A SQLite state file is attached only if it exists."""
    location = resolve_state_location(url, state_schema)
    engine = create_engine(
        url, location, attach="if-exists", sqlite_begin="IMMEDIATE" if writes else "DEFERRED"
    )
    return location, engine


def translate_error(exc: BaseException, url: URL | None = None) -> ActionHostError:
    """Map a driver error to a one-line toolkit error (password never included)."""
    if isinstance(exc, ActionHostError):
        return exc
    where = mask_url(url) if url is not None else "the database"
    orig = getattr(exc, "orig", exc)
    code = _mysql_errno(orig)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "diag", None), "sqlstate", None
    )
    raw = " ".join(str(orig).split())
    if "FATAL:" in raw:  # libpq: keep the server's reason, not the connection preamble
        raw = raw.rsplit("FATAL:", 1)[1].strip()
    text = scrub(raw or type(orig).__name__)
    lowered = raw.lower()

    if (
        code in (1045,)
        or sqlstate in ("28P01", "28000")
        or "password authentication failed" in lowered
    ):
        return BadInput(
            f"cannot log in to {where}: {text}: check the user name and password in the URL"
        )
    if ("role" in lowered and "does not exist" in lowered) or "no password supplied" in lowered:
        return BadInput(
            f"cannot log in to {where}: {text}: check the user name and password in the URL"
        )
    if (
        code == 1049
        or sqlstate == "3D000"
        or ("database" in lowered and "does not exist" in lowered)
    ):
        return BadInput(
            f"database in {where} does not exist ({text}): check the database name in the URL"
        )
    if code in (1044, 1142, 1227) or sqlstate == "42501":
        backend = url.get_backend_name() if url is not None else ("mysql" if code else "postgresql")
        hint = dialects.for_backend(backend).privilege_hint(
            getattr(exc, "statement", None),
            raw,
            (url.username if url is not None else None) or "<user>",
            (url.database if url is not None else None) or "<database>",
        )
        return PrivilegeError(
            f"permission denied on {where}: {text}: {scrub(hint)} (or use a user that has it)"
        )
    if (
        code in (2002, 2003, 2005, 2006, 2013, 2055)
        or isinstance(orig, ConnectionError)
        or any(
            marker in lowered
            for marker in (
                "connection refused",
                "could not connect",
                "could not translate host name",
                "name or service not known",
                "timeout expired",
                "timed out",
                "no route to host",
                "server closed the connection",
                "terminating connection",
                "connection is closed",
                "the connection is lost",
                "consuming input failed",
                "connection not open",
                "ssl syscall error",
                "admin shutdown",
                "lost connection",
                "can't connect",
                "server has gone away",
            )
        )
    ):
        return DatabaseUnavailable(
            f"cannot reach {where}: {text}: check that the server is up and reachable, then run the same command again (a backfill or revert resumes from its checkpoint)"
        )
    if "unable to open database file" in lowered:
        return BadInput(
            f"cannot open {where}: {text}: check the path and its directory's permissions"
        )
    if "readonly database" in lowered or "read-only" in lowered:
        return PrivilegeError(f"{where} is read-only ({text}): use a user or file that can write")
    return ActionHostError(f"database error on {where}: {text}")


def _mysql_errno(orig: BaseException) -> int | None:
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def is_retryable(exc: BaseException) -> bool:
    """Deadlock, lock wait timeout, serialization failure, Galera conflict."""
    orig = getattr(exc, "orig", exc)
    code = _mysql_errno(orig)
    if code in (1213, 1205, 1614, 1637):  # deadlock/Galera cert. failure, lock wait timeout
        return True
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):  # serialization, deadlock, lock_not_available
        return True
    message = str(orig).lower()
    return "database is locked" in message or "deadlock" in message


def is_connection_lost(exc: BaseException) -> bool:
    """Whether a failure means the server went away (restart, network)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(translate_error(exc), DatabaseUnavailable)


def rollback_hard(conn: sa.Connection) -> None:
    """Roll back, down to the driver.

    After a failed COMMIT, SQLAlchemy considers the transaction over, but the
    driver's may still be open (SQLite keeps it after SQLITE_BUSY): end it too,
    or the next attempt would run inside the failed one.
    """
    with contextlib.suppress(Exception):
        conn.rollback()
    with contextlib.suppress(Exception):
        raw = conn.connection.dbapi_connection
        if raw is not None and getattr(raw, "in_transaction", True):
            raw.rollback()


def server_version(conn: sa.Connection) -> str:
    return dialects.for_connection(conn).server_version(conn)
