"""The schema changes the revisions make, idempotent, online, per dialect.

Revision scripts stay short by calling these.  Each function works online
(inspect, then change only what is missing) and offline (``--sql``: every
statement guarded, so a script applied twice succeeds twice and leaves the same
schema: PostgreSQL ``DO`` blocks and ``IF [NOT] EXISTS``; MySQL and MariaDB a
statement prepared from ``information_schema``, since MySQL 8 has no
``ADD COLUMN IF NOT EXISTS``; SQLite ``IF [NOT] EXISTS`` where it has them, and
a probe that stops the script where it has not).  What the toolkit creates is written to its ledger
(``<state>.schema_changes``) so a downgrade removes only that.

No table's columns are declared here: each revision script carries its own
frozen declaration and passes it in, so editing this module never changes what
an applied revision created (``state/tables.py`` is the runtime declaration).
"""

from __future__ import annotations

import logging
import math
import re

import sqlalchemy as sa
from alembic import context, op

from actionhost_backfill.errors import ActionHostError, DatabaseUnavailable, IncompatibleSchema
from actionhost_backfill.nova import catalog
from actionhost_backfill.nova.catalog import EVENTS, HOST_INDEX, HOST_LENGTH, SHADOW_EVENTS
from actionhost_backfill.schema.settings import SchemaSettings, current_settings
from actionhost_backfill.state.lease import advisory_key
from actionhost_backfill.state.location import VERSION_TABLE

log = logging.getLogger(__name__)

LEDGER = "schema_changes"
#: The revision that creates the ledger and declares its columns.
LEDGER_REVISION = "0001_host_column"
_HOST_TYPE = f"VARCHAR({HOST_LENGTH})"
# MySQL/MariaDB errors meaning "this ALTER algorithm is not possible here".
_ALGORITHM_UNSUPPORTED = (1064, 1800, 1845, 1846, 4092)


# --------------------------------------------------------------------------- ledger


def _missing(settings: SchemaSettings, names: tuple[str, ...]) -> list[str]:
    """The toolkit's state tables not there yet (all of them offline: no inspection)."""
    if context.is_offline_mode():
        return list(names)
    inspector = sa.inspect(op.get_bind())
    schema = settings.location.schema
    return [name for name in names if not inspector.has_table(name, schema=schema)]


def create_ledger(columns: list[sa.Column]) -> None:
    """The ledger of what the toolkit created (read by downgrades).

    ``columns``: the ledger as revision 0001 declares it (``ledger_columns()`` there).
    """
    settings = current_settings()
    if not _missing(settings, (LEDGER,)):
        return
    op.create_table(
        LEDGER,
        *columns,
        schema=settings.location.schema,
        mysql_engine="InnoDB",
        if_not_exists=True,
    )


def drop_ledger() -> None:
    op.drop_table(LEDGER, schema=current_settings().location.schema, if_exists=True)


def _offline_ensure_ledger(settings: SchemaSettings) -> None:
    """Offline downgrades: the statements after this read the ledger; on a second run
    of the script it may be gone already, so make sure it exists (a no-op the first
    time; the last step drops it again)."""
    _comment("The next statements read the ledger: create it if a previous run dropped it.")
    create_ledger(_revision_module(LEDGER_REVISION).ledger_columns())


def _revision_module(revision: str):
    """A revision script's module (a later revision reusing what an earlier one froze)."""
    script = op.get_context().script
    if script is None:
        raise ActionHostError(
            f"revision {revision} is needed here: run the revisions through env.py"
        )
    return script.get_revision(revision).module


def _ledger(settings: SchemaSettings) -> sa.TableClause:
    return sa.table(
        LEDGER,
        sa.column("id"),
        sa.column("revision"),
        sa.column("kind"),
        sa.column("table_name"),
        sa.column("object_name"),
        sa.column("detail"),
        schema=settings.location.schema,
    )


def _record(
    conn: sa.Connection,
    settings: SchemaSettings,
    revision: str,
    kind: str,
    table: str,
    name: str,
    detail: str,
) -> None:
    conn.execute(
        _ledger(settings)
        .insert()
        .values(revision=revision, kind=kind, table_name=table, object_name=name, detail=detail)
    )


