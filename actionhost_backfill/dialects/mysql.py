"""MySQL and MariaDB: lock wait timeouts, READ COMMITTED, Galera limits, multi-table UPDATE."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill.dialects.base import (
    CONNECT_TIMEOUT,
    DEFAULT_STATE_SCHEMA,
    Dialect,
    FillBatch,
    MissingPrivilege,
    PrivilegeRequest,
    SchemaChange,
    StateLocation,
    statement_privilege,
)
from actionhost_backfill.errors import ActionHostError, BadInput
from actionhost_backfill.redact import mask_url

log = logging.getLogger(__name__)

#: Errors meaning "this ALTER algorithm is not possible here".
_ALGORITHM_UNSUPPORTED = (1064, 1800, 1845, 1846, 4092)

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


def _like(pattern: str, name: str) -> bool:
    """Whether ``name`` matches a database-level grant's name (a LIKE pattern)."""
    regex = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        i += 1
    return re.fullmatch(regex, name) is not None


_GRANT_LINE = re.compile(r"^GRANT (.+?) ON (\S+) TO ")


def _split_privileges(text: str) -> list[tuple[str, str | None]]:
    """``SELECT, UPDATE (`host`, `id`)`` -> [("SELECT", None), ("UPDATE", "host"), ...]."""
    found: list[tuple[str, str | None]] = []
    for match in re.finditer(r"\s*([A-Z][A-Z ]*?)\s*(?:\(([^)]*)\))?\s*(?:,|$)", text):
        name = match.group(1).strip()
        if not name:
            continue
        if match.group(2):
            found.extend((name, c.strip().strip("`")) for c in match.group(2).split(","))
        else:
            found.append((name, None))
    return found


@dataclass
class Grants:
    """The privileges of the connected user (and its enabled roles), from the catalog.

    ``information_schema.*_PRIVILEGES`` list the user's own grants; the
    privileges of its enabled roles are not there (MariaDB), so those are read
    with ``SHOW GRANTS FOR role``.
    """

    user: str
    host: str
    glob: set[str] = field(default_factory=set)
    schema: list[tuple[str, str]] = field(default_factory=list)
    """(database name pattern, privilege)."""
    table: set[tuple[str, str, str]] = field(default_factory=set)
    column: set[tuple[str, str, str, str]] = field(default_factory=set)

    @classmethod
    def read(cls, conn: sa.Connection) -> Grants:
        current = str(conn.exec_driver_sql("SELECT CURRENT_USER()").scalar())
        user, _, host = current.rpartition("@")
        grants = cls(user, host)
        grantee = f"'{user}'@'{host}'"

        def rows(sql: str) -> list[tuple]:
            return [tuple(r) for r in conn.exec_driver_sql(sql, (grantee,))]

        i_s = "information_schema"
        grants.glob = {
            r[0]
            for r in rows(f"SELECT PRIVILEGE_TYPE FROM {i_s}.USER_PRIVILEGES WHERE GRANTEE = %s")
        }
        grants.schema = rows(
            f"SELECT TABLE_SCHEMA, PRIVILEGE_TYPE FROM {i_s}.SCHEMA_PRIVILEGES WHERE GRANTEE = %s"
        )
        grants.table = set(
            rows(
                f"SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE FROM {i_s}.TABLE_PRIVILEGES "
                "WHERE GRANTEE = %s"
            )
        )
        grants.column = set(
            rows(
                f"SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, PRIVILEGE_TYPE "
                f"FROM {i_s}.COLUMN_PRIVILEGES WHERE GRANTEE = %s"
            )
        )
        try:
            roles = [
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT ROLE_NAME FROM {i_s}.ENABLED_ROLES WHERE ROLE_NAME IS NOT NULL"
                )
            ]
        except sa.exc.DBAPIError:
            conn.rollback()
            roles = []
        for role in roles:
            for (line,) in conn.exec_driver_sql(f"SHOW GRANTS FOR `{role}`"):
                grants._add_grant_line(str(line))
        conn.rollback()
        return grants

    def _add_grant_line(self, line: str) -> None:
        match = _GRANT_LINE.match(line)
        if match is None or "." not in match.group(2):
            return  # a role granted to the role, or a routine
        database, _, table = match.group(2).partition(".")
        database, table = database.strip("`").replace("\\\\", "\\"), table.strip("`")
        for privilege, column in _split_privileges(match.group(1)):
            privilege = "ALL" if privilege.startswith("ALL") else privilege
            if database == "*":
                self.glob.add(privilege)
            elif table == "*":
                self.schema.append((database, privilege))
            elif column is None:
                self.table.add((database, table, privilege))
            else:
                self.column.add((database, table, column, privilege))

    def has(
        self, privilege: str, database: str, table: str | None = None, column: str | None = None
    ) -> bool:
        """Whether ``privilege`` is held on the database (or its table, or column)."""
        wanted = {privilege, "ALL"}
        if self.glob & wanted:
            return True
        if any(p in wanted and _like(pattern, database) for pattern, p in self.schema):
            return True
        if table is not None and any((database, table, p) in self.table for p in wanted):
            return True
        return column is not None and any(
            (database, table, column, p) in self.column for p in wanted
        )

    def has_global(self, privilege: str) -> bool:
        return bool(self.glob & {privilege, "ALL"})

    def anything_on(self, database: str) -> bool:
        """Whether any privilege at all names this database (then it would be visible)."""
        return (
            bool(self.glob - {"USAGE"})
            or any(_like(pattern, database) for pattern, _ in self.schema)
            or any(d == database for d, _, _ in self.table)
        )

    def to(self) -> str:
        return f"'{self.user}'@'{self.host}'"


