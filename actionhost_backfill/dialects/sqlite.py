"""SQLite: the batch's transaction holds the write lock (BEGIN IMMEDIATE), so no row
can change between marking the plan and writing from it."""

from __future__ import annotations

import sqlalchemy as sa

from actionhost_backfill.dialects.base import Dialect, FillBatch


class SQLite(Dialect):
    name = "sqlite"

    def configure_session(self, conn: sa.Connection, lock_timeout: float) -> int | None:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {max(1, round(lock_timeout * 1000))}")
        return None

    def temp_table(self, name: str) -> str:
        return f"temp.{name}"

    def drop_temp(self, conn: sa.Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")

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
