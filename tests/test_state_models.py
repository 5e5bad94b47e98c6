"""The state tables the code uses are the ones the revisions create, on every backend.

They are declared twice on purpose (a revision must not change when the models
do), so this compares them the way Nova's models/migrations sync test does:
upgrade a cell, then ask Alembic's ``compare_metadata`` what differs.
"""

from __future__ import annotations

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
