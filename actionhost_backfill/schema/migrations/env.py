"""Alembic environment for actionhost-backfill (close to Alembic's stock env.py).

Differences from the stock template, each for a Nova reason:

* the version table is ``actionhost_version`` in the toolkit's *state schema*,
  never Nova's ``alembic_version`` and never inside the cell schema, because
  Nova's ``archive_deleted_rows`` fails on foreign tables there;
* ``include_object`` keeps autogenerate away from every Nova table;
* the state schema is created (or, for SQLite, attached) before Alembic looks
  for its version table;
* ``schema upgrade`` runs again the revisions that were already applied
  (``settings.reensure``): they are "ensure" steps, and the cell database may
  no longer be what the version table says (restored from a backup, or
  re-created, while the state schema outlived it).
"""

from __future__ import annotations

import contextlib
import sys

from alembic import context
from alembic.operations import Operations
from alembic.runtime.migration import RevisionStep
from alembic.util import CommandError

from actionhost_backfill import db
from actionhost_backfill.dialects import Dialect
from actionhost_backfill.errors import ActionHostError
from actionhost_backfill.schema.ddl import guard_version_table
from actionhost_backfill.schema.settings import settings_from_config
from actionhost_backfill.state.guard import STATE_REVISIONS, state_drop_guard
from actionhost_backfill.state.location import VERSION_TABLE, ensure_state_schema

config = context.config

try:
    settings = settings_from_config(config, context.get_x_argument(as_dictionary=True))
except ActionHostError as exc:  # stock `alembic` prints CommandError as one line
    raise CommandError(str(exc)) from None


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Autogenerate sees only the toolkit's own tables."""
    if type_ == "table":
        return obj.schema == settings.location.schema
    return True


def include_name(name, type_, parent_names) -> bool:
    if type_ == "schema":
        return name == settings.location.schema
    return True


def _configure(**kwargs) -> None:
    kwargs.setdefault("transaction_per_migration", True)
    context.configure(
        version_table=VERSION_TABLE,
        version_table_schema=settings.location.schema,
        include_schemas=True,
        include_object=include_object,
        include_name=include_name,
        **kwargs,
    )


class _GuardedOutput:
    """Alembic writes one statement per call; its version-table statements are made
    safe to run twice on the way (``ddl.guard_version_table``)."""

    def __init__(self, target, dialect: Dialect):
        self.target = target
        self.dialect = dialect

    def write(self, text: str) -> None:
        self.target.write(guard_version_table(text, self.dialect))

    def flush(self) -> None:
        self.target.flush()


def run_migrations_offline() -> None:
    """Emit SQL for review (``--sql``); no connection, so no inspection."""
    _configure(
        url=settings.url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        output_buffer=_GuardedOutput(config.output_buffer or sys.stdout, settings.dialect),
    )
    with context.begin_transaction():
        location = settings.location
        context.execute(location.dialect.create_state_schema_sql(location))
        context.run_migrations()


def _run_with(connection) -> None:
    if ensure_state_schema(connection, settings.location):
        settings.report.append(f"created state schema: {settings.location.describe()}")
    connection.commit()
    _configure(connection=connection)
    before = context.get_context().get_current_heads()
    guard = (
        state_drop_guard(
            connection,
            settings.url,
            settings.location,
            discard_audit=settings.discard_audit,
            report=settings.report,
        )
        if _drops_state(before)
        else contextlib.nullcontext()
    )
    with guard, context.begin_transaction():
        context.run_migrations()
    if settings.reensure:
        _reensure(connection, before, context.get_context().get_current_heads())


def _drops_state(heads: tuple[str, ...]) -> bool:
    """Whether this invocation undoes a revision that holds the backfill state.

    Asked of the whole path up front, before its first step drops anything.
    Only ``upgrade``, ``downgrade`` and ``stamp`` name a destination; ``current``,
    ``check`` and autogenerate are never asked for their steps (their callbacks
    print or compare).
    """
    migration = context.get_context()
    if migration.opts.get("destination_rev") is None or migration._migrations_fn is None:
        return False
    steps = migration._migrations_fn(heads, migration)
    return any(
        isinstance(step, RevisionStep)
        and not step.is_upgrade
        and step.revision.revision in STATE_REVISIONS
        for step in steps
    )


def _reensure(connection, before: tuple[str, ...], after: tuple[str, ...]) -> None:
    """Run again, oldest first, each revision up to the target applied before this upgrade.

    Only revisions still applied after it: ``-x reensure=true`` on a stock
    ``alembic downgrade`` must not rebuild what the downgrade removed.  Each
    runs in its own transaction (PostgreSQL's ``autocommit_block`` for
    ``CREATE INDEX CONCURRENTLY`` needs one), outside Alembic's migration loop,
    so the version table is left as it is.
    """
    if not before or not after:
        return
    script = context.script

    def ancestry(head: str) -> set[str]:
        return {s.revision for s in script.iterate_revisions(head, "base")}

    applied = ancestry(before[0]) & ancestry(after[0])
    for step in reversed(list(script.iterate_revisions(settings.reensure, "base"))):
        if step.revision not in applied:
            continue
        settings.report.append(f"re-ensure {step.revision} (applied before this upgrade):")
        connection.commit()
        _configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction(), Operations.context(context.get_context()):
            step.module.upgrade()
        connection.commit()


def run_migrations_online() -> None:
    """Run against a live database, reusing the caller's connection if given."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    engine = db.create_engine(settings.url, settings.location, attach="create")
    try:
        with db.connect(engine) as connection:
            _run_with(connection)
    except ActionHostError as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
