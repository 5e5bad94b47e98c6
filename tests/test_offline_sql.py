"""``schema sql`` / ``alembic upgrade --sql``: reviewable SQL, asserted as text and applied."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.nova.catalog import HOST_INDEX
from actionhost_backfill.schema import revisions
from tests.harness import cli


def render(dialect: str, **kw) -> str:
    return revisions.offline_sql(revisions.offline_url(dialect), **kw)


def test_postgresql_upgrade_sql():
    sql = render("postgresql")
    # State schema first, version table inside it, never Nova's alembic_version.
    assert sql.index('CREATE SCHEMA IF NOT EXISTS "actionhost"') < sql.index(
        "CREATE TABLE actionhost.actionhost_version"
    )
    assert "alembic_version " not in sql.replace("actionhost_version", "")
    assert "CREATE TABLE actionhost.schema_changes" in sql
    # Guarded column: type check and conditional add recorded in the ledger.
    assert "RAISE EXCEPTION 'instance_actions_events.host exists with an incompatible type" in sql
    assert "ALTER TABLE instance_actions_events ADD COLUMN host VARCHAR(255);" in sql
    assert "ALTER TABLE shadow_instance_actions_events ADD COLUMN host VARCHAR(255);" in sql
    # Index: concurrently, outside a transaction, under lock_timeout, INVALID guard.
    create = sql.index(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {HOST_INDEX} ON instance_actions_events (host);"
    )
    assert sql.rindex("COMMIT;", 0, create) > sql.rindex("BEGIN;", 0, create)
    assert sql.rindex("SET lock_timeout = '5000ms';", 0, create) > sql.rindex("COMMIT;", 0, create)
    assert "NOT i.indisvalid" in sql
    assert "UPDATE actionhost.actionhost_version SET version_num='0002_host_index'" in sql


def test_mysql8_upgrade_sql_says_where_guards_are_missing():
    sql = render("mysql")
    assert sql.startswith("CREATE DATABASE IF NOT EXISTS `nova_actionhost`")
    assert "CREATE TABLE nova_actionhost.actionhost_version" in sql
    assert "-- MySQL has no ADD COLUMN IF NOT EXISTS" in sql
    assert "-- MySQL has no ADD INDEX IF NOT EXISTS" in sql
    assert (
        "ALTER TABLE instance_actions_events ADD COLUMN host VARCHAR(255) NULL, ALGORITHM=INSTANT;"
        in sql
    )
    assert (
        f"ALTER TABLE instance_actions_events ADD INDEX {HOST_INDEX} (host), ALGORITHM=INPLACE, LOCK=NONE;"
        in sql
    )
    assert "SET SESSION lock_wait_timeout = 5;" in sql
    assert "IF NOT EXISTS host" not in sql


def test_mariadb_upgrade_sql_is_guarded():
    sql = render("mariadb")
    assert "ADD COLUMN IF NOT EXISTS host VARCHAR(255) NULL, ALGORITHM=INSTANT;" in sql
    assert f"ADD INDEX IF NOT EXISTS {HOST_INDEX} (host), ALGORITHM=INPLACE, LOCK=NONE;" in sql


def test_sqlite_upgrade_sql():
    sql = render("sqlite")
    assert "ATTACH DATABASE 'nova.actionhost.sqlite' AS \"actionhost\"" in sql
    assert "-- SQLite has no ADD COLUMN IF NOT EXISTS" in sql
    assert f"CREATE INDEX IF NOT EXISTS {HOST_INDEX} ON instance_actions_events (host);" in sql


def test_downgrade_sql_never_drops_nova_column_blindly():
    pg = render("postgresql", downgrade_sql=True)
    assert f"DROP INDEX CONCURRENTLY IF EXISTS {HOST_INDEX};" in pg
    assert "WHERE kind = 'column' AND table_name = 'instance_actions_events'" in pg
    mysql = render("mysql", downgrade_sql=True)
    assert "DROP COLUMN" not in mysql
    assert "never dropped by offline SQL" in mysql


def test_lock_timeout_and_state_schema_reach_the_sql():
    sql = render("postgresql", state_schema="ops_ahb", lock_timeout=30)
    assert 'CREATE SCHEMA IF NOT EXISTS "ops_ahb"' in sql
    assert "SET lock_timeout = '30000ms';" in sql


def test_cli_sql_matches_library():
    result = cli("schema", "sql", "--dialect", "postgresql")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == render("postgresql").strip()


def test_cli_sql_rejects_unknown_dialect():
    result = cli("schema", "sql", "--dialect", "oracle")
    assert result.exit_code == 127
    assert "oracle" in result.stderr and "postgresql" in result.stderr


@pytest.mark.backends("postgresql", "mysql")
def test_offline_sql_applied_by_a_dba_gives_the_online_result(cell, backend):
    """Pipe the SQL through psql / mariadb as a DBA would; compare with online."""
    url = parse_url(cell.url)
    if backend == "postgresql":
        client = shutil.which("psql")
        sql = revisions.offline_sql(url)
        command = [
            client,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            url.host,
            "-p",
            str(url.port or 5432),
            "-U",
            url.username,
            "-d",
            url.database,
        ]
    else:
        client = shutil.which("mariadb") or shutil.which("mysql")
        sql = revisions.offline_sql(url.set(drivername="mariadb+pymysql"))
        command = [
            client,
            "-h",
            url.host,
            "-P",
            str(url.port or 3306),
            "-u",
            url.username,
            url.database,
        ]
    assert client, "the database client must be installed (CI installs it with the server)"
    done = subprocess.run(command, input=sql, text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert HOST_INDEX in cell.index_names()
    with cell.engine().connect() as conn:
        assert revisions.current_revision(conn, cell.location) == "0003_backfill_state"
    # The online upgrade now finds nothing to do.
    result = revisions.upgrade(url)
    assert result.before == result.after == "0003_backfill_state"


@pytest.mark.backends("postgresql")
def test_offline_guard_stops_on_incompatible_column(bare_cell, backend):
    bare_cell.build(with_host=False)
    with bare_cell.engine().begin() as conn:
        conn.execute(sa.text("ALTER TABLE instance_actions_events ADD COLUMN host VARCHAR(20)"))
    url = parse_url(bare_cell.url)
    sql = revisions.offline_sql(url)
    done = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            url.host,
            "-U",
            url.username,
            "-d",
            url.database,
        ],
        input=sql,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "incompatible type" in done.stderr
    assert "host" in bare_cell.columns("instance_actions_events")
    assert "host" not in bare_cell.columns("shadow_instance_actions_events")
