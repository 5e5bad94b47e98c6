"""PostgreSQL: lock_timeout, and a batch as one statement (a data-modifying CTE)."""

from __future__ import annotations

import sqlalchemy as sa

from actionhost_backfill.dialects.base import AUDIT_COLUMNS, Dialect, FillBatch


class PostgreSQL(Dialect):
    name = "postgresql"

    def configure_session(self, conn: sa.Connection, lock_timeout: float) -> int | None:
        conn.exec_driver_sql(f"SET lock_timeout = '{max(1, round(lock_timeout * 1000))}ms'")
        return None

    def temp_table(self, name: str) -> str:
        return f"pg_temp.{name}"

    def drop_temp(self, conn: sa.Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{name}")

    def analyze_temp(self, conn: sa.Connection, name: str) -> None:
        conn.exec_driver_sql(f"ANALYZE {name}")

    def write_grant(self, user: str, table: str, schema: str | None, database: str | None) -> str:
        if schema is None:
            return f"GRANT UPDATE ON {table} TO {user};"
        return (
            f"GRANT USAGE ON SCHEMA {schema} TO {user}; "
            f"GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {user};"
        )

    def fill_from_plan(
        self, conn: sa.Connection, plan: str, batch: FillBatch, outcomes: dict[str, str]
    ) -> None:
        # The UPDATE locks and writes the rows still NULL and returns their ids;
        # the INSERT in the same statement audits every planned event, knowing
        # exactly which ones it wrote (a host Nova recorded meanwhile is skipped).
        events = self.quote_table(conn, batch.events)
        audit = self.quote_table(conn, batch.audit)
        conn.execute(
            sa.text(
                "WITH filled AS ("
                f" UPDATE {events} AS e SET host = p.host FROM {plan} AS p"
                " WHERE p.event_id > :lo AND p.event_id <= :hi AND p.host IS NOT NULL"
                " AND e.id = p.event_id AND e.id > :lo AND e.id <= :hi"
                " AND LENGTH(e.host) IS NULL RETURNING e.id"
                f") INSERT INTO {audit} ({', '.join(AUDIT_COLUMNS)}) "
                "SELECT :run, :tbl, p.event_id, "
                "CASE WHEN f.id IS NOT NULL THEN p.host END, "
                "CASE WHEN p.host IS NOT NULL AND f.id IS NULL THEN :meanwhile ELSE p.rule END, "
                "CASE WHEN f.id IS NOT NULL THEN :filled WHEN p.host IS NOT NULL THEN :skipped "
                "ELSE :left_null END, :batch "
                f"FROM {plan} AS p LEFT JOIN filled AS f ON f.id = p.event_id "
                "WHERE p.event_id > :lo AND p.event_id <= :hi"
            ),
            batch.params(**outcomes),
        )
