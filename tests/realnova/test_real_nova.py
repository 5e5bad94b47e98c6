"""Against a schema built by Nova itself, and Nova's own archiver.

Nova's ``archive_deleted_rows`` reflects every table of the cell schema and
fails on one it does not know; its shadow tables must carry every column it
copies.  These tests prove the toolkit's revisions leave Nova able to
archive.  They need a Python with ``nova`` installed (``scripts/test.sh``
builds one in ``.cache/nova-venv``; nova is never a dependency of the
toolkit) named by ``ACTIONHOST_NOVA_PYTHON``.  On PostgreSQL Nova's archiver
fails on a fresh schema whatever else is there (``locked_by`` enum types
differ), so archiving is checked on SQLite and MariaDB only.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.nova.catalog import HOST_INDEX, KNOWN_TABLES
from actionhost_backfill.nova.models import build_metadata
from actionhost_backfill.nova.tables import nova as read_table
from actionhost_backfill.schema import revisions
from tests.harness import Cell, cli

TOOL = Path(__file__).with_name("nova_cell.py")


@pytest.fixture(scope="session")
def nova_python() -> str:
    python = os.environ.get("ACTIONHOST_NOVA_PYTHON")
    if not python or not Path(python).exists():
        message = "ACTIONHOST_NOVA_PYTHON does not name a Python with nova installed (scripts/test.sh builds one)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": CI requires the real-Nova tests")
        pytest.skip(message)
    return python


def nova(python: str, command: str, url: str) -> dict:
    # Nova's URLs: plain postgresql:// picks psycopg 3 under SQLAlchemy 2.1.
    done = subprocess.run(
        [python, str(TOOL), command, url], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        raise AssertionError(f"nova {command} failed: {tail}")
    return json.loads(done.stdout)


@pytest.fixture
def real_cell(blank_db, nova_python) -> Cell:
    nova(nova_python, "sync", blank_db)
    cell = Cell(blank_db)
    yield cell
    cell.dispose()


def _soft_deleted_instance(cell: Cell, n: int) -> str:
    uuid = f"00000000-0000-0000-0000-{n:012d}"
    cell.execute(
        "INSERT INTO instances (uuid, host, project_id, deleted, deleted_at, created_at) "
        "VALUES (:u, 'cmp1', 'p1', 0, NULL, CURRENT_TIMESTAMP)",
        {"u": uuid},
    )
    instance_id = n * 1000  # explicit ids: SQLite reuses freed rowids after archiving
    cell.execute("UPDATE instances SET id = :i WHERE uuid = :u", {"i": instance_id, "u": uuid})
    cell.execute(
        "UPDATE instances SET deleted = id, deleted_at = CURRENT_TIMESTAMP WHERE uuid = :u",
        {"u": uuid},
    )
    cell.execute(
        "INSERT INTO instance_actions (id, action, instance_uuid, request_id, project_id, start_time, deleted) "
        "VALUES (:i, 'create', :u, :r, 'p1', CURRENT_TIMESTAMP, 0)",
        {"i": instance_id, "u": uuid, "r": f"req-{n}"},
    )
    cell.execute(
        "INSERT INTO instance_actions_events (id, event, action_id, start_time, result, host, deleted) "
        "VALUES (:i, 'compute__do_build_and_run_instance', :i, CURRENT_TIMESTAMP, 'Success', 'cmp1', 0)",
        {"i": instance_id},
    )
    cell.execute(
        "INSERT INTO migrations (id, uuid, instance_uuid, source_compute, dest_compute, status, "
        "migration_type, deleted, deleted_at) VALUES (:i, :m, :u, 'cmp0', 'cmp1', 'confirmed', 'resize', :i, CURRENT_TIMESTAMP)",
        {"i": instance_id, "m": uuid.replace("00000000-", "11111111-", 1), "u": uuid},
    )
    return uuid


def test_status_recognises_a_real_nova_cell(real_cell):
    status = revisions.status(parse_url(real_cell.url))
    assert status.is_nova
    assert status.nova_alembic_version == real_cell.nova_version()
    assert all(c["present"] and c["compatible"] for c in status.host_columns)


@pytest.mark.backends("sqlite", "mysql")
def test_nova_can_archive_after_upgrade_and_downgrade(real_cell, nova_python, backend):
    nova_tables = real_cell.table_names()
    result = cli("schema", "upgrade", "--db", real_cell.url)
    assert result.exit_code == 0, result.output
    assert HOST_INDEX in real_cell.index_names()
    assert real_cell.table_names() == nova_tables

    uuid = _soft_deleted_instance(real_cell, 1)
    archived = nova(nova_python, "archive", real_cell.url)
    assert archived["instance_uuids"] == [uuid]
    assert archived["tables"]["instance_actions_events"] == 1
    assert real_cell.scalar("SELECT host FROM shadow_instance_actions_events") == "cmp1"

    assert cli("schema", "downgrade", "base", "--db", real_cell.url).exit_code == 0
    uuid2 = _soft_deleted_instance(real_cell, 2)
    assert nova(nova_python, "archive", real_cell.url)["instance_uuids"] == [uuid2]


@pytest.mark.backends("sqlite", "mysql")
def test_a_foreign_table_in_the_cell_schema_would_break_the_archiver(
    real_cell, nova_python, backend
):
    """The trap the state schema avoids, shown on a real Nova: this test proves the one above can fail."""
    real_cell.execute("CREATE TABLE actionhost_runs (id INTEGER PRIMARY KEY)")
    _soft_deleted_instance(real_cell, 3)
    with pytest.raises(AssertionError, match="KeyError"):
        nova(nova_python, "archive", real_cell.url)


@pytest.mark.backends("postgresql")
def test_upgrade_on_a_real_postgresql_cell(real_cell, backend):
    nova_tables = real_cell.table_names()
    assert cli("schema", "upgrade", "--db", real_cell.url).exit_code == 0
    assert HOST_INDEX in real_cell.index_names()
    assert real_cell.table_names() == nova_tables
    assert cli("schema", "downgrade", "base", "--db", real_cell.url).exit_code == 0
    assert HOST_INDEX not in real_cell.index_names()


def _family(column_type) -> str:
    """What a column holds, as far as the toolkit cares (Enum is text, Boolean an integer)."""
    for family, types in (
        ("text", (sa.String,)),  # Text and Enum (PostgreSQL/MySQL ENUM too) are String
        ("integer", (sa.Integer, sa.Boolean)),  # MySQL has Boolean as TINYINT(1)
        ("datetime", (sa.DateTime,)),
        ("number", (sa.Float, sa.Numeric)),
    ):
        if isinstance(column_type, types):
            return family
    return type(column_type).__name__


def test_the_toolkits_nova_tables_are_novas_own(real_cell):
    """Every column the toolkit reads (nova/tables.py) or simulates (nova/models.py) is in
    a cell built by Nova's own ``db sync``, holding the same kind of value."""
    with real_cell.engine().connect() as conn:
        inspector = sa.inspect(conn)
        real = {
            name: {c["name"]: c["type"] for c in inspector.get_columns(name)}
            for name in inspector.get_table_names()
        }
    declared = [("reads", read_table(name)) for name in KNOWN_TABLES]
    declared += [("simulates", table) for table in build_metadata().tables.values()]
    problems = []
    for use, table in declared:
        for column in table.columns:
            found = real.get(table.name, {}).get(column.name)
            if found is None:
                problems.append(f"{use} {table.name}.{column.name}: not in Nova's schema")
            elif _family(found) != _family(column.type):
                problems.append(
                    f"{use} {table.name}.{column.name}: {column.type} but Nova has {found}"
                )
    assert problems == []
    assert len(declared) > len(KNOWN_TABLES)
