"""PostgreSQL: lock_timeout, and a batch as one statement (a data-modifying CTE)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL

from actionhost_backfill.dialects.base import (
    AUDIT_COLUMNS,
    CONNECT_TIMEOUT,
    DEFAULT_STATE_SCHEMA,
    FillBatch,
    SchemaChange,
    StateLocation,
    adding_on_conflict,
)
from actionhost_backfill.dialects.postgresql_privileges import PostgreSQLPrivileges
from actionhost_backfill.errors import BadInput

#: How much of the server's memory one toolkit session may keep its temporary
#: tables in (``temp_buffers``; PostgreSQL's default is 8MB).  The evidence
#: snapshot and the planner's copy of the NULL-host events are about 230 MB per
#: million events and are read back a chunk of instances at a time, all over
#: the tables: beyond ``temp_buffers`` every read goes through the kernel's
#: page cache instead.  At 1 M events (docs/benchmarks.md, "second series";
#: measured with 512MB, 256MB holds those 231 MB) the snapshot took 1.7 s less
#: and the planner's chunk reads 40 % less server time.  The memory is taken
#: only as temporary tables fill it; a session without any uses none.
TEMP_BUFFERS = "256MB"


class PostgreSQL(PostgreSQLPrivileges):
    __dialect__ = "postgresql"
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

    def add_counts(
        self, conn: sa.Connection, table: sa.Table, rows: list[dict], counter: str
    ) -> None:
        conn.execute(adding_on_conflict(postgresql.insert(table).values(rows), table, counter))

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

    # ------------------------------------------------------------------ sessions

    def engine_options(self, url: URL, *, must_exist: bool, lock_timeout: float | None) -> dict:
        return {
            "connect_args": {
                "connect_timeout": CONNECT_TIMEOUT,
                "application_name": "actionhost-backfill",
            }
        }

    def configure_engine(self, engine: sa.Engine, location, attach: str, begin_mode: str) -> None:
        # Set as each session starts: PostgreSQL refuses to change temp_buffers
        # once the session has used a temporary table.  (Not the libpq
        # ``options`` startup parameter: connection poolers such as PgBouncer
        # refuse it.)
        @sa.event.listens_for(engine, "connect")
        def _temp_buffers(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
            finally:
                cursor.close()
            dbapi_connection.commit()  # a SET rolled back would be undone

    def server_version(self, conn: sa.Connection) -> str:
        return str(conn.exec_driver_sql("SHOW server_version").scalar())

    def in_values(self, column: sa.ColumnElement, values: list) -> sa.ColumnElement[bool]:
        """``column = ANY(:array)``: one array parameter instead of thousands of bound
        values, so the statement compiles once and the server plans it once."""
        element = sa.Integer() if isinstance(column.type, sa.Integer) else sa.String()
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(element)))

    def by_bytes(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """The "C" collation: strcmp order, not the database's locale."""
        return column.collate("C")

    def indexes(self, conn: sa.Connection, table: str) -> list[tuple[str, list[str], bool]]:
        """With validity: a failed CREATE INDEX CONCURRENTLY leaves an INVALID index."""
        rows = conn.execute(
            sa.text(
                """
                SELECT ic.relname, i.indisvalid,
                       array(SELECT a.attname
                             FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                             JOIN pg_attribute a
                               ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                             ORDER BY k.ord) AS columns
                FROM pg_index i
                JOIN pg_class ic ON ic.oid = i.indexrelid
                JOIN pg_class tc ON tc.oid = i.indrelid
                JOIN pg_namespace n ON n.oid = tc.relnamespace
                WHERE tc.relname = :table AND n.nspname = current_schema()
                """
            ),
            {"table": table},
        ).fetchall()
        return [(r[0], list(r[2]), bool(r[1])) for r in rows]

    def analyze_database(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("ANALYZE")

    # ------------------------------------------------------------------ state schema

    def resolve_location(self, url: URL, state_schema: str | None) -> StateLocation:
        name = state_schema or DEFAULT_STATE_SCHEMA
        if name == "public":
            raise BadInput(
                "--state-schema public is the Nova cell schema: pick another name "
                "(default: actionhost)"
            )
        return StateLocation(self.name, name)

    def describe_location(self, location: StateLocation) -> str:
        return f'PostgreSQL schema "{location.schema}"'

    def state_schema_exists(self, conn: sa.Connection, location: StateLocation) -> bool:
        return bool(
            conn.execute(
                sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": location.schema}
            ).first()
        )

    def create_state_schema_sql(self, location: StateLocation) -> str:
        return f'CREATE SCHEMA IF NOT EXISTS "{location.schema}"'

    def state_schema_denied(self, location: StateLocation, user: str, database: str) -> str:
        return (
            f'cannot create schema "{location.schema}" in database {database} '
            f"(permission denied): run GRANT CREATE ON DATABASE {database} TO {user}; "
            f'or CREATE SCHEMA "{location.schema}" AUTHORIZATION {user}; as the '
            "database owner, or pass --state-schema naming a schema you own"
        )

    # ------------------------------------------------------------------ runner lock

    advisory_locks = True

    def try_advisory_lock(self, conn: sa.Connection, namespace: int, key: int) -> bool:
        return bool(
            conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({namespace}, {key})").scalar()
        )

    def advisory_unlock(self, conn: sa.Connection, namespace: int, key: int) -> None:
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({namespace}, {key})")

    def advisory_lock_held(self, conn: sa.Connection, namespace: int, key: int) -> bool:
        """Whether any session holds it (``pg_locks``, readable by any user)."""
        return bool(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                f"AND classid = {namespace} AND objid = {key} AND objsubid = 2"
            ).scalar()
        )

    # ------------------------------------------------------------------ throttling

    replication_source = "pg_stat_replication"
    status_variables = ("threads_running",)

    def has_standbys(self, conn: sa.Connection) -> bool:
        return bool(
            int(conn.exec_driver_sql("SELECT count(*) FROM pg_stat_replication").scalar() or 0)
        )

    def standby_positions(self, conn: sa.Connection) -> list[tuple]:
        """The primary's WAL position, and each standby's name, address and replayed
        position (one row of NULLs beside the position when none is connected)."""
        return conn.exec_driver_sql(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, application_name, "
            "client_addr::text, pg_wal_lsn_diff(replay_lsn, '0/0')::bigint "
            "FROM pg_stat_replication RIGHT JOIN (SELECT 1) AS one ON true"
        ).all()

    def replica_lag(
        self, conn: sa.Connection, where: str, max_lag: float
    ) -> tuple[str | None, float | None]:
        """On a streaming replica: 0 when it has replayed all it received, else the age
        of the last transaction it replayed (``replay_lag`` on the primary lags behind)."""
        lag = conn.exec_driver_sql(
            "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL "
            "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
            "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 'Infinity') END"
        ).scalar()
        if lag is None:
            raise BadInput(f"--replica {where} is not a streaming replica: name a standby")
        lag = float(lag)
        if lag > max_lag:
            return f"replica {where} is {lag:.1f}s behind", lag
        return None, lag

    def check_load_variables(self, names: list[str]) -> None:
        for name in names:
            if name.lower() != "threads_running":
                raise BadInput(
                    f"load variable {name!r} is not known on PostgreSQL: "
                    "use Threads_running (active backends in pg_stat_activity)"
                )

    def load_status(self, conn: sa.Connection, names: list[str]) -> dict[str, float]:
        active = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).scalar()
        return {"threads_running": float(active)}

    # ------------------------------------------------------------------ schema changes

    add_column_plan = "catalog-only ALTER TABLE under lock_timeout"
    create_index_plan = "CREATE INDEX CONCURRENTLY under lock_timeout"

    def add_column(self, change: SchemaChange, table: str, column: str, type_sql: str) -> str:
        # Adding a nullable column without default only touches the catalog, but
        # it needs a brief ACCESS EXCLUSIVE lock: never queue behind a long
        # transaction (and block everyone behind us) for longer than lock_timeout.
        conn = change.conn
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{change.lock_ms}ms'")
        change.guard_lock(
            lambda: conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN {column} {type_sql}'),
            table,
        )
        return "catalog-only ALTER TABLE"

    def drop_column(self, change: SchemaChange, table: str, column: str) -> None:
        change.conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{change.lock_ms}ms'")
        change.conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP COLUMN {column}')

    def create_index(
        self, change: SchemaChange, table: str, index: str, column: str, *, rebuild_invalid: bool
    ) -> str:
        conn = change.conn
        with change.op.get_context().autocommit_block():
            conn.exec_driver_sql(f"SET lock_timeout = '{change.lock_ms}ms'")
            try:
                if rebuild_invalid:
                    # A failed CREATE INDEX CONCURRENTLY leaves an INVALID index that
                    # IF NOT EXISTS would silently keep: drop it and build again.
                    change.guard_lock(
                        lambda: conn.exec_driver_sql(
                            f'DROP INDEX CONCURRENTLY IF EXISTS "{index}"'
                        ),
                        table,
                    )
                    change.say(f"dropped INVALID index {index} left by an earlier failed build")
                change.guard_lock(
                    lambda: conn.exec_driver_sql(
                        f'CREATE INDEX CONCURRENTLY "{index}" ON "{table}" ({column})'
                    ),
                    table,
                    leftover=index,
                )
            finally:
                conn.exec_driver_sql("RESET lock_timeout")
        return "CREATE INDEX CONCURRENTLY" + (
            ", after dropping an INVALID leftover" if rebuild_invalid else ""
        )

    def drop_index(self, change: SchemaChange, table: str, index: str) -> None:
        conn = change.conn
        with change.op.get_context().autocommit_block():
            conn.exec_driver_sql(f"SET lock_timeout = '{change.lock_ms}ms'")
            try:
                change.guard_lock(
                    lambda: conn.exec_driver_sql(f'DROP INDEX CONCURRENTLY IF EXISTS "{index}"'),
                    table,
                )
            finally:
                conn.exec_driver_sql("RESET lock_timeout")

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
            "Guarded: checks the column's type, adds it only when missing, and records\n"
            "the addition in the ledger so that a downgrade drops only what it added."
        )
        change.op.execute(f"SET lock_timeout = '{change.lock_ms}ms'")
        events = tables[0]
        for table in tables:
            if table == events:
                missing = (
                    f"RAISE EXCEPTION 'table {events} not found: is this a Nova cell database?';"
                )
            else:
                missing = "RETURN;  -- no shadow table: nothing to do"
            change.op.execute(f"""DO $$
BEGIN
    IF to_regclass('{table}') IS NULL THEN
        {missing}
    END IF;
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = 'host'
          AND (data_type NOT IN ('character varying', 'text')
               OR COALESCE(character_maximum_length, {length}) < {length}
               OR is_nullable = 'NO')
    ) THEN
        RAISE EXCEPTION '{table}.host exists with an incompatible type: the toolkit needs {type_sql} NULL as Nova defines it';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = 'host'
    ) THEN
        ALTER TABLE {table} ADD COLUMN host {type_sql};
        INSERT INTO "{state_schema}".{ledger} (revision, kind, table_name, object_name, detail)
        VALUES ('{revision}', 'column', '{table}', 'host', 'offline SQL');
    END IF;
END $$""")

    def offline_drop_host_column(
        self, change: SchemaChange, tables: tuple[str, ...], ledger: str, state_schema: str
    ) -> None:
        change.comment("Drops host only where the ledger records that the toolkit added it.")
        for table in tables:
            change.op.execute(
                f"""DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM "{state_schema}".{ledger} WHERE kind = 'column' AND table_name = '{table}') THEN
        ALTER TABLE {table} DROP COLUMN host;
        DELETE FROM "{state_schema}".{ledger} WHERE kind = 'column' AND table_name = '{table}';
    END IF;
END $$"""
            )

    def offline_create_index(
        self, change: SchemaChange, table: str, index: str, column: str
    ) -> None:
        change.comment(
            f"Skip the CREATE INDEX below if \\d {table} already shows an index led by host.\n"
            "CREATE INDEX CONCURRENTLY cannot run in a transaction block; a failed build leaves an\n"
            "INVALID index that IF NOT EXISTS would keep, so the guard stops on one:"
        )
        change.op.execute(
            f"""DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = '{index}' AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'INVALID index {index} left by a failed build: run DROP INDEX CONCURRENTLY {index}; then run this script again';
    END IF;
END $$"""
        )
        with change.op.get_context().autocommit_block():
            change.op.execute(f"SET lock_timeout = '{change.lock_ms}ms'")
            change.op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {table} ({column})"
            )
            change.op.execute("RESET lock_timeout")

    def offline_drop_index(self, change: SchemaChange, table: str, index: str) -> None:
        with change.op.get_context().autocommit_block():
            change.op.execute(f"SET lock_timeout = '{change.lock_ms}ms'")
            change.op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")
            change.op.execute("RESET lock_timeout")

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
        namespace, key = advisory
        audit_check = ""
        if unreverted is not None:
            audit_check = f"""
    IF to_regclass('"{schema}".audit') IS NULL OR to_regclass('"{schema}".runs') IS NULL THEN
        RETURN;
    END IF;
    SELECT string_agg(format('run %s (%s hosts)', run_id, hosts), ', ' ORDER BY run_id)
      INTO found
      FROM (SELECT a.run_id, count(*) AS hosts {unreverted.replace(f"{schema}.", f'"{schema}".')}
            GROUP BY a.run_id) AS runs;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'refused to drop the backfill state: % wrote hosts that are not reverted: revert each run first, or render this script with --discard-audit', found;
    END IF;"""
        change.op.execute(
            f"""DO $$
DECLARE
    found text;
BEGIN
    -- The runner lock, held by this session until it ends: no backfill starts meanwhile.
    IF NOT pg_try_advisory_lock({namespace}, {key}) THEN
        RAISE EXCEPTION 'refused to drop the backfill state: a backfill or revert is running on this database; wait for it to finish';
    END IF;{audit_check}
END $$"""
        )
