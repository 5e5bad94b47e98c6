"""Helpers for tests that talk to real databases (used by conftest and tests)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from actionhost_backfill import db as ahb_db
from actionhost_backfill.cli import application
from actionhost_backfill.dialects import family_of
from actionhost_backfill.nova.models import create_cell_schema
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.history import HistoryBuilder
from actionhost_backfill.state.location import resolve_state_location, state_schema_exists
from tests import scenarios

PG_ADMIN_URL = os.environ.get(
    "ACTIONHOST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN_URL = os.environ.get(
    "ACTIONHOST_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql"
)
NOVA_TABLES = (
    "instances",
    "instance_actions",
    "instance_actions_events",
    "migrations",
    "instance_faults",
)


def admin_url_for(backend: str) -> str:
    return {"postgresql": PG_ADMIN_URL, "mysql": MYSQL_ADMIN_URL}.get(backend, "sqlite://")


def reachable(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


def admin_engine(backend: str) -> sa.Engine:
    return sa.create_engine(admin_url_for(backend), isolation_level="AUTOCOMMIT")


def cut_connections(backend: str, database: str) -> None:
    """End every session on ``database`` (a server restart, as its clients see it)."""
    engine = admin_engine(backend)
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
                )
            else:
                for (connection_id,) in conn.exec_driver_sql(
                    "SELECT id FROM information_schema.processlist "
                    f"WHERE db = '{database}' AND id <> CONNECTION_ID()"
                ).all():
                    conn.exec_driver_sql(f"KILL CONNECTION {connection_id}")
    finally:
        engine.dispose()


def create_database(backend: str, name: str) -> None:
    engine = admin_engine(backend)
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8")
    finally:
        engine.dispose()


def drop_database(backend: str, name: str) -> None:
    engine = admin_engine(backend)
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                rows = conn.exec_driver_sql(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
                    (name.replace("_", "\\_") + "%",),
                ).fetchall()
                for (schema,) in rows:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{schema}`")
    finally:
        engine.dispose()


class Cell:
    """A throwaway cell database and ways to look inside it."""

    def __init__(self, url: str):
        self.url = url
        self.sa_url = make_url(url)
        self.backend = family_of(self.sa_url)
        self._engines: list[sa.Engine] = []

    # ------------------------------------------------------------ connections

    def engine(self, state_schema: str | None = None) -> sa.Engine:
        """An engine on the cell, with the state file attached on SQLite if it exists."""
        url = ahb_db.parse_url(self.url)
        location = resolve_state_location(url, state_schema)
        engine = ahb_db.create_engine(url, location, attach="if-exists")
        self._engines.append(engine)
        return engine

    def dispose(self) -> None:
        for engine in self._engines:
            engine.dispose()

    def execute(self, sql: str, params: dict | None = None) -> None:
        with self.engine().begin() as conn:
            conn.execute(sa.text(sql), params or {})

    def scalar(self, sql: str, params: dict | None = None):
        with self.engine().connect() as conn:
            return conn.execute(sa.text(sql), params or {}).scalar()

    def rows(self, sql: str, params: dict | None = None) -> list[tuple]:
        with self.engine().connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params or {})]

    # ------------------------------------------------------------ building

    def build(self, *, with_host: bool = True, with_shadow: bool = True) -> None:
        engine = sa.create_engine(self.url)
        try:
            create_cell_schema(engine, with_host=with_host, with_shadow=with_shadow)
        finally:
            engine.dispose()

    # ------------------------------------------------------------ looking

    @property
    def location(self):
        return resolve_state_location(ahb_db.parse_url(self.url))

    def table_names(self) -> set[str]:
        with self.engine().connect() as conn:
            return set(sa.inspect(conn).get_table_names())

    def state_table_names(self, state_schema: str | None = None) -> set[str]:
        location = resolve_state_location(ahb_db.parse_url(self.url), state_schema)
        with self.engine(state_schema).connect() as conn:
            if not state_schema_exists(conn, location):
                return set()
            return set(sa.inspect(conn).get_table_names(schema=location.schema))

    def columns(self, table: str) -> dict[str, dict]:
        with self.engine().connect() as conn:
            return {c["name"]: c for c in sa.inspect(conn).get_columns(table)}

    def index_names(self, table: str = "instance_actions_events") -> set[str]:
        with self.engine().connect() as conn:
            if self.backend == "postgresql":
                return {
                    r[0]
                    for r in conn.exec_driver_sql(
                        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                        "AND tablename = %(t)s",
                        {"t": table},
                    )
                }
            return {ix["name"] for ix in sa.inspect(conn).get_indexes(table)}

    def fingerprint(self) -> dict:
        """Every table of the cell schema with its columns and indexes."""
        result = {}
        with self.engine().connect() as conn:
            inspector = sa.inspect(conn)
            for table in sorted(inspector.get_table_names()):
                columns = [
                    (c["name"], str(c["type"]), bool(c["nullable"]))
                    for c in inspector.get_columns(table)
                ]
                indexes = sorted(
                    (ix["name"] or "", tuple(ix["column_names"]))
                    for ix in inspector.get_indexes(table)
                )
                result[table] = {"columns": columns, "indexes": indexes}
        return result

    def checksum(self, tables: Iterable[str] | None = None, *, state: bool = True) -> str:
        """A digest of every row of the Nova tables (and the state schema)."""
        digest = hashlib.sha256()
        with self.engine().connect() as conn:
            inspector = sa.inspect(conn)
            names = sorted(tables or inspector.get_table_names())
            targets = [(None, t) for t in names]
            location = self.location
            if state and state_schema_exists(conn, location):
                targets += [
                    (location.schema, t)
                    for t in sorted(inspector.get_table_names(schema=location.schema))
                ]
            for schema, table in targets:
                meta = sa.MetaData()
                reflected = sa.Table(table, meta, schema=schema, autoload_with=conn)
                order = list(reflected.primary_key.columns) or list(reflected.columns)
                digest.update(f"{schema}.{table}".encode())
                for row in conn.execute(sa.select(reflected).order_by(*order)):
                    digest.update(repr(tuple(row)).encode())
        return digest.hexdigest()

    def nova_version(self) -> str | None:
        return self.scalar("SELECT version_num FROM alembic_version")


def prepare_scenarios(cell: Cell, copies: int = 1) -> dict:
    """Write every scenario of :mod:`tests.scenarios` (``copies`` times) into ``cell`` and
    upgrade its schema; returns the scenarios' expectations (event id -> expected host...)."""
    builder = HistoryBuilder()
    expect = scenarios.build_all(builder, copies=copies)
    with cell.engine().begin() as conn:
        builder.write(conn)
    revisions.upgrade(ahb_db.parse_url(cell.url))
    return expect


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Look at the thing itself (a row, a process, the server's view) until ``check`` holds;
    fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)  # the interval between two looks, not a stand-in for the event