def _missing_on(
    grants: Grants, privileges: list[str], database: str, table: str | None = None
) -> list[str]:
    return [p for p in privileges if not grants.has(p, database, table)]


class MySQL(Dialect):
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
        cap = galera_cap(wsrep)
        if cap is not None:
            log.info("Galera node: batches capped at %s events (write-set limits)", cap)
        return cap

    def drop_temp(self, conn: sa.Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {name}")

    def missing_privileges(
        self, conn: sa.Connection, request: PrivilegeRequest
    ) -> list[MissingPrivilege]:
        grants = Grants.read(conn)
        db, to = request.database, grants.to()
        mariadb = self.is_mariadb
        missing: list[MissingPrivilege] = []

        def add(privileges: list[str], on: str, why: str, target: str) -> None:
            if privileges:
                listed = ", ".join(privileges)
                missing.append(
                    MissingPrivilege(listed, on, why, f"GRANT {listed} ON {target} TO {to};")
                )

        unread = [t for t in request.read if not grants.has("SELECT", db, t)]
        if unread:
            add(["SELECT"], f"{', '.join(unread)} in `{db}`", "reads Nova's tables", f"`{db}`.*")
        if request.temporary:
            add(
                _missing_on(grants, ["CREATE TEMPORARY TABLES"], db),
                f"database `{db}`",
                "the evidence snapshot and the plan are temporary tables",
                f"`{db}`.*",
            )
        # The host column and its index are added with ALTER TABLE (online DDL):
        # MariaDB needs ALTER on the table; MySQL also CREATE and INSERT.
        alter_needs = ["ALTER"] if mariadb else ["ALTER", "CREATE", "INSERT"]
        for table in dict.fromkeys(request.alter + request.index):
            why = " and ".join(
                what
                for what, tables in (
                    ("adds the host column", request.alter),
                    ("adds the host index", request.index),
                )
                if table in tables
            )
            add(
                _missing_on(grants, alter_needs, db, table),
                f"`{db}`.`{table}`",
                f"schema upgrade {why} (ALTER TABLE)",
                f"`{db}`.`{table}`",
            )
        for table in request.update:
            if not grants.has("UPDATE", db, table, "host"):
                missing.append(
                    MissingPrivilege(
                        "UPDATE",
                        f"`{db}`.`{table}`",
                        "writes the host column",
                        f"GRANT UPDATE (host) ON `{db}`.`{table}` TO {to};",
                    )
                )
        missing.extend(self._state_privileges(grants, request))
        if request.replicas:
            new = mariadb and conn.dialect.server_version_info >= (10, 5)
            if not (grants.has_global("REPLICATION MASTER ADMIN" if new else "REPLICATION SLAVE")):
                privilege = "REPLICATION MASTER ADMIN" if new else "REPLICATION SLAVE"
                add([privilege], "*.*", "--max-lag lists the replicas (SHOW SLAVE HOSTS)", "*.*")
            monitors = (
                ["SLAVE MONITOR", "REPLICA MONITOR", "SUPER"]
                if new
                else ["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"]
            )
            if not any(grants.has_global(p) for p in monitors):
                add(
                    [monitors[0]],
                    "*.* (on the replicas too)",
                    "--max-lag reads SHOW SLAVE STATUS on each replica with the same user",
                    "*.*",
                )
        return missing

    def _state_privileges(
        self, grants: Grants, request: PrivilegeRequest
    ) -> list[MissingPrivilege]:
        if request.state is None:
            return []
        state = request.location.schema
        wanted = {
            "read": ["SELECT"],
            "write": ["SELECT", "INSERT", "UPDATE", "DELETE"],
            "create": ["CREATE", "INDEX", "SELECT", "INSERT", "UPDATE", "DELETE"],
        }[request.state]
        if request.state == "create":
            lacking = _missing_on(grants, wanted, state)
        else:
            tables = request.state_tables or (None,)
            lacking = [p for p in wanted if not all(grants.has(p, state, t) for t in tables)]
        if not lacking:
            return []
        why = {
            "read": "reads the toolkit's own tables",
            "write": "records runs, checkpoints and the audit",
            "create": "creates the state database and its tables, and records revisions",
        }[request.state]
        listed = ", ".join(lacking)
        return [
            MissingPrivilege(
                listed,
                f"database `{state}`",
                why,
                f"GRANT {listed} ON `{state}`.* TO {grants.to()};",
            )
        ]

    def state_access(self, conn: sa.Connection, location: StateLocation) -> str:
        visible = conn.execute(
            sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
            {"n": location.schema},
        ).first()
        grants = Grants.read(conn)
        if visible:
            readable = grants.has("SELECT", location.schema) or any(
                d == location.schema and p == "SELECT" for d, _, p in grants.table
            )
            return "readable" if readable else "unreadable"
        if grants.has_global("SHOW DATABASES") or grants.anything_on(location.schema):
            return "absent"
        return "unknown"

    def privilege_hint(self, statement: str | None, message: str, user: str, database: str) -> str:
        grantee = f"'{user}'@'%'"
        # 1142: "UPDATE command denied to user 'u'@'h' for table `db`.`t`"
        table = re.search(
            r"(\w[\w ]*?) command denied to user '([^']*)'@'([^']*)' for table [`']?([^`'\s]+)"
            r"(?:[`']?\.[`']?([^`'\s]+))?",
            message,
        )
        if table:
            privilege, name, host = table.group(1).upper(), table.group(2), table.group(3)
            target = (
                f"`{table.group(4)}`.`{table.group(5)}`"
                if table.group(5)
                else f"`{database}`.`{table.group(4)}`"
            )
            return (
                f"the statement needs the {privilege} privilege: run "
                f"GRANT {privilege} ON {target} TO '{name}'@'{host}';"
            )
        # 1227: "Access denied; you need (at least one of) the X privilege(s)"
        needed = re.search(r"you need \(at least one of\) the (.+?) privilege", message)
        if needed:
            first = needed.group(1).split(",")[-1].strip()
            return (
                f"the statement needs the {needed.group(1)} privilege: run "
                f"GRANT {first} ON *.* TO {grantee}; (use your account's host part)"
            )
        # 1044: "Access denied for user 'u'@'h' to database 'd'"
        denied = re.search(r"for user '([^']*)'@'([^']*)' to database '([^']*)'", message)
        privilege = statement_privilege(statement)
        if denied and privilege:
            return (
                f"the statement needs the {privilege} privilege: run GRANT {privilege} ON "
                f"`{denied.group(3)}`.* TO '{denied.group(1)}'@'{denied.group(2)}';"
            )
        return super().privilege_hint(statement, message, user, database)

    def write_grant(self, user: str, table: str, schema: str | None, database: str | None) -> str:
        if schema is None:  # a Nova table: only its host column is written
            return f"GRANT UPDATE (host) ON `{database}`.`{table}` TO '{user}'@'%';"
        return f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{schema}`.* TO '{user}'@'%';"

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
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT, "charset": "utf8mb4"}}

    def server_version(self, conn: sa.Connection) -> str:
        return str(conn.exec_driver_sql("SELECT VERSION()").scalar())

    def query_plan(self, conn: sa.Connection, compiled: str) -> str:
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled}").mappings().all()
        return "\n".join(str(dict(r)) for r in rows)

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
