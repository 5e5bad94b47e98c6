"""``actionhost-backfill schema ...`` as users call it: output, exit codes, nothing leaked."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy.engine import make_url

from actionhost_backfill.nova.catalog import HOST_INDEX
from tests import harness
from tests.harness import cli


def test_status_before_and_after_upgrade(cell):
    before = cell.fingerprint()
    result = cli("schema", "status", "--db", cell.url)
    assert result.exit_code == 1, result.output  # upgrade pending
    assert "nova cell db:    yes" in result.stdout
    assert "upgrade would:" in result.stdout
    assert f"create index {HOST_INDEX}" in result.stdout
    assert cell.fingerprint() == before, "status must not change anything"
    assert cell.state_table_names() == set()

    result = cli("schema", "upgrade", "--db", cell.url)
    assert result.exit_code == 0, result.output
    assert f"created index {HOST_INDEX}" in result.stdout

    result = cli("schema", "status", "--db", cell.url, "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["current_revision"] == status["head_revision"] == "0003_backfill_state"
    assert status["is_nova"] is True
    assert [ix["name"] for ix in status["host_indexes"]] == [HOST_INDEX]
    assert status["plan"] == ["nothing: already at head (0003_backfill_state)"]
    assert status["version_table"].endswith(".actionhost_version")


def test_upgrade_json_and_env_var(cell):
    result = cli("schema", "upgrade", "--json", env={"ACTIONHOST_DB_URL": cell.url})
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["before"] is None and payload["after"] == "0003_backfill_state"


def test_downgrade_cli(cell):
    assert cli("schema", "upgrade", "--db", cell.url).exit_code == 0
    result = cli("schema", "downgrade", "0001_host_column", "--db", cell.url)
    assert result.exit_code == 0, result.output
    assert f"dropped index {HOST_INDEX}" in result.stdout
    assert HOST_INDEX not in cell.index_names()
    result = cli("schema", "downgrade", "nonsense", "--db", cell.url)
    assert result.exit_code == 127
    assert "unknown revision 'nonsense'" in result.stderr


def test_not_a_nova_database(blank_db):
    result = cli("schema", "upgrade", "--db", blank_db)
    assert result.exit_code == 127, result.output
    assert "is this a Nova cell database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("schema", "status", "--db", blank_db)
    assert result.exit_code == 127


@pytest.mark.parametrize(
    "url, message, code",
    [
        ("not a url", "is not a database URL", 127),
        ("oracle://scott:tiger-secret@db/nova", "unsupported database 'oracle'", 127),
        ("postgresql+psycopg2://nova:s3cr3t-pw@127.0.0.1:1/nova", "cannot reach", 2),
        ("mysql+pymysql://nova:s3cr3t-pw@127.0.0.1:1/nova", "cannot reach", 2),
        ("mysql+pymysql://nova:s3cr3t-pw@127.0.0.1:3306", "names no database", 127),
        ("sqlite:////nonexistent/dir/nova.sqlite", "does not exist", 127),
    ],
)
def test_bad_urls_give_one_line_and_exit_code(url, message, code):
    result = cli("schema", "status", "--db", url)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for secret in ("tiger-secret", "s3cr3t-pw"):
        assert secret not in result.output


def test_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "typo.sqlite"
    result = cli("schema", "upgrade", "--db", f"sqlite:///{path}")
    assert result.exit_code == 127
    assert not path.exists()


def test_no_database_given():
    result = cli("schema", "status", env={"ACTIONHOST_DB_URL": ""})
    assert result.exit_code == 127
    assert "no database given" in result.stderr


def test_bad_flag_is_bad_input(cell):
    result = cli("schema", "upgrade", "--db", cell.url, "--lock-timeout", "0")
    assert result.exit_code == 127
    assert "--lock-timeout must be between 0 and 3600" in result.stderr
    result = cli("schema", "upgrade", "--no-such-flag")
    assert result.exit_code == 127
    assert "No such option" in result.stderr


@pytest.mark.backends("mysql")
def test_missing_database_and_wrong_password_mysql(backend, server_url):
    user = f"ahb_{uuid.uuid4().hex[:8]}"
    admin = harness.admin_engine("mysql")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'right-pw-123'")
    try:
        base = make_url(server_url)
        wrong = base.set(username=user, password="wrong-pw-456", database="nova")
        result = cli("schema", "status", "--db", wrong.render_as_string(hide_password=False))
        assert result.exit_code == 127, result.output
        assert "cannot log in" in result.stderr
        assert "wrong-pw-456" not in result.output
        missing = base.set(database=f"missing_{user}")
        result = cli("schema", "status", "--db", missing.render_as_string(hide_password=False))
        assert result.exit_code == 127, result.output
        assert "does not exist" in result.stderr
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


@pytest.mark.backends("postgresql")
def test_missing_database_postgresql(backend, server_url):
    missing = make_url(server_url).set(database=f"missing_{uuid.uuid4().hex[:8]}")
    result = cli("schema", "status", "--db", missing.render_as_string(hide_password=False))
    assert result.exit_code == 127, result.output
    assert "does not exist" in result.stderr


@pytest.mark.backends("postgresql", "mysql")
def test_read_only_user_cannot_upgrade_and_nothing_changes(cell, backend):
    """A SELECT-only user gets the GRANT to run, and the database is unchanged."""
    user = f"ahb_ro_{uuid.uuid4().hex[:6]}"
    password = "ro-secret-789"
    admin = harness.admin_engine(backend)
    database = cell.sa_url.database
    with admin.connect() as conn:
        if backend == "postgresql":
            conn.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            cell.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}")
            conn.exec_driver_sql(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC')
        else:
            conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
            conn.exec_driver_sql(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%%'")
    try:
        before = cell.fingerprint()
        url = cell.sa_url.set(username=user, password=password).render_as_string(
            hide_password=False
        )
        result = cli("schema", "upgrade", "--db", url)
        assert result.exit_code == 127, result.output
        assert "GRANT" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert password not in result.output
        assert cell.fingerprint() == before
        assert cell.state_table_names() == set()
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                cell.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {user}")
                conn.exec_driver_sql(f'REVOKE ALL ON DATABASE "{database}" FROM {user}')
                conn.exec_driver_sql(f"DROP ROLE {user}")
            else:
                conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


def test_help_lists_exit_codes():
    result = cli("schema", "--help")
    assert result.exit_code == 0
    assert "127" in result.stdout
    for command in ("status", "upgrade", "downgrade", "sql"):
        assert command in result.stdout
