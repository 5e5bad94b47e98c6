"""Alembic environment for actionhost-backfill (close to Alembic's stock env.py).

Differences from the stock template, each for a Nova reason:

* the version table is ``actionhost_version`` in the toolkit's *state schema*,
  never Nova's ``alembic_version`` and never inside the cell schema, because
  Nova's ``archive_deleted_rows`` fails on foreign tables there;
* ``include_object`` keeps autogenerate away from every Nova table;
* the state schema is created (or, for SQLite, attached) before Alembic looks
  for its version table.
"""

from __future__ import annotations

from alembic import context
from alembic.util import CommandError

from actionhost_backfill import db
from actionhost_backfill.errors import ActionHostError
from actionhost_backfill.schema.settings import settings_from_config
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
    context.configure(
        version_table=VERSION_TABLE,
        version_table_schema=settings.location.schema,
        include_schemas=True,
        include_object=include_object,
        include_name=include_name,
        transaction_per_migration=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL for review (``--sql``); no connection, so no inspection."""
    _configure(
        url=settings.url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        location = settings.location
        if location.backend == "postgresql":
            context.execute(f'CREATE SCHEMA IF NOT EXISTS "{location.schema}"')
        elif location.backend == "mysql":
            context.execute(
                f"CREATE DATABASE IF NOT EXISTS `{location.schema}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
        else:
            context.execute(f"ATTACH DATABASE '{location.sqlite_path}' AS \"{location.schema}\"")
        context.run_migrations()


def _run_with(connection) -> None:
    if ensure_state_schema(connection, settings.location):
        settings.report.append(f"created state schema: {settings.location.describe()}")
    connection.commit()
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


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
