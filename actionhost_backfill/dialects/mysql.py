"""MySQL and MariaDB: lock wait timeouts, READ COMMITTED, Galera limits, multi-table UPDATE."""

from __future__ import annotations

import math
import re
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL

from actionhost_backfill.dialects.base import (
    CONNECT_TIMEOUT,
    DEFAULT_STATE_SCHEMA,
    Dialect,
    FillBatch,
    SchemaChange,
    StateLocation,
)
from actionhost_backfill.dialects.mysql_privileges import MySQLPrivileges
from actionhost_backfill.errors import ActionHostError, BadInput
from actionhost_backfill.redact import mask_url

#: Errors meaning "this ALTER algorithm is not possible here".
_ALGORITHM_UNSUPPORTED = (1064, 1800, 1845, 1846, 4092)

#: Rows a batch writes per event, at most: the event's host and its audit row.
ROWS_PER_EVENT = 2
#: Bytes a batch may add to a write set per event: under the default
#: binlog_row_image=FULL the UPDATE carries the whole events row twice (before
#: and after), traceback included (TEXT, up to 65,535 bytes), plus its audit
#: row.  Measured on a real cluster: 131,632 bytes for one such row's host.
BYTES_PER_EVENT = 132_000


#: A DATETIME or TIMESTAMP value as MySQL and MariaDB send it in text results.
_CANONICAL_DATETIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{6})?", re.ASCII)


def pymysql_converters() -> dict:
    """PyMySQL's converters, DATETIME and TIMESTAMP values decoded at C speed.

    PyMySQL parses each one in Python (a regular expression, then each field
    converted and the datetime built from a list): a quarter of a planner's
    busy time at 10M events on MariaDB (``docs/benchmarks.md``), a planner
    reading two or more datetimes per event.  A value in the server's canonical form
    (``YYYY-MM-DD hh:mm:ss``, six fraction digits or none) is parsed by
    :meth:`datetime.fromisoformat` instead, which reads the same fields at the
    same positions; anything else (zero dates, invalid dates, other forms) and
    any value it rejects go to PyMySQL's own converter, so every value decodes
    to what PyMySQL returns.
    """
    from pymysql import converters
    from pymysql.constants import FIELD_TYPE

    canonical, parse, fallback = (
        _CANONICAL_DATETIME.fullmatch,
        datetime.fromisoformat,
        converters.convert_datetime,
    )

    def convert_datetime(value: str):
        if canonical(value) is not None:
            try:
                return parse(value)
            except ValueError:
                pass  # out of range (February 31st...): PyMySQL's answer
        return fallback(value)

    return {
        **converters.conversions,
        FIELD_TYPE.DATETIME: convert_datetime,
        FIELD_TYPE.TIMESTAMP: convert_datetime,
    }


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


