"""Nova's tables are declared once (``nova/models.py``); every other shape derives from it."""

from __future__ import annotations

import sqlalchemy as sa

from actionhost_backfill.nova import models
from actionhost_backfill.nova.tables import EVIDENCE_BASES, READ_COLUMNS, columns_of, nova
from actionhost_backfill.sim.columns import COLUMNS, WRITTEN_TABLES

DECLARED = models.build_metadata()
NOVA_TABLES = {name for name in DECLARED.tables if not name.startswith("shadow_")} - {
    "alembic_version"
}


def test_the_reading_projection_takes_nova_s_types():
    assert set(READ_COLUMNS) == set(EVIDENCE_BASES) <= NOVA_TABLES
    for base in EVIDENCE_BASES:
        for name in (base, f"shadow_{base}"):
            table = nova(name)
            assert table.name == name
            assert tuple(table.c.keys()) == READ_COLUMNS[base]
            for column in table.columns:
                declared = DECLARED.tables[base].c[column.name]
                assert column.primary_key == declared.primary_key, (name, column.name)
                if isinstance(declared.type, sa.Enum):
                    assert isinstance(column.type, sa.String) and not isinstance(
                        column.type, sa.Enum
                    ), "an enum reads as a string"
                else:
                    assert repr(column.type) == repr(declared.type), (name, column.name)


def test_temporary_copies_take_nova_s_types():
    events = DECLARED.tables["instance_actions_events"]
    copied = columns_of("instance_actions_events", "id", "host", "start_time")
    assert [c.name for c in copied] == ["id", "host", "start_time"]
    assert [repr(c.type) for c in copied] == [repr(events.c[c.name].type) for c in copied]
    assert not any(c.primary_key or c.foreign_keys for c in copied)


def test_the_simulator_writes_nova_s_columns():
    assert set(WRITTEN_TABLES) == NOVA_TABLES
    for base, names in COLUMNS.items():
        missing = set(names) - set(DECLARED.tables[base].c.keys())
        assert not missing, f"{base}: {sorted(missing)} not declared in nova/models.py"