def wait_for_batches(
    cell: Cell, batches: int, process: subprocess.Popen, kind: str = "backfill"
) -> None:
    """Until the running ``kind`` run of ``process`` has committed ``batches`` batches
    (its checkpoints say so); fails if the process ends first."""
    st = cell.location.schema
    query = (
        f"SELECT COALESCE(SUM(c.batches), 0) FROM {st}.checkpoints c JOIN {st}.runs r "
        f"ON r.id = c.run_id WHERE r.kind = '{kind}' AND r.state = 'running'"
    )
    engine = ahb_db.create_engine(ahb_db.parse_url(cell.url), cell.location, attach="if-exists")

    def committed() -> bool:
        assert process.poll() is None, process.communicate()
        try:
            with engine.connect() as conn:
                return conn.exec_driver_sql(query).scalar() >= batches
        except sa.exc.DBAPIError:
            return False  # no state tables yet, or the run holds SQLite's write lock

    try:
        wait_until(committed, f"{batches} batches committed by the {kind}")
    finally:
        engine.dispose()


def command_leaves(command, path: tuple[str, ...] = ()):
    """Every command under a Click command or group, with its path (``("schema",
    "upgrade")``): the commands themselves, not the groups that hold them."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from command_leaves(sub, (*path, name))


def cli(*args: str, env: dict | None = None):
    """Invoke the CLI as a user would; returns click's Result."""
    runner = CliRunner()
    return runner.invoke(application(), list(args), env=env, catch_exceptions=False)


def another_database(backend: str, server_url: str, tmp_path, request, stem: str) -> str:
    """One more throwaway database for a test (dropped at its end); returns its URL."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{stem}.sqlite'}"
    name = f"ahb_{uuid.uuid4().hex[:10]}"
    create_database(backend, name)
    request.addfinalizer(lambda: drop_database(backend, name))
    return str(make_url(server_url).set(database=name).render_as_string(hide_password=False))