def _recorded(conn: sa.Connection, settings: SchemaSettings, kind: str) -> list[tuple[str, str]]:
    ledger = _ledger(settings)
    rows = conn.execute(
        sa.select(ledger.c.table_name, ledger.c.object_name).where(ledger.c.kind == kind)
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _forget(conn: sa.Connection, settings: SchemaSettings, kind: str, table: str) -> None:
    ledger = _ledger(settings)
    conn.execute(ledger.delete().where(ledger.c.kind == kind, ledger.c.table_name == table))


def _say(settings: SchemaSettings, line: str) -> None:
    settings.report.append(line)
    log.info(line)


def _comment(text: str) -> None:
    """A SQL comment in ``--sql`` output."""
    lines = [f"-- {line}" if line else "--" for line in text.splitlines()]
    op.get_context().impl.static_output("\n".join(lines))


# --------------------------------------------------------------------------- column


def ensure_host_column(revision: str) -> None:
    """``host VARCHAR(255) NULL`` on the events table and its shadow copy."""
    settings = current_settings()
    if context.is_offline_mode():
        _offline_ensure_column(settings, revision)
        return
    conn = op.get_bind()
    catalog.require_nova(conn)
    columns = catalog.check_host_columns(conn)
    # Check every table before touching any: an incompatible shadow column must
    # not leave the live table altered (MySQL DDL cannot be rolled back).
    catalog.raise_if_incompatible(conn, columns)
    for column in columns:
        if column.present:
            _say(
                settings,
                f"column {column.table}.host already present ({column.type_text}): nothing to do",
            )
            continue
        how = _add_column(conn, settings, column.table)
        _record(conn, settings, revision, "column", column.table, "host", how)
        _say(settings, f"added column {column.table}.host {_HOST_TYPE} NULL ({how})")


def _add_column(conn: sa.Connection, settings: SchemaSettings, table: str) -> str:
    backend = settings.backend
    if backend == "mysql":
        return _mysql_alter(
            conn, settings, table, f"ADD COLUMN host {_HOST_TYPE} NULL", ("INSTANT", "INPLACE")
        )
    if backend == "postgresql":
        # Adding a nullable column without default only touches the catalog, but
        # it needs a brief ACCESS EXCLUSIVE lock: never queue behind a long
        # transaction (and block everyone behind us) for longer than lock_timeout.
        _pg_lock_timeout(conn, settings, local=True)
        _guard_lock(
            lambda: conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN host {_HOST_TYPE}'),
            settings,
            table,
        )
        return "catalog-only ALTER TABLE"
    conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN host {_HOST_TYPE}')
    return "ALTER TABLE ADD COLUMN"


def _offline_ensure_column(settings: SchemaSettings, revision: str) -> None:
    backend = settings.backend
    schema = settings.location.schema
    if backend == "postgresql":
        _comment(
            "Guarded: checks the column's type, adds it only when missing, and records\n"
            "the addition in the ledger so that a downgrade drops only what it added."
        )
        op.execute(f"SET lock_timeout = '{_ms(settings)}ms'")
        for table in (EVENTS, SHADOW_EVENTS):
            op.execute(_pg_guarded_add_column(table, schema, revision))
        return
    if backend == "mysql":
        _comment(
            "MySQL 8 has no ADD COLUMN IF NOT EXISTS and no IF outside stored programs: each\n"
            "ALTER is prepared from information_schema, so it runs only where host is missing\n"
            "(every Nova since Icehouse has it), and the ledger records what it added.\n"
            "Works on MySQL and MariaDB. Offline mode cannot check an existing column's type."
        )
        op.execute(f"SET SESSION lock_wait_timeout = {math.ceil(settings.lock_timeout)}")
        for table in (EVENTS, SHADOW_EVENTS):
            missing = (
                f"(SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
                f"AND table_name = '{table}') = 1 AND (SELECT COUNT(*) FROM "
                "information_schema.columns WHERE table_schema = DATABASE() "
                f"AND table_name = '{table}' AND column_name = 'host') = 0"
            )
            op.execute(f"SET @actionhost_missing = ({missing})")
            _mysql_prepared(
                "@actionhost_missing",
                f"ALTER TABLE {table} ADD COLUMN host {_HOST_TYPE} NULL, ALGORITHM=INSTANT",
            )
            op.execute(
                f"INSERT INTO {schema}.{LEDGER} (revision, kind, table_name, object_name, detail) "
                f"SELECT '{revision}', 'column', '{table}', 'host', 'offline SQL' FROM DUAL "
                "WHERE @actionhost_missing = 1"
            )
        _comment(
            "If the server rejects ALGORITHM=INSTANT (MySQL before 8.0.12), use ALGORITHM=INPLACE, LOCK=NONE."
        )
        return
    _comment(
        "SQLite has no ADD COLUMN IF NOT EXISTS and no conditional statements: every Nova\n"
        "since Icehouse has host, so this script only checks that it is there (these\n"
        "SELECTs fail with 'no such column: host' where it is missing). Then add it with\n"
        f"ALTER TABLE <table> ADD COLUMN host {_HOST_TYPE}, or use `schema upgrade`."
    )
    op.execute(f"SELECT host FROM {EVENTS} LIMIT 0")
    op.execute(f"SELECT host FROM {SHADOW_EVENTS} LIMIT 0")


def _mysql_prepared(condition: str, statement: str) -> None:
    """Run ``statement`` only when ``condition`` holds (MySQL and MariaDB offline SQL).

    MySQL 8 has no IF [NOT] EXISTS for columns and indexes and no IF outside
    stored programs; a prepared statement chosen by ``IF()`` works on both.
    """
    op.execute(f"SET @actionhost_ddl = IF({condition}, '{statement}', 'DO 0')")
    op.execute("PREPARE actionhost_ddl FROM @actionhost_ddl")
    op.execute("EXECUTE actionhost_ddl")
    op.execute("DEALLOCATE PREPARE actionhost_ddl")


def _pg_guarded_add_column(table: str, schema: str, revision: str) -> str:
    if table == EVENTS:
        missing = f"RAISE EXCEPTION 'table {EVENTS} not found: is this a Nova cell database?';"
    else:
        missing = "RETURN;  -- no shadow table: nothing to do"
    return f"""DO $$
BEGIN
    IF to_regclass('{table}') IS NULL THEN
        {missing}
    END IF;
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = 'host'
          AND (data_type NOT IN ('character varying', 'text')
               OR COALESCE(character_maximum_length, {HOST_LENGTH}) < {HOST_LENGTH}
               OR is_nullable = 'NO')
    ) THEN
        RAISE EXCEPTION '{table}.host exists with an incompatible type: the toolkit needs {_HOST_TYPE} NULL as Nova defines it';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = 'host'
    ) THEN
        ALTER TABLE {table} ADD COLUMN host {_HOST_TYPE};
        INSERT INTO "{schema}".{LEDGER} (revision, kind, table_name, object_name, detail)
        VALUES ('{revision}', 'column', '{table}', 'host', 'offline SQL');
    END IF;
END $$"""


def drop_host_column_if_added() -> None:
    """Drop ``host`` only from tables where the ledger says the toolkit added it."""
    settings = current_settings()
    schema = settings.location.schema
    if context.is_offline_mode():
        _offline_ensure_ledger(settings)
        if settings.backend == "postgresql":
            _comment("Drops host only where the ledger records that the toolkit added it.")
            for table in (EVENTS, SHADOW_EVENTS):
                op.execute(
                    f"""DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM "{schema}".{LEDGER} WHERE kind = 'column' AND table_name = '{table}') THEN
        ALTER TABLE {table} DROP COLUMN host;
        DELETE FROM "{schema}".{LEDGER} WHERE kind = 'column' AND table_name = '{table}';
    END IF;
END $$"""
                )
        else:
            _comment(
                "Nova's host column is never dropped by offline SQL: the toolkit cannot prove\n"
                f"here that it added it. Check {schema}.{LEDGER} (kind 'column'); only a\n"
                "table listed there got its column from the toolkit."
            )
        return
    conn = op.get_bind()
    added = {table for table, _ in _recorded(conn, settings, "column")}
    for table in (EVENTS, SHADOW_EVENTS):
        present = table in catalog.list_tables(conn) and catalog.host_column(conn, table).present
        if table in added and present:
            if settings.backend == "mysql":
                _mysql_alter(conn, settings, table, "DROP COLUMN host", ("INSTANT", "INPLACE"))
            else:
                if settings.backend == "postgresql":
                    _pg_lock_timeout(conn, settings, local=True)
                conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP COLUMN host')
            _forget(conn, settings, "column", table)
            _say(settings, f"dropped column {table}.host (the toolkit had added it)")
        elif present:
            _say(settings, f"kept column {table}.host: Nova's, not added by the toolkit")


# --------------------------------------------------------------------------- index


def ensure_host_index(revision: str) -> None:
    """An index on ``instance_actions_events(host)``, unless one led by host exists."""
    settings = current_settings()
    if context.is_offline_mode():
        _offline_ensure_index(settings)
        return
    conn = op.get_bind()
    catalog.require_nova(conn)
    column = catalog.host_column(conn, EVENTS)
    if not column.present:
        raise IncompatibleSchema(
            f"{EVENTS}.host is missing: apply revision 0001 first (actionhost-backfill schema upgrade)"
        )
    indexes = catalog.host_indexes(conn)
    ours = next((ix for ix in indexes if ix.ours), None)
    others = [ix for ix in indexes if not ix.ours and ix.valid]
    for ix in indexes:
        if not ix.ours and not ix.valid:
            _say(
                settings,
                f"ignored INVALID index {ix.name} on {EVENTS}(host): not the toolkit's; drop it yourself",
            )
    if ours is not None and ours.valid:
        _say(settings, f"index {HOST_INDEX} already present: nothing to do")
        return
    if others and ours is None:
        names = ", ".join(ix.name for ix in others)
        _say(settings, f"skipped index {HOST_INDEX}: {names} already indexes {EVENTS}(host)")
        return
    how = _create_index(conn, settings, rebuild_invalid=ours is not None)
    _record(conn, settings, revision, "index", EVENTS, HOST_INDEX, how)
    _say(settings, f"created index {HOST_INDEX} on {EVENTS}(host) ({how})")


def _create_index(conn: sa.Connection, settings: SchemaSettings, *, rebuild_invalid: bool) -> str:
    backend = settings.backend
    if backend == "postgresql":
        ctx = op.get_context()
        with ctx.autocommit_block():
            _pg_lock_timeout(conn, settings, local=False)
            try:
                if rebuild_invalid:
                    # A failed CREATE INDEX CONCURRENTLY leaves an INVALID index that
                    # IF NOT EXISTS would silently keep: drop it and build again.
                    _guard_lock(
                        lambda: conn.exec_driver_sql(
                            f'DROP INDEX CONCURRENTLY IF EXISTS "{HOST_INDEX}"'
                        ),
                        settings,
                        EVENTS,
                    )
                    _say(
                        settings,
                        f"dropped INVALID index {HOST_INDEX} left by an earlier failed build",
                    )
                _guard_lock(
                    lambda: conn.exec_driver_sql(
                        f'CREATE INDEX CONCURRENTLY "{HOST_INDEX}" ON "{EVENTS}" (host)'
                    ),
                    settings,
                    EVENTS,
                    leftover=True,
                )
            finally:
                conn.exec_driver_sql("RESET lock_timeout")
        return "CREATE INDEX CONCURRENTLY" + (
            ", after dropping an INVALID leftover" if rebuild_invalid else ""
        )
    if backend == "mysql":
        return _mysql_alter(
            conn, settings, EVENTS, f"ADD INDEX `{HOST_INDEX}` (host)", ("INPLACE",)
        )
    conn.exec_driver_sql(f'CREATE INDEX IF NOT EXISTS "{HOST_INDEX}" ON "{EVENTS}" (host)')
    return "CREATE INDEX"


def _offline_ensure_index(settings: SchemaSettings) -> None:
    backend = settings.backend
    if backend == "postgresql":
        _comment(
            f"Skip the CREATE INDEX below if \\d {EVENTS} already shows an index led by host.\n"
            "CREATE INDEX CONCURRENTLY cannot run in a transaction block; a failed build leaves an\n"
            "INVALID index that IF NOT EXISTS would keep, so the guard stops on one:"
        )
        op.execute(
            f"""DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = '{HOST_INDEX}' AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'INVALID index {HOST_INDEX} left by a failed build: run DROP INDEX CONCURRENTLY {HOST_INDEX}; then run this script again';
    END IF;
END $$"""
        )
        with op.get_context().autocommit_block():
            op.execute(f"SET lock_timeout = '{_ms(settings)}ms'")
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {HOST_INDEX} ON {EVENTS} (host)")
            op.execute("RESET lock_timeout")
        return
    if backend == "mysql":
        _comment(
            f"Runs only where no index of {EVENTS} starts with host (Nova may add one some day;\n"
            "MySQL 8 has no ADD INDEX IF NOT EXISTS): prepared from information_schema."
        )
        op.execute(f"SET SESSION lock_wait_timeout = {math.ceil(settings.lock_timeout)}")
        _mysql_prepared(
            "(SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "
            f"AND table_name = '{EVENTS}' AND column_name = 'host' AND seq_in_index = 1) = 0",
            f"ALTER TABLE {EVENTS} ADD INDEX {HOST_INDEX} (host), ALGORITHM=INPLACE, LOCK=NONE",
        )
        return
    op.execute(f"CREATE INDEX IF NOT EXISTS {HOST_INDEX} ON {EVENTS} (host)")


def drop_host_index_if_ours() -> None:
    """Drop the toolkit's index (its distinctive name proves it is ours)."""
    settings = current_settings()
    backend = settings.backend
    if context.is_offline_mode():
        if backend == "postgresql":
            with op.get_context().autocommit_block():
                op.execute(f"SET lock_timeout = '{_ms(settings)}ms'")
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {HOST_INDEX}")
                op.execute("RESET lock_timeout")
        elif backend == "mysql":
            op.execute(f"SET SESSION lock_wait_timeout = {math.ceil(settings.lock_timeout)}")
            _mysql_prepared(
                "(SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "
                f"AND table_name = '{EVENTS}' AND index_name = '{HOST_INDEX}') > 0",
                f"ALTER TABLE {EVENTS} DROP INDEX {HOST_INDEX}, ALGORITHM=INPLACE, LOCK=NONE",
            )
        else:
            op.execute(f"DROP INDEX IF EXISTS {HOST_INDEX}")
        _offline_ensure_ledger(settings)
        op.execute(_ledger(settings).delete().where(sa.column("kind") == "index"))
        return
    conn = op.get_bind()
    ours = [ix for ix in catalog.host_indexes(conn) if ix.ours]
    if not ours:
        _say(settings, f"index {HOST_INDEX} not present: nothing to drop")
    elif backend == "postgresql":
        with op.get_context().autocommit_block():
            _pg_lock_timeout(conn, settings, local=False)
            try:
                _guard_lock(
                    lambda: conn.exec_driver_sql(
                        f'DROP INDEX CONCURRENTLY IF EXISTS "{HOST_INDEX}"'
                    ),
                    settings,
                    EVENTS,
                )
            finally:
                conn.exec_driver_sql("RESET lock_timeout")
        _say(settings, f"dropped index {HOST_INDEX}")
    elif backend == "mysql":
        _mysql_alter(conn, settings, EVENTS, f"DROP INDEX `{HOST_INDEX}`", ("INPLACE",))
        _say(settings, f"dropped index {HOST_INDEX}")
    else:
        conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{HOST_INDEX}"')
        _say(settings, f"dropped index {HOST_INDEX}")
    _forget(conn, settings, "index", EVENTS)


# --------------------------------------------------------------------------- backfill state

#: The tables revision 0003_backfill_state creates (``catalog.BACKFILL_TABLES`` are
#: the Nova tables a backfill reads).
BACKFILL_STATE_TABLES = ("audit", "run_counts", "checkpoints", "runs", "runner_lease")


def create_backfill_state(tables: dict[str, list]) -> None:
    """Runs, checkpoints, audit, per-rule counts and the runner lease (those missing).

    ``tables``: each table's columns and indexes as revision 0003 declares them,
    in creation order.
    """
    settings = current_settings()
    schema = settings.location.schema
    missing = _missing(settings, BACKFILL_STATE_TABLES)
    for table, items in tables.items():
        if table not in missing:
            continue
        indexes = [item for item in items if isinstance(item, sa.Index)]
        columns = [item for item in items if not isinstance(item, sa.Index)]
        op.create_table(table, *columns, schema=schema, mysql_engine="InnoDB", if_not_exists=True)
        for index in indexes:
            _create_index_if_missing(index.name, schema, table, *index.expressions)
    if not missing:
        _say(settings, "state tables already present: nothing to do")
    elif len(missing) < len(BACKFILL_STATE_TABLES):
        _say(settings, f"created the missing state tables: {', '.join(missing)}")
    else:
        _say(settings, f"created the state tables: {', '.join(BACKFILL_STATE_TABLES)}")


def _create_index_if_missing(name: str, schema: str, table: str, column: str) -> None:
    """Online the table was just created; offline the index may exist (a second run)."""
    if not context.is_offline_mode():
        op.create_index(name, table, [column], schema=schema)
    elif current_settings().backend == "mysql":
        _mysql_prepared(
            f"(SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = '{schema}' "
            f"AND table_name = '{table}' AND index_name = '{name}') = 0",
            f"CREATE INDEX {name} ON {schema}.{table} ({column})",
        )
    else:
        op.create_index(name, table, [column], schema=schema, if_not_exists=True)


def drop_backfill_state(tables: dict[str, list]) -> None:
    """Drop the runs and their audit; the caller made sure that may be done.

    ``tables``: as for :func:`create_backfill_state` (offline SQLite creates them
    empty first, so that a second run of the script finds them).

    Online, ``migrations/env.py`` holds the runner lock and checks first
    (``state/guard.py``).  Offline, the script checks for itself before it drops.
    """
    settings = current_settings()
    if context.is_offline_mode():
        _offline_state_guard(settings, tables)
    for table in BACKFILL_STATE_TABLES:
        op.drop_table(table, schema=settings.location.schema, if_exists=True)


#: The condition, on the audit aliased ``a`` and the runs aliased ``r``, of a
#: host a backfill wrote that no revert has undone (``state/guard.py``).
_UNREVERTED = "a.outcome = 'filled' AND a.reverted_by IS NULL AND r.state <> 'reverted'"


def _offline_state_guard(settings: SchemaSettings, tables: dict[str, list]) -> None:
    """The downgrade script refuses, before it drops the state, what the CLI refuses."""
    schema = settings.location.schema
    backend = settings.backend
    unreverted = (
        f"FROM {schema}.audit a JOIN {schema}.runs r ON r.id = a.run_id WHERE {_UNREVERTED}"
    )
    live = (
        f"FROM {schema}.runner_lease WHERE name = 'runner' AND token IS NOT NULL AND expires_at >= "
        + ("UTC_TIMESTAMP()" if backend == "mysql" else "datetime('now')")
    )
    check_audit = not settings.discard_audit
    _comment(
        "The audit is the only way `revert` can undo the hosts a backfill wrote: this script\n"
        "stops here, before dropping anything, while a backfill or revert is running"
        + (
            ",\nor while a run has hosts not reverted (revert them first, or render this script\n"
            "with --discard-audit)."
            if check_audit
            else " (rendered with --discard-audit: runs not reverted are not checked)."
        )
    )
    if backend == "postgresql":
        namespace, key = advisory_key(schema)
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
        op.execute(
            f"""DO $$
DECLARE
    found text;
BEGIN
    -- The runner lock, held by this session until it ends: no backfill starts meanwhile.
    IF NOT pg_try_advisory_lock({namespace}, {key}) THEN
        RAISE EXCEPTION 'refused to drop the backfill state: a backfill or revert is running on this database; wait for it to finish';
    END IF;{audit_check if check_audit else ""}
END $$"""
        )
        return
    if backend == "mysql":
        op.execute("SET @actionhost_live = 0, @actionhost_unreverted = 0")
        present = (
            "(SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
            f"'{schema}' AND table_name IN ('audit', 'runs', 'runner_lease')) = 3"
        )
        counts = [("@actionhost_live", live)]
        if check_audit:
            counts.append(("@actionhost_unreverted", unreverted))
        for variable, source in counts:
            _mysql_prepared(
                present, f"SET {variable} = (SELECT COUNT(*) {source})".replace("'", "''")
            )
        # No IF outside stored programs: a statement naming an unknown column stops the
        # client with that name as the message.
        _mysql_prepared(
            "@actionhost_live > 0",
            "SELECT refused_to_drop_the_state_while_a_backfill_or_revert_runs",
        )
        _mysql_prepared(
            "@actionhost_unreverted > 0", "SELECT refused_to_drop_the_audit_of_runs_not_reverted"
        )
        return
    # SQLite: no conditional statements; make sure the tables exist (a second run finds
    # them dropped: they are created empty and dropped again), then let a CHECK
    # constraint stop the script (sqlite3 -bail, or Python's executescript).
    create_backfill_state(tables)
    op.execute(
        "CREATE TEMP TABLE IF NOT EXISTS actionhost_guard ("
        "live_runners INTEGER CONSTRAINT refused_while_a_backfill_or_revert_runs "
        "CHECK (live_runners = 0), "
        "unreverted_runs INTEGER CONSTRAINT refused_runs_not_reverted_use_discard_audit "
        "CHECK (unreverted_runs = 0))"
    )
    audit_count = f"(SELECT COUNT(*) {unreverted})" if check_audit else "0"
    op.execute(f"INSERT INTO temp.actionhost_guard SELECT (SELECT COUNT(*) {live}), {audit_count}")
    op.execute("DROP TABLE temp.actionhost_guard")


# --------------------------------------------------------------------------- version table

_VERSION_CREATE = re.compile(rf"^CREATE TABLE (\S*\b{VERSION_TABLE}) \(")
_VERSION_INSERT = re.compile(
    rf"^INSERT INTO (\S*\b{VERSION_TABLE}) \(version_num\) VALUES \('([^']*)'\)"
    r"(?: RETURNING [^;]*)?;"
)


def guard_version_table(statement: str, backend: str) -> str:
    """Alembic's own offline statements for the version table, made safe to run twice.

    ``CREATE TABLE`` gains ``IF NOT EXISTS``; the first revision's ``INSERT`` runs
    only while the table is empty (a second run finds the head there already, and
    each later ``UPDATE ... WHERE version_num = <previous>`` then matches nothing).
    """
    statement = _VERSION_CREATE.sub(r"CREATE TABLE IF NOT EXISTS \1 (", statement)
    dual = " FROM DUAL" if backend == "mysql" else ""
    return _VERSION_INSERT.sub(
        lambda m: (
            f"INSERT INTO {m[1]} (version_num) SELECT '{m[2]}'{dual} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {m[1]});"
        ),
        statement,
    )


# --------------------------------------------------------------------------- helpers


def _ms(settings: SchemaSettings) -> int:
    return max(1, round(settings.lock_timeout * 1000))


def _pg_lock_timeout(conn: sa.Connection, settings: SchemaSettings, *, local: bool) -> None:
    scope = "LOCAL " if local else ""
    conn.exec_driver_sql(f"SET {scope}lock_timeout = '{_ms(settings)}ms'")


def _guard_lock(statement, settings: SchemaSettings, table: str, *, leftover: bool = False):
    """Run DDL; a lock timeout becomes a plain message saying what to do."""
    try:
        return statement()
    except sa.exc.DBAPIError as exc:
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        errno = (
            orig.args[0] if getattr(orig, "args", None) and isinstance(orig.args[0], int) else None
        )
        if sqlstate == "55P03" or errno == 1205:
            extra = (
                f"; it may have left an INVALID index {HOST_INDEX}, which the next upgrade drops and rebuilds"
                if leftover
                else ""
            )
            raise DatabaseUnavailable(
                f"gave up after {settings.lock_timeout:g}s waiting for a lock on {table} "
                f"(a long transaction holds it){extra}: run the upgrade again at a quieter "
                "moment or pass a larger --lock-timeout"
            ) from None
        raise


def _mysql_alter(
    conn: sa.Connection,
    settings: SchemaSettings,
    table: str,
    clause: str,
    algorithms: tuple[str, ...],
) -> str:
    """ALTER with the cheapest online algorithm the server accepts; never COPY."""
    conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {math.ceil(settings.lock_timeout)}")
    rejected = []
    for algorithm in algorithms:
        lock = "" if algorithm == "INSTANT" else ", LOCK=NONE"
        sql = f"ALTER TABLE `{table}` {clause}, ALGORITHM={algorithm}{lock}"
        try:
            _guard_lock(lambda sql=sql: conn.exec_driver_sql(sql), settings, table)
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
