"""MySQL and MariaDB: lock wait timeouts, READ COMMITTED, Galera limits, multi-table UPDATE."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from actionhost_backfill.dialects.base import Dialect, FillBatch

log = logging.getLogger(__name__)

#: Rows a batch writes per event, at most: the event's host and its audit row.
ROWS_PER_EVENT = 2
#: Bytes a batch may add to a write set per event: under the default
#: binlog_row_image=FULL the UPDATE carries the whole events row twice (before
#: and after), traceback included (TEXT, up to 65,535 bytes), plus its audit
#: row.  Measured on a real cluster: 131,632 bytes for one such row's host.
BYTES_PER_EVENT = 132_000


def galera_cap(variables: dict[str, str]) -> int | None:
    """The largest batch that stays well inside Galera's write-set limits.

    ``variables``: the server's ``wsrep_%`` variables.  None when this is not
    a Galera node (``wsrep_on`` OFF or missing) or nothing limits the batch.
    A quarter of each limit is used, leaving room for Nova's own writes.
    """
    if str(variables.get("wsrep_on", "OFF")).upper() != "ON":
        return None
    caps = []
    rows = int(variables.get("wsrep_max_ws_rows") or 0)
    if rows > 0:
        caps.append(rows // (4 * ROWS_PER_EVENT))
    size = int(variables.get("wsrep_max_ws_size") or 0)
    if size > 0:
        caps.append(size // (4 * BYTES_PER_EVENT))
    return max(1, min(caps)) if caps else None


def can_read_committed(conn: sa.Connection) -> bool:
    """Whether READ COMMITTED is safe here (not with statement-based binary logging)."""
    log_bin, binlog_format = conn.exec_driver_sql("SELECT @@log_bin, @@binlog_format").first()
    return not int(log_bin or 0) or str(binlog_format).upper() != "STATEMENT"


class MySQL(Dialect):
    name = "mysql"

    def configure_session(self, conn: sa.Connection, lock_timeout: float) -> int | None:
        whole = max(1, round(lock_timeout))
        conn.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {whole}")
        conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {whole}")
        # REPEATABLE READ makes CREATE ... SELECT (the evidence snapshot) take
        # shared locks on every row it reads, stalling Nova's own updates;
        # READ COMMITTED reads without locks (and takes no gap locks).
        if can_read_committed(conn):
            conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        wsrep = dict(conn.exec_driver_sql("SHOW VARIABLES LIKE 'wsrep%%'").all())
        cap = galera_cap(wsrep)
        if cap is not None:
            log.info("Galera node: batches capped at %s events (write-set limits)", cap)
        return cap

    def drop_temp(self, conn: sa.Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {name}")

    def write_grant(self, user: str, table: str, schema: str | None, database: str | None) -> str:
        return f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{schema or database}`.* TO '{user}'@'%';"

    def fill_from_plan(
        self, conn: sa.Connection, plan: str, batch: FillBatch, outcomes: dict[str, str]
    ) -> None:
        # One multi-table UPDATE locks and writes the rows still NULL and marks
        # them in the plan; the audit is then built from the plan's marks.
        events = self.quote_table(conn, batch.events)
        params = batch.params()
        conn.execute(
            sa.text(f"UPDATE {plan} SET applied = NULL WHERE event_id > :lo AND event_id <= :hi"),
            params,
        )
        conn.execute(
            sa.text(
                f"UPDATE {events} AS e JOIN {plan} AS p ON e.id = p.event_id "
                "SET e.host = p.host, p.applied = 1 "
                "WHERE p.event_id > :lo AND p.event_id <= :hi AND p.host IS NOT NULL "
                "AND LENGTH(e.host) IS NULL"
            ),
            params,
        )
        self.audit_from_plan(conn, plan, batch, outcomes)