class MySQL(MySQLPrivileges):
    __dialect__ = "mysql"
    name = "mysql"
    is_mariadb = False
    """MariaDB, told apart once per connection (:meth:`for_server`)."""
    may_be_galera = True

    @classmethod
    def for_server(cls, sa_dialect: sa.Dialect) -> Dialect:
        # SQLAlchemy names a MariaDB server reached through mysql+pymysql:// "mysql"
        # and knows it is MariaDB once connected.
        if getattr(sa_dialect, "is_mariadb", False):
            return MariaDB()
        return cls()

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
        return galera_cap(wsrep)

    def drop_temp(self, conn: sa.Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {name}")

    def add_counts(
        self, conn: sa.Connection, table: sa.Table, rows: list[dict], counter: str
    ) -> None:
        insert = mysql.insert(table).values(rows)
        conn.execute(
            insert.on_duplicate_key_update({counter: table.c[counter] + insert.inserted[counter]})
        )

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

    # ------------------------------------------------------------------ sessions

    indexes_text = False

    def engine_options(self, url: URL, *, must_exist: bool, lock_timeout: float | None) -> dict:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT, "charset": "utf8mb4"}
        if url.get_driver_name() == "pymysql":
            connect_args["conv"] = pymysql_converters()
        return {"connect_args": connect_args}

    def server_version(self, conn: sa.Connection) -> str:
        return str(conn.exec_driver_sql("SELECT VERSION()").scalar())

    def query_plan(self, conn: sa.Connection, compiled: str) -> str:
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled}").mappings().all()
        return "\n".join(str(dict(r)) for r in rows)

    def by_bytes(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """``CAST(... AS BINARY)``: byte order, whatever the column's character set and
        collation (Nova's are case-insensitive)."""
        return sa.cast(column, mysql.BINARY())

    def copies_through_client(self, conn: sa.Connection) -> bool:
        # Under REPEATABLE READ (statement-based binlog) CREATE ... SELECT would
        # lock every row it reads.
        return "READ-COMMITTED" not in isolation(conn)

    def analyze_database(self, conn: sa.Connection) -> None:
        names = sorted(n for n in sa.inspect(conn).get_table_names() if n != "alembic_version")
        tables = ", ".join(f"`{n}`" for n in names)
        conn.exec_driver_sql(f"ANALYZE TABLE {tables}").fetchall()

    # ------------------------------------------------------------------ state schema

    def resolve_location(self, url: URL, state_schema: str | None) -> StateLocation:
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
        return StateLocation(self.name, name)

    def describe_location(self, location: StateLocation) -> str:
        return f"MySQL/MariaDB database `{location.schema}`"

    def state_schema_exists(self, conn: sa.Connection, location: StateLocation) -> bool:
        return bool(
            conn.execute(
                sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                {"n": location.schema},
            ).first()
        )

    def create_state_schema_sql(self, location: StateLocation) -> str:
        return (
            f"CREATE DATABASE IF NOT EXISTS `{location.schema}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )

    def state_schema_denied(self, location: StateLocation, user: str, database: str) -> str:
        return (
            f"cannot create database `{location.schema}` (access denied): run "
            f"GRANT ALL PRIVILEGES ON `{location.schema}`.* TO '{user}'@'%'; "
            "or pass --state-schema naming a database you can write"
        )

    # ------------------------------------------------------------------ runner lock

    def causal_reads(self, conn: sa.Connection) -> None:
        """Galera: make this session's reads wait for what other nodes committed
        (the lease row another runner took through another node)."""
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("SET SESSION wsrep_sync_wait = 1")
        except sa.exc.DBAPIError:
            pass  # not a Galera-capable server (Oracle MySQL): nothing to wait for

    # ------------------------------------------------------------------ throttling

    replication_source = "SHOW SLAVE HOSTS"

    def replicas(self, conn: sa.Connection, url: URL) -> list[URL]:
        rows = conn.exec_driver_sql("SHOW SLAVE HOSTS").mappings().all()
        found = []
        for row in rows:
            server_id, host, port = row.get("Server_id"), row.get("Host"), row.get("Port")
            if not host:
                raise BadInput(
                    f"replica with server id {server_id} reports no host: set report_host "
                    "on it, or name it with --replica URL"
                )
            found.append(url.set(host=host, port=int(port)))
        return found

    def is_galera(self, conn: sa.Connection) -> bool:
        wsrep = dict(conn.exec_driver_sql("SHOW VARIABLES LIKE 'wsrep_on'").all())
        return str(wsrep.get("wsrep_on", "OFF")).upper() == "ON"

    def galera_flow_status(self, conn: sa.Connection) -> dict[str, str]:
        """This node's ``wsrep_flow_control_paused_ns`` and ``wsrep_local_recv_queue``."""
        return dict(
            conn.exec_driver_sql(
                "SHOW GLOBAL STATUS WHERE Variable_name IN "
                "('wsrep_flow_control_paused_ns', 'wsrep_local_recv_queue')"
            ).all()
        )

    def replica_lag(
        self, conn: sa.Connection, where: str, max_lag: float
    ) -> tuple[str | None, float | None]:
        """``Seconds_Behind_Master``; NULL (SQL or IO thread stopped) is lagging."""
        row = conn.exec_driver_sql("SHOW SLAVE STATUS").mappings().first()
        if row is None:
            return f"{where} is not replicating (SHOW SLAVE STATUS is empty)", None
        lag = row.get("Seconds_Behind_Master")
        if lag is None:
            return f"replica {where}: replication stopped (lag unknown)", float("inf")
        if float(lag) > max_lag:
            return f"replica {where} is {lag}s behind", float(lag)
        return None, float(lag)

    def schema_notes(self, conn: sa.Connection) -> list[str]:
        if not self.is_galera(conn):
            return []
        return [
            "Galera cluster (wsrep_on=ON): DDL runs as Total Order Isolation, on every node at "
            "once, and the whole cluster stops committing while the index builds (measured on a "
            "3-node cluster: writes on another node stalled 1.7-1.9 s at 1M events, 0.4 s at "
            "300k; see runbook 05): use schema upgrade --galera-rolling (node by node, RSU) "
            "for a large table"
        ]

    def load_status(self, conn: sa.Connection, names: list[str]) -> dict[str, float]:
        quoted = ", ".join(f"'{name}'" for name in names)
        rows = conn.exec_driver_sql(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({quoted})").all()
        return {name.lower(): float(value) for name, value in rows}

    # ------------------------------------------------------------------ schema changes

    add_column_plan = "ALGORITHM=INSTANT, else INPLACE with LOCK=NONE"
    create_index_plan = "ALGORITHM=INPLACE, LOCK=NONE"

    def add_column(self, change: SchemaChange, table: str, column: str, type_sql: str) -> str:
        return self._alter(
            change, table, f"ADD COLUMN {column} {type_sql} NULL", ("INSTANT", "INPLACE")
        )

    def drop_column(self, change: SchemaChange, table: str, column: str) -> None:
        self._alter(change, table, f"DROP COLUMN {column}", ("INSTANT", "INPLACE"))

    def create_index(
        self, change: SchemaChange, table: str, index: str, column: str, *, rebuild_invalid: bool
    ) -> str:
        return self._alter(change, table, f"ADD INDEX `{index}` ({column})", ("INPLACE",))

    def drop_index(self, change: SchemaChange, table: str, index: str) -> None:
        self._alter(change, table, f"DROP INDEX `{index}`", ("INPLACE",))

    def _alter(
        self, change: SchemaChange, table: str, clause: str, algorithms: tuple[str, ...]
    ) -> str:
        """ALTER with the cheapest online algorithm the server accepts; never COPY."""
        conn = change.conn
        conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {math.ceil(change.lock_timeout)}")
        rejected = []
        for algorithm in algorithms:
            lock = "" if algorithm == "INSTANT" else ", LOCK=NONE"
            sql = f"ALTER TABLE `{table}` {clause}, ALGORITHM={algorithm}{lock}"
            try:
                change.guard_lock(lambda sql=sql: conn.exec_driver_sql(sql), table)
            except sa.exc.DBAPIError as exc:
                errno = exc.orig.args[0] if getattr(exc.orig, "args", None) else None
                if errno in _ALGORITHM_UNSUPPORTED:
                    rejected.append(
                        f"{algorithm}: {exc.orig.args[1] if len(exc.orig.args) > 1 else exc.orig}"
                    )
                    continue
                raise
            return f"ALGORITHM={algorithm}{lock}"
        raise ActionHostError(
            f"the server cannot {clause.split(' (')[0].lower()} on {table} online "
            f"({'; '.join(rejected)}): it would copy the table under a lock; apply it in a "
            "maintenance window with pt-online-schema-change or gh-ost instead"
        )

    @staticmethod
    def _prepared(change: SchemaChange, condition: str, statement: str) -> None:
        """Run ``statement`` only when ``condition`` holds (offline SQL).

        MySQL 8 has no IF [NOT] EXISTS for columns and indexes and no IF outside
        stored programs; a prepared statement chosen by ``IF()`` works on MySQL
        and MariaDB alike.
        """
        change.op.execute(f"SET @actionhost_ddl = IF({condition}, '{statement}', 'DO 0')")
        change.op.execute("PREPARE actionhost_ddl FROM @actionhost_ddl")
        change.op.execute("EXECUTE actionhost_ddl")
        change.op.execute("DEALLOCATE PREPARE actionhost_ddl")

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
        change.comment(
            "MySQL 8 has no ADD COLUMN IF NOT EXISTS and no IF outside stored programs: each\n"
            "ALTER is prepared from information_schema, so it runs only where host is missing\n"
            "(every Nova since Icehouse has it), and the ledger records what it added.\n"
            "Works on MySQL and MariaDB. Offline mode cannot check an existing column's type."
        )
        change.op.execute(f"SET SESSION lock_wait_timeout = {math.ceil(change.lock_timeout)}")
        for table in tables:
            missing = (
                f"(SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
                f"AND table_name = '{table}') = 1 AND (SELECT COUNT(*) FROM "
                "information_schema.columns WHERE table_schema = DATABASE() "
                f"AND table_name = '{table}' AND column_name = 'host') = 0"
            )
            change.op.execute(f"SET @actionhost_missing = ({missing})")
            self._prepared(
                change,
                "@actionhost_missing",
                f"ALTER TABLE {table} ADD COLUMN host {type_sql} NULL, ALGORITHM=INSTANT",
            )
            change.op.execute(
                f"INSERT INTO {state_schema}.{ledger} (revision, kind, table_name, object_name, "
                f"detail) SELECT '{revision}', 'column', '{table}', 'host', 'offline SQL' FROM DUAL "
                "WHERE @actionhost_missing = 1"
            )
        change.comment(
            "If the server rejects ALGORITHM=INSTANT (MySQL before 8.0.12), use ALGORITHM=INPLACE, LOCK=NONE."
        )

    def offline_create_index(
        self, change: SchemaChange, table: str, index: str, column: str
    ) -> None:
        change.comment(
            f"Runs only where no index of {table} starts with host (Nova may add one some day;\n"
            "MySQL 8 has no ADD INDEX IF NOT EXISTS): prepared from information_schema."
        )
        change.op.execute(f"SET SESSION lock_wait_timeout = {math.ceil(change.lock_timeout)}")
        self._prepared(
            change,
            "(SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "
            f"AND table_name = '{table}' AND column_name = '{column}' AND seq_in_index = 1) = 0",
            f"ALTER TABLE {table} ADD INDEX {index} ({column}), ALGORITHM=INPLACE, LOCK=NONE",
        )

    def offline_drop_index(self, change: SchemaChange, table: str, index: str) -> None:
        change.op.execute(f"SET SESSION lock_wait_timeout = {math.ceil(change.lock_timeout)}")
        self._prepared(
            change,
            "(SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "
            f"AND table_name = '{table}' AND index_name = '{index}') > 0",
            f"ALTER TABLE {table} DROP INDEX {index}, ALGORITHM=INPLACE, LOCK=NONE",
        )

    def offline_create_index_if_missing(
        self, change: SchemaChange, name: str, schema: str, table: str, column: str
    ) -> None:
        self._prepared(
            change,
            f"(SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = '{schema}' "
            f"AND table_name = '{table}' AND index_name = '{name}') = 0",
            f"CREATE INDEX {name} ON {schema}.{table} ({column})",
        )

    utc_now_sql = "UTC_TIMESTAMP()"
    select_constant_from = " FROM DUAL"

    def offline_state_guard(
        self,
        change: SchemaChange,
        schema: str,
        *,
        live: str,
        unreverted: str | None,
        advisory: tuple[int, int],
        create_state,
    ) -> None:
        change.op.execute("SET @actionhost_live = 0, @actionhost_unreverted = 0")
        present = (
            "(SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
            f"'{schema}' AND table_name IN ('audit', 'runs', 'runner_lease')) = 3"
        )
        counts = [("@actionhost_live", live)]
        if unreverted is not None:
            counts.append(("@actionhost_unreverted", unreverted))
        for variable, source in counts:
            self._prepared(
                change, present, f"SET {variable} = (SELECT COUNT(*) {source})".replace("'", "''")
            )
        # No IF outside stored programs: a statement naming an unknown column stops the
        # client with that name as the message.
        self._prepared(
            change,
            "@actionhost_live > 0",
            "SELECT refused_to_drop_the_state_while_a_backfill_or_revert_runs",
        )
        self._prepared(
            change,
            "@actionhost_unreverted > 0",
            "SELECT refused_to_drop_the_audit_of_runs_not_reverted",
        )


class MariaDB(MySQL):
    """MariaDB: MySQL's dialect; what differs is asked of :attr:`is_mariadb`."""

    __dialect__ = "mariadb"
    is_mariadb = True

    @classmethod
    def for_server(cls, sa_dialect: sa.Dialect) -> Dialect:
        return cls()


def isolation(conn: sa.Connection) -> str:
    """The session's transaction isolation, as MySQL spells it (``READ-COMMITTED``)."""
    row = (
        conn.exec_driver_sql("SHOW VARIABLES LIKE 'tx_isolation'").first()
        or conn.exec_driver_sql("SHOW VARIABLES LIKE 'transaction_isolation'").first()
    )
    return str(row[1]).upper().replace("_", "-") if row else "REPEATABLE-READ"
