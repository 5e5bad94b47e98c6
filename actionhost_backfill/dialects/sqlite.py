"""SQLite: the batch's transaction holds the write lock (BEGIN IMMEDIATE), so no row
can change between marking the plan and writing from it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL

from actionhost_backfill.dialects.base import (
    DEFAULT_STATE_SCHEMA,
    Dialect,
    FillBatch,
    MissingPrivilege,
    PrivilegeRequest,
    SchemaChange,
    StateLocation,
    adding_on_conflict,
)
from actionhost_backfill.errors import BadInput


def _file_problem(path: str, write: bool) -> MissingPrivilege | None:
    """Read (and write) permission on ``path``, or on its directory when it does not exist
    (SQLite writes its journal beside the file)."""
    target = Path(path)
    if target.exists() and not os.access(target, os.R_OK | (os.W_OK if write else 0)):
        mode = "write" if write else "read"
        return MissingPrivilege(
            f"{mode} permission",
            f"file {target}",
            f"the command {mode}s it",
            f"chmod u+rw {target}",
        )
    folder = target.parent
    if write and not os.access(folder, os.W_OK | os.X_OK):
        return MissingPrivilege(
            "write permission",
            f"directory {folder}",
            "SQLite creates its journal (and the state file) there",
            f"chmod u+wx {folder}",
        )
    return None


class SQLite(Dialect):
    __dialect__ = "sqlite"
    name = "sqlite"
    # One writer per file, and the runner's engine begins every transaction
    # IMMEDIATE: a planner reading beside the applier would queue for its lock.
    plans_while_applying = False

    def configure_session(self, conn: sa.Connection, lock_timeout: float) -> int | None:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {max(1, round(lock_timeout * 1000))}")
        return None

    def temp_table(self, name: str) -> str:
        return f"temp.{name}"

    def drop_temp(self, conn: sa.Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")

    def missing_privileges(
        self, conn: sa.Connection, request: PrivilegeRequest
    ) -> list[MissingPrivilege]:
        writes = bool(request.alter or request.index or request.update)
        found = [_file_problem(request.database, writes)]
        if request.state is not None and request.location.sqlite_path:
            found.append(_file_problem(request.location.sqlite_path, request.state != "read"))
        return [m for m in found if m is not None]

    def state_access(self, conn: sa.Connection, location: StateLocation) -> str:
        path = location.sqlite_path
        if not path or not os.path.exists(path):
            return "absent"
        return "readable" if os.access(path, os.R_OK) else "unreadable"

    def add_counts(
        self, conn: sa.Connection, table: sa.Table, rows: list[dict], counter: str
    ) -> None:
        conn.execute(adding_on_conflict(sqlite.insert(table).values(rows), table, counter))

    def fill_from_plan(
        self, conn: sa.Connection, plan: str, batch: FillBatch, outcomes: dict[str, str]
    ) -> None:
        events = self.quote_table(conn, batch.events)
        params = batch.params()
        range_ = "event_id > :lo AND event_id <= :hi"
        conn.execute(sa.text(f"UPDATE {plan} SET applied = NULL WHERE {range_}"), params)
        conn.execute(
            sa.text(
                f"UPDATE {plan} SET applied = 1 WHERE {range_} AND host IS NOT NULL "
                f"AND event_id IN (SELECT id FROM {events} "
                "WHERE id > :lo AND id <= :hi AND host IS NULL)"
            ),
            params,
        )
        conn.execute(
            sa.text(
                f"UPDATE {events} SET host = (SELECT p.host FROM {plan} AS p "
                f"WHERE p.event_id = {events}.id) "
                f"WHERE id > :lo AND id <= :hi AND id IN (SELECT event_id FROM {plan} "
                f"WHERE {range_} AND applied = 1)"
            ),
            params,
        )
        self.audit_from_plan(conn, plan, batch, outcomes)

    # ------------------------------------------------------------------ sessions

    def engine_options(self, url: URL, *, must_exist: bool, lock_timeout: float | None) -> dict:
        database = url.database or ""
        if must_exist and not Path(database).is_file():
            raise BadInput(
                f"SQLite file {database} does not exist: check the path in --db "
                "(the toolkit never creates a cell database)"
            )
        timeout = lock_timeout if lock_timeout is not None else 30.0
        return {"connect_args": {"timeout": timeout}}

    def configure_engine(
        self, engine: sa.Engine, location: StateLocation | None, attach: str, begin_mode: str
    ) -> None:
        """Real transactions on pysqlite, and the state file attached on connect.

        pysqlite's legacy transaction handling issues BEGIN only before DML, so a
        batch's reads would sit outside its transaction; take control of BEGIN.
        It is emitted from the dialect's ``do_begin`` rather than the usual
        ``begin`` event: a BEGIN that fails (SQLITE_BUSY) inside that event leaves
        the SQLAlchemy connection unable to begin again, silently autocommitting.
        """

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None
            if location is None or attach == "never":
                return
            path = location.sqlite_path
            if attach == "if-exists" and not (path and os.path.exists(path)):
                return
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute(f'ATTACH DATABASE ? AS "{location.schema}"', (path,))
            finally:
                cursor.close()

        def _do_begin(dbapi_conn) -> None:
            dbapi_conn.execute(f"BEGIN {begin_mode}")

        engine.dialect.do_begin = _do_begin

    def server_version(self, conn: sa.Connection) -> str:
        return str(conn.exec_driver_sql("SELECT sqlite_version()").scalar())

    def for_update(self, query: sa.Select) -> sa.Select:
        return query  # the transaction's write lock (BEGIN IMMEDIATE) covers it

    def query_plan(self, conn: sa.Connection, compiled: str) -> str:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
        return "\n".join(" ".join(str(c) for c in r) for r in rows)

    def database_files(self, url: URL, location: StateLocation) -> tuple[str | None, ...] | None:
        return (url.database, location.sqlite_path)

    def analyze_database(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("ANALYZE main")

    # ------------------------------------------------------------------ state schema

    def resolve_location(self, url: URL, state_schema: str | None) -> StateLocation:
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
        return StateLocation(self.name, name, str(path))

    def describe_location(self, location: StateLocation) -> str:
        return f"SQLite file {location.sqlite_path} (attached as {location.schema})"

    def state_schema_exists(self, conn: sa.Connection, location: StateLocation) -> bool:
        """Whether the state file is attached."""
        rows = conn.exec_driver_sql("PRAGMA database_list").fetchall()
        return any(row[1] == location.schema for row in rows)

    def create_state_schema_sql(self, location: StateLocation) -> str:
        return f"ATTACH DATABASE '{location.sqlite_path}' AS \"{location.schema}\""

    def create_state_schema(self, conn: sa.Connection, location: StateLocation) -> None:
        # The engine attaches the state file on connect (attach="create").
        raise BadInput(
            f"state file {location.sqlite_path} is not attached: internal error, "
            "please report it with --debug output"
        )

    # ------------------------------------------------------------------ throttling

    replication_source = "SQLite (no replication)"
    has_server_status = False

    def check_load_variables(self, names: list[str]) -> None:
        raise BadInput(
            "--max-load / --critical-load read a server's status: SQLite has none "
            "(drop the options, or use --sleep and --pause-file)"
        )

    # ------------------------------------------------------------------ schema changes

    def offline_add_host_column(
        self,
        change: SchemaChange,
        tables: tuple[str, str],
        type_sql: str,
        length: int,
        revision: str,
        ledger: str,
        state_schema: str,
    ) -> None:
        events, shadow = tables
        change.comment(
            "SQLite has no ADD COLUMN IF NOT EXISTS and no conditional statements: every Nova\n"
            "since Icehouse has host, so this script only checks that it is there (these\n"
            "SELECTs fail with 'no such column: host' where it is missing). Then add it with\n"
            f"ALTER TABLE <table> ADD COLUMN host {type_sql}, or use `schema upgrade`."
        )
        change.op.execute(f"SELECT host FROM {events} LIMIT 0")
        change.op.execute(f"SELECT host FROM {shadow} LIMIT 0")

    def offline_state_guard(
        self,
        change: SchemaChange,
        schema: str,
        *,
        live: str,
        unreverted: str | None,
        advisory: tuple[int, int],
        create_state: Callable[[], None],
    ) -> None:
        # SQLite: no conditional statements; make sure the tables exist (a second run finds
        # them dropped: they are created empty and dropped again), then let a CHECK
        # constraint stop the script (sqlite3 -bail, or Python's executescript).
        create_state()
        change.op.execute(
            "CREATE TEMP TABLE IF NOT EXISTS actionhost_guard ("
            "live_runners INTEGER CONSTRAINT refused_while_a_backfill_or_revert_runs "
            "CHECK (live_runners = 0), "
            "unreverted_runs INTEGER CONSTRAINT refused_runs_not_reverted_use_discard_audit "
            "CHECK (unreverted_runs = 0))"
        )
        audit_count = f"(SELECT COUNT(*) {unreverted})" if unreverted is not None else "0"
        change.op.execute(
            f"INSERT INTO temp.actionhost_guard SELECT (SELECT COUNT(*) {live}), {audit_count}"
        )
        change.op.execute("DROP TABLE temp.actionhost_guard")
