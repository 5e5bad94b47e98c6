"""``schema sql`` / ``alembic upgrade --sql``: reviewable SQL, asserted as text and applied."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.nova.catalog import HOST_INDEX
from actionhost_backfill.schema import revisions
from actionhost_backfill.state.location import state_schema_exists
from tests.harness import Cell, another_database, cli


def render(dialect: str, **kw) -> str:
    return revisions.offline_sql(revisions.offline_url(dialect), **kw)


def test_postgresql_upgrade_sql():
    sql = render("postgresql")
    # State schema first, version table inside it, never Nova's alembic_version.
    assert sql.index('CREATE SCHEMA IF NOT EXISTS "actionhost"') < sql.index(
        "CREATE TABLE IF NOT EXISTS actionhost.actionhost_version"
    )
    assert "alembic_version " not in sql.replace("actionhost_version", "")
    assert "CREATE TABLE IF NOT EXISTS actionhost.schema_changes" in sql
    # A second run inserts no second version row.
    assert (
        "INSERT INTO actionhost.actionhost_version (version_num) SELECT '0001_host_column' "
        "WHERE NOT EXISTS (SELECT 1 FROM actionhost.actionhost_version);" in sql
    )
    assert "CREATE TABLE IF NOT EXISTS actionhost.audit" in sql
    assert "CREATE INDEX IF NOT EXISTS audit_event_idx ON actionhost.audit (event_id);" in sql
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


def test_mysql_upgrade_sql_is_guarded_without_if_not_exists():
    """MySQL 8 has no ADD COLUMN / ADD INDEX IF NOT EXISTS: statements prepared from
    information_schema, the same for MariaDB."""
    sql = render("mysql")
    assert sql.startswith("CREATE DATABASE IF NOT EXISTS `nova_actionhost`")
    assert "CREATE TABLE IF NOT EXISTS nova_actionhost.actionhost_version" in sql
    assert "SELECT '0001_host_column' FROM DUAL WHERE NOT EXISTS" in sql
    assert "-- MySQL 8 has no ADD COLUMN IF NOT EXISTS" in sql
    assert (
        "'ALTER TABLE instance_actions_events ADD COLUMN host VARCHAR(255) NULL, ALGORITHM=INSTANT', 'DO 0');"
        in sql
    )
    assert "column_name = 'host' AND seq_in_index = 1) = 0" in sql
    assert (
        f"'ALTER TABLE instance_actions_events ADD INDEX {HOST_INDEX} (host), ALGORITHM=INPLACE, LOCK=NONE'"
        in sql
    )
    assert "PREPARE actionhost_ddl FROM @actionhost_ddl;" in sql
    assert "SET SESSION lock_wait_timeout = 5;" in sql
    assert "IF NOT EXISTS host" not in sql
    mariadb = render("mariadb")
    assert "PREPARE actionhost_ddl FROM @actionhost_ddl;" in mariadb
    assert "IF NOT EXISTS host" not in mariadb


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


# --------------------------------------------------------------------------- applied twice


def run_script(backend: str, url, sql: str) -> tuple[bool, str]:
    """Apply a script as a DBA would (psql / mariadb, or a fresh sqlite3 session);
    returns whether it succeeded and the error output."""
    if backend == "sqlite":
        connection = sqlite3.connect(url.database)
        try:
            connection.executescript(sql)
        except sqlite3.Error as exc:
            return False, str(exc)
        finally:
            connection.close()
        return True, ""
    if backend == "postgresql":
        command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", url.host]
        command += ["-p", str(url.port or 5432), "-U", url.username, "-d", url.database]
    else:
        client = shutil.which("mariadb") or shutil.which("mysql")
        command = [client, "-h", url.host, "-P", str(url.port or 3306), "-u", url.username]
        command += [url.database]
    done = subprocess.run(command, input=sql, text=True, capture_output=True, timeout=120)
    return done.returncode == 0, done.stderr


def _apply(backend: str, url, sql: str) -> None:
    ok, error = run_script(backend, url, sql)
    assert ok, error


def _schema(cell, *, ledger: bool = True) -> dict:
    """Every Nova table's columns and indexes, the state tables' too, the version
    table's rows and (with ``ledger``) the ledger's rows."""
    found = {"nova": cell.fingerprint()}
    location = cell.location
    with cell.engine().connect() as conn:
        if not state_schema_exists(conn, location):
            return found
        inspector = sa.inspect(conn)
        schema = location.schema
        for table in sorted(inspector.get_table_names(schema=schema)):
            found[f"state.{table}"] = (
                [c["name"] for c in inspector.get_columns(table, schema=schema)],
                sorted(
                    (ix["name"], tuple(ix["column_names"]))
                    for ix in inspector.get_indexes(table, schema=schema)
                ),
            )
        names = set(inspector.get_table_names(schema=schema))
        if "actionhost_version" in names:
            found["version"] = sorted(
                r[0]
                for r in conn.exec_driver_sql(
                    f"SELECT version_num FROM {schema}.actionhost_version"
                )
            )
        if ledger and "schema_changes" in names:
            found["ledger"] = sorted(
                tuple(r)
                for r in conn.exec_driver_sql(
                    f"SELECT revision, kind, table_name, object_name FROM {schema}.schema_changes"
                )
            )
    return found


def _script(cell, dialect: str, *extra: str) -> str:
    result = cli("schema", "sql", "--dialect", dialect, "--db", cell.url, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def _dialects(backend: str) -> list[str]:
    return ["mysql", "mariadb"] if backend == "mysql" else [backend]


@pytest.mark.parametrize("with_host", [True, False], ids=["nova-host", "no-host"])
def test_every_script_applies_twice_and_leaves_the_same_schema(
    bare_cell, backend, with_host, server_url, tmp_path, request
):
    """Upgrade and downgrade, each applied twice with the real client: both runs succeed,
    the second changes nothing, and the upgrade leaves what `schema upgrade` leaves."""
    if backend == "sqlite" and not with_host:
        # SQLite cannot add a column conditionally: its script checks that host is
        # there and stops where it is not, leaving Nova's tables as they were.
        bare_cell.build(with_host=False)
        nova_before = bare_cell.fingerprint()
        ok, error = run_script(backend, parse_url(bare_cell.url), _script(bare_cell, "sqlite"))
        assert not ok and "no such column: host" in error, error
        assert bare_cell.fingerprint() == nova_before
        return
    online = Cell(another_database(backend, server_url, tmp_path, request, "online"))
    request.addfinalizer(online.dispose)
    online.build(with_host=with_host)
    revisions.upgrade(parse_url(online.url))
    expected = _schema(online, ledger=False)

    url = parse_url(bare_cell.url)
    for dialect in _dialects(backend):
        bare_cell.build(with_host=with_host)
        nova_before = bare_cell.fingerprint()
        upgrade = _script(bare_cell, dialect)
        _apply(backend, url, upgrade)
        once = _schema(bare_cell)
        _apply(backend, url, upgrade)
        assert _schema(bare_cell) == once, f"{dialect} upgrade script, second run"
        assert once["version"] == ["0003_backfill_state"]
        assert {k: v for k, v in once.items() if k != "ledger"} == expected, dialect
        if not with_host:
            assert [row[2] for row in once["ledger"]] == [
                "instance_actions_events",
                "shadow_instance_actions_events",
            ], "each addition recorded once"
        result = revisions.upgrade(url)
        assert result.before == result.after == "0003_backfill_state"

        downgrade = _script(bare_cell, dialect, "--downgrade")
        _apply(backend, url, downgrade)
        down = _schema(bare_cell)
        _apply(backend, url, downgrade)
        assert _schema(bare_cell) == down, f"{dialect} downgrade script, second run"
        assert down["version"] == []
        assert HOST_INDEX not in bare_cell.index_names()
        assert set(down) == {"nova", "state.actionhost_version", "version"}
        if with_host or backend == "postgresql":
            # Nova's column is kept; on PostgreSQL the ledger proves what the toolkit
            # added, and only that is dropped (MySQL offline never drops a column).
            assert down["nova"] == nova_before
        if dialect != _dialects(backend)[-1]:
            _reset(bare_cell, backend)


def _reset(cell, backend: str) -> None:
    """Drop everything, for the next dialect's scripts on the same server."""
    with cell.engine().begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{cell.location.schema}`")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        for table in sa.inspect(conn).get_table_names():
            conn.exec_driver_sql(f"DROP TABLE {table}")


def test_dialect_wins_over_the_connection_url():
    env = {"ACTIONHOST_DB_URL": "mysql+pymysql://nova:s3cret@db.example/nova_cell3"}
    result = cli("schema", "sql", "--dialect", "postgresql", env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == render("postgresql").strip()
    assert "nova_cell3" not in result.stdout
    # Same family: the database name is kept, for the state database named after it.
    result = cli("schema", "sql", "--dialect", "mariadb", env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("CREATE DATABASE IF NOT EXISTS `nova_cell3_actionhost`")
    assert "s3cret" not in result.stdout
    result = cli("schema", "sql", "--dialect", "sqlite", "--db", "postgresql://nova@db/nova")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == render("sqlite").strip()
