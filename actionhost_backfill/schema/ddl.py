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
import re

import sqlalchemy as sa
from alembic import context, op

from actionhost_backfill.dialects import Dialect, SchemaChange
from actionhost_backfill.errors import ActionHostError, IncompatibleSchema
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


def _change(settings: SchemaSettings, conn: sa.Connection | None = None) -> SchemaChange:
    """What the dialect needs to make a change (offline: ``conn`` is None)."""
    return SchemaChange(
        op=op,
        lock_timeout=settings.lock_timeout,
        say=lambda line: _say(settings, line),
        comment=_comment,
        conn=conn,
    )


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
        how = settings.dialect.add_column(_change(settings, conn), column.table, "host", _HOST_TYPE)
        _record(conn, settings, revision, "column", column.table, "host", how)
        _say(settings, f"added column {column.table}.host {_HOST_TYPE} NULL ({how})")


def _offline_ensure_column(settings: SchemaSettings, revision: str) -> None:
    settings.dialect.offline_add_host_column(
        _change(settings),
        (EVENTS, SHADOW_EVENTS),
        _HOST_TYPE,
        HOST_LENGTH,
        revision,
        LEDGER,
        settings.location.schema,
    )


def drop_host_column_if_added() -> None:
    """Drop ``host`` only from tables where the ledger says the toolkit added it."""
    settings = current_settings()
    schema = settings.location.schema
    if context.is_offline_mode():
        _offline_ensure_ledger(settings)
        settings.dialect.offline_drop_host_column(
            _change(settings), (EVENTS, SHADOW_EVENTS), LEDGER, schema
        )
        return
    conn = op.get_bind()
    added = {table for table, _ in _recorded(conn, settings, "column")}
    for table in (EVENTS, SHADOW_EVENTS):
        present = table in catalog.list_tables(conn) and catalog.host_column(conn, table).present
        if table in added and present:
            settings.dialect.drop_column(_change(settings, conn), table, "host")
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
    how = settings.dialect.create_index(
        _change(settings, conn), EVENTS, HOST_INDEX, "host", rebuild_invalid=ours is not None
    )
    _record(conn, settings, revision, "index", EVENTS, HOST_INDEX, how)
    _say(settings, f"created index {HOST_INDEX} on {EVENTS}(host) ({how})")


def _offline_ensure_index(settings: SchemaSettings) -> None:
    settings.dialect.offline_create_index(_change(settings), EVENTS, HOST_INDEX, "host")


def drop_host_index_if_ours() -> None:
    """Drop the toolkit's index (its distinctive name proves it is ours)."""
    settings = current_settings()
    if context.is_offline_mode():
        settings.dialect.offline_drop_index(_change(settings), EVENTS, HOST_INDEX)
        _offline_ensure_ledger(settings)
        op.execute(_ledger(settings).delete().where(sa.column("kind") == "index"))
        return
    conn = op.get_bind()
    ours = [ix for ix in catalog.host_indexes(conn) if ix.ours]
    if not ours:
        _say(settings, f"index {HOST_INDEX} not present: nothing to drop")
    else:
        settings.dialect.drop_index(_change(settings, conn), EVENTS, HOST_INDEX)
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
    else:
        settings = current_settings()
        settings.dialect.offline_create_index_if_missing(
            _change(settings), name, schema, table, column
        )


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
    dialect = settings.dialect
    unreverted = (
        f"FROM {schema}.audit a JOIN {schema}.runs r ON r.id = a.run_id WHERE {_UNREVERTED}"
    )
    live = (
        f"FROM {schema}.runner_lease WHERE name = 'runner' AND token IS NOT NULL AND expires_at >= "
        + dialect.utc_now_sql
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
    dialect.offline_state_guard(
        _change(settings),
        schema,
        live=live,
        unreverted=unreverted if check_audit else None,
        advisory=advisory_key(schema),
        create_state=lambda: create_backfill_state(tables),
    )


# --------------------------------------------------------------------------- version table

_VERSION_CREATE = re.compile(rf"^CREATE TABLE (\S*\b{VERSION_TABLE}) \(")
_VERSION_INSERT = re.compile(
    rf"^INSERT INTO (\S*\b{VERSION_TABLE}) \(version_num\) VALUES \('([^']*)'\)"
    r"(?: RETURNING [^;]*)?;"
)


def guard_version_table(statement: str, dialect: Dialect) -> str:
    """Alembic's own offline statements for the version table, made safe to run twice.

    ``CREATE TABLE`` gains ``IF NOT EXISTS``; the first revision's ``INSERT`` runs
    only while the table is empty (a second run finds the head there already, and
    each later ``UPDATE ... WHERE version_num = <previous>`` then matches nothing).
    """
    statement = _VERSION_CREATE.sub(r"CREATE TABLE IF NOT EXISTS \1 (", statement)
    dual = dialect.select_constant_from
    return _VERSION_INSERT.sub(
        lambda m: (
            f"INSERT INTO {m[1]} (version_num) SELECT '{m[2]}'{dual} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {m[1]});"
        ),
        statement,
    )
