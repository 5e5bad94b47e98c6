"""The state tables the code uses are the ones the revisions create, on every backend.

They are declared twice on purpose (``state/tables.py`` at run time, frozen in
the revision scripts: a revision must not change when the models do), so this
compares them the way Nova's models/migrations sync test does:
upgrade a cell, then ask Alembic's ``compare_metadata`` what differs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from actionhost_backfill.db import parse_url
from actionhost_backfill.schema import revisions
from actionhost_backfill.state.location import VERSION_TABLE
from actionhost_backfill.state.tables import StateTables


def test_state_models_match_the_upgraded_schema(cell):
    revisions.upgrade(parse_url(cell.url))
    schema = cell.location.schema
    models = StateTables(schema)

    def include_name(name, type_, parent_names) -> bool:
        if type_ == "schema":
            return name == schema
        return type_ != "table" or name != VERSION_TABLE

    with cell.engine().connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"include_schemas": True, "include_name": include_name, "compare_type": True},
        )
        differences = compare_metadata(context, models.metadata)
    assert differences == []
    assert {t.name for t in models.metadata.tables.values()} == cell.state_table_names() - {
        VERSION_TABLE
    }


def _shape(table: sa.Table) -> dict:
    columns = {
        c.name: (repr(c.type), c.nullable, c.primary_key, c.server_default is not None)
        for c in table.columns
    }
    indexes = {(ix.name, tuple(c.name for c in ix.columns)) for ix in table.indexes}
    return {"columns": columns, "indexes": indexes}


def test_state_models_match_the_revisions_frozen_declarations():
    """The same comparison without a database: each revision's own column lists
    (``ledger_columns()`` in 0001, ``state_tables()`` in 0003) against the models."""
    script = revisions.script_directory()
    declared = {"schema_changes": script.get_revision("0001_host_column").module.ledger_columns()}
    declared.update(script.get_revision("0003_backfill_state").module.state_tables())
    frozen = sa.MetaData()
    for name, items in declared.items():
        sa.Table(name, frozen, *items)
    models = StateTables("state")
    assert {t.name: _shape(t) for t in models.metadata.tables.values()} == {
        t.name: _shape(t) for t in frozen.tables.values()
    }
