"""The revisions, walked like Nova's test_migrations: per step, idempotent, round trip."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.errors import IncompatibleSchema, NotANovaDatabase
from actionhost_backfill.nova.catalog import HOST_INDEX
from actionhost_backfill.nova.models import NOVA_HEAD_REVISION
from actionhost_backfill.schema import revisions

REVISIONS = ["0001_host_column", "0002_host_index", "0003_backfill_state"]


def _upgrade(cell, target="head", **kw):
    return revisions.upgrade(parse_url(cell.url), target=target, **kw)


def _downgrade(cell, target, **kw):
    return revisions.downgrade(parse_url(cell.url), target=target, **kw)


def _ledger(cell):
    location = cell.location
    return sorted(
        cell.rows(f"SELECT kind, table_name, object_name FROM {location.schema}.schema_changes")
    )


def _current(cell):
    with cell.engine().connect() as conn:
        return revisions.current_revision(conn, cell.location)


def test_single_head_and_base():
    script = revisions.script_directory()
    assert script.get_heads() == ["0003_backfill_state"]
    assert script.get_bases() == ["0001_host_column"]
    assert revisions.revision_ids() == REVISIONS


def test_revision_files_read_like_their_template():
    """Short revisions with the template's header and typed identifiers.

    The frozen column declarations a revision carries (Nova's pattern) are not
    counted: the logic lives in the package, the shape of each table here.
    """
    for path in sorted(revisions.versions_dir().glob("*.py")):
        text = path.read_text()
        assert "Revision ID:" in text and "Revises:" in text and "Create Date:" in text, path
        assert "revision: str = " in text and "def upgrade() -> None:" in text, path
        code = [
            line
            for line in text.splitlines()
            if not line.lstrip().startswith(("sa.Column(", "sa.Index("))
        ]
        assert len(code) <= 75, f"{path.name} is longer than Nova's revisions"


def test_walk_revisions_one_at_a_time(cell):
    nova_tables = cell.table_names()
    assert _current(cell) is None

    _upgrade(cell, "0001_host_column")
    assert _current(cell) == "0001_host_column"
    assert "schema_changes" in cell.state_table_names()
    assert "actionhost_version" in cell.state_table_names()
    assert HOST_INDEX not in cell.index_names()
    assert cell.columns("instance_actions_events")["host"]["nullable"]

    _upgrade(cell, "0002_host_index")
    assert _current(cell) == "0002_host_index"
    assert HOST_INDEX in cell.index_names()
    assert _ledger(cell) == [("index", "instance_actions_events", HOST_INDEX)]
    assert "runs" not in cell.state_table_names()

    _upgrade(cell, "0003_backfill_state")
    assert _current(cell) == "0003_backfill_state"
    assert {
        "runs",
        "checkpoints",
        "audit",
        "run_counts",
        "runner_lease",
    } <= cell.state_table_names()

    # Nothing of ours leaked into the cell schema; Nova's history untouched.
    assert cell.table_names() == nova_tables
    assert cell.nova_version() == NOVA_HEAD_REVISION


def test_upgrade_twice_is_a_no_op(cell):
    _upgrade(cell)
    first = cell.fingerprint()
    ledger = _ledger(cell)
    result = _upgrade(cell)
    assert result.before == result.after == "0003_backfill_state"
    assert cell.fingerprint() == first
    assert _ledger(cell) == ledger


def test_upgrade_downgrade_upgrade_round_trip(cell):
    before = cell.fingerprint()
    _upgrade(cell)
    upgraded = cell.fingerprint()
    _downgrade(cell, "base")
    assert cell.fingerprint() == before, "downgrade must restore the cell schema exactly"
    assert _current(cell) is None
    assert cell.nova_version() == NOVA_HEAD_REVISION
    _upgrade(cell)
    assert cell.fingerprint() == upgraded


def test_downgrade_one_step_keeps_nova_column_and_data(cell):
    cell.execute("INSERT INTO instances (uuid, host, deleted) VALUES ('i-1', 'cmp1', 0)")
    cell.execute(
        "INSERT INTO instance_actions (id, action, instance_uuid, request_id, deleted) "
        "VALUES (1, 'create', 'i-1', 'req-1', 0)"
    )
    cell.execute(
        "INSERT INTO instance_actions_events (id, event, action_id, host, deleted) "
        "VALUES (1, 'compute__do_build_and_run_instance', 1, 'cmp1', 0)"
    )
    _upgrade(cell)
    _downgrade(cell, "-1")
    assert _current(cell) == "0002_host_index"
    assert "runs" not in cell.state_table_names()
    _downgrade(cell, "-1")
    assert _current(cell) == "0001_host_column"
    assert HOST_INDEX not in cell.index_names()
    _downgrade(cell, "base")
    assert "host" in cell.columns("instance_actions_events")
    assert "host" in cell.columns("shadow_instance_actions_events")
    assert cell.scalar("SELECT host FROM instance_actions_events WHERE id = 1") == "cmp1"


def test_missing_column_is_added_to_both_tables_and_dropped_on_downgrade(bare_cell):
    bare_cell.build(with_host=False)
    _upgrade(bare_cell)
    for table in ("instance_actions_events", "shadow_instance_actions_events"):
        column = bare_cell.columns(table)["host"]
        assert column["nullable"]
        assert getattr(column["type"], "length", None) == 255
    assert ("column", "instance_actions_events", "host") in _ledger(bare_cell)
    assert ("column", "shadow_instance_actions_events", "host") in _ledger(bare_cell)
    _downgrade(bare_cell, "base")
    assert "host" not in bare_cell.columns("instance_actions_events")
    assert "host" not in bare_cell.columns("shadow_instance_actions_events")


def test_column_missing_only_on_shadow(bare_cell):
    bare_cell.build(with_host=False)
    with bare_cell.engine().begin() as conn:
        conn.exec_driver_sql("ALTER TABLE instance_actions_events ADD COLUMN host VARCHAR(255)")
    _upgrade(bare_cell)
    assert _ledger(bare_cell) == [
        ("column", "shadow_instance_actions_events", "host"),
        ("index", "instance_actions_events", HOST_INDEX),
    ]
    _downgrade(bare_cell, "base")
    assert "host" in bare_cell.columns("instance_actions_events")
    assert "host" not in bare_cell.columns("shadow_instance_actions_events")


def test_no_shadow_table_is_fine(bare_cell):
    bare_cell.build(with_shadow=False)
    _upgrade(bare_cell)
    assert HOST_INDEX in bare_cell.index_names()


def test_existing_host_index_under_another_name_is_kept_and_not_duplicated(cell):
    cell.execute("CREATE INDEX nova_future_host_idx ON instance_actions_events (host, action_id)")
    result = _upgrade(cell)
    assert HOST_INDEX not in cell.index_names()
    assert any(
        "skipped index" in line and "nova_future_host_idx" in line for line in result.actions
    )
    assert [k for k, *_ in _ledger(cell)] == []
    _downgrade(cell, "base")
    assert "nova_future_host_idx" in cell.index_names()


@pytest.mark.parametrize(
    "definition, problem",
    [
        ("VARCHAR(64)", "shorter"),
        ("VARCHAR(255) NOT NULL DEFAULT ''", "NOT NULL"),
        ("INTEGER", "not a variable-length string"),
    ],
)
def test_incompatible_column_stops_and_changes_nothing(bare_cell, definition, problem):
    bare_cell.build(with_host=False)
    with bare_cell.engine().begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE instance_actions_events ADD COLUMN host {definition}")
    before = bare_cell.fingerprint()
    with pytest.raises(IncompatibleSchema) as info:
        _upgrade(bare_cell)
    assert problem in str(info.value)
    assert "nothing was changed" in str(info.value)
    assert bare_cell.fingerprint() == before
    assert bare_cell.state_table_names() == set()


def test_incompatible_shadow_column_leaves_live_table_alone(bare_cell):
    bare_cell.build(with_host=False)
    with bare_cell.engine().begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE shadow_instance_actions_events ADD COLUMN host VARCHAR(10)"
        )
    with pytest.raises(IncompatibleSchema, match=r"shadow_instance_actions_events\.host"):
        _upgrade(bare_cell)
    assert "host" not in bare_cell.columns("instance_actions_events")


def test_not_a_nova_database_changes_nothing(blank_db):
    from tests.harness import Cell

    cell = Cell(blank_db)
    cell.execute("CREATE TABLE something_else (id INTEGER PRIMARY KEY)")
    before = cell.fingerprint()
    with pytest.raises(NotANovaDatabase, match="is this a Nova cell database"):
        revisions.upgrade(parse_url(blank_db))
    assert cell.fingerprint() == before
    assert cell.state_table_names() == set()
    cell.dispose()


def test_state_schema_is_configurable(cell, backend):
    # On MySQL a state schema is a database of its own: named after the cell's,
    # the throwaway cell's teardown drops it too (a fixed name outlived the run).
    other = "ahb_other" if backend == "sqlite" else f"{parse_url(cell.url).database}_other"
    revisions.upgrade(parse_url(cell.url), state_schema=other)
    assert "actionhost_version" in cell.state_table_names(other)
    assert cell.state_table_names() == set()
    with cell.engine(other).connect() as conn:
        location = revisions.resolve_state_location(parse_url(cell.url), other)
        assert revisions.current_revision(conn, location) == "0003_backfill_state"


@pytest.mark.backends("postgresql")
def test_invalid_leftover_index_is_dropped_and_rebuilt(cell, backend):
    cell.execute(
        "INSERT INTO instance_actions_events (id, event, host, deleted) VALUES "
        "(1, 'e', 'same', 0), (2, 'e', 'same', 0)"
    )
    # A failed concurrent build leaves an INVALID index behind: reproduce one
    # with our index's name (a unique build over duplicate values fails).
    engine = sa.create_engine(cell.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.exec_driver_sql(
            f"CREATE UNIQUE INDEX CONCURRENTLY {HOST_INDEX} ON instance_actions_events (host)"
        )
    engine.dispose()
    valid = cell.rows(
        "SELECT i.indisvalid, i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = :n",
        {"n": HOST_INDEX},
    )
    assert valid == [(False, True)]

    status = revisions.status(parse_url(cell.url))
    assert any("INVALID" in line for line in status.plan)
    result = _upgrade(cell)
    assert any("dropped INVALID index" in line for line in result.actions)
    assert cell.rows(
        "SELECT i.indisvalid, i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = :n",
        {"n": HOST_INDEX},
    ) == [(True, False)]


@pytest.mark.backends("postgresql")
def test_foreign_invalid_host_index_is_ignored(cell, backend):
    cell.execute(
        "INSERT INTO instance_actions_events (id, event, host, deleted) VALUES "
        "(1, 'e', 'same', 0), (2, 'e', 'same', 0)"
    )
    engine = sa.create_engine(cell.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.exec_driver_sql(
            "CREATE UNIQUE INDEX CONCURRENTLY someone_elses ON instance_actions_events (host)"
        )
    engine.dispose()
    result = _upgrade(cell)
    assert any("ignored INVALID index someone_elses" in line for line in result.actions)
    assert HOST_INDEX in cell.index_names()
    assert "someone_elses" in cell.index_names()


def test_nova_alembic_version_is_never_touched(cell):
    _upgrade(cell)
    _downgrade(cell, "base")
    _upgrade(cell)
    assert cell.rows("SELECT version_num FROM alembic_version") == [(NOVA_HEAD_REVISION,)]
