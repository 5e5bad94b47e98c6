"""SQLite: the batch's transaction holds the write lock (BEGIN IMMEDIATE), so no row
can change between marking the plan and writing from it."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from actionhost_backfill.dialects.base import (
    Dialect,
    FillBatch,
    MissingPrivilege,
    PrivilegeRequest,
)
from actionhost_backfill.state.location import StateLocation


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
    name = "sqlite"

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
