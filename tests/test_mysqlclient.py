"""The compiled MySQL driver (``mysql+mysqldb://``, the optional ``mysqlclient`` extra).

PyMySQL stays the default and runs the whole suite.  When ``MySQLdb`` is
importable these tests run a few representative paths over it on MariaDB:
a backfill (same hosts as over PyMySQL), a connection lost mid-statement, a
privilege refused by the server, a wrong password (never printed).  The whole
MariaDB suite also runs over it with
``ACTIONHOST_TEST_MYSQL_URL=mysql+mysqldb://root@127.0.0.1:3306/mysql``.
"""

from __future__ import annotations

import importlib.util
import os
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from actionhost_backfill import db as ahb_db
from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import BadInput, DatabaseUnavailable, PrivilegeError
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.simulate import simulate
from tests import harness
from tests.harness import cli
from tests.test_privileges import SMALL_HISTORY, restricted_user

HAVE_MYSQLDB = importlib.util.find_spec("MySQLdb") is not None
#: CI installs the extra (.ci/run installs its build dependencies): there a missing
#: driver fails these tests instead of skipping them.
needs_mysqldb = pytest.mark.skipif(
    not HAVE_MYSQLDB and os.environ.get("CI", "").lower() != "true",
    reason="mysqlclient is not installed (pip install -e '.[test,mysqlclient]')",
)


def over_mysqldb(url: str) -> str:
    """``url`` with the compiled driver named (password kept)."""
    return make_url(url).set(drivername="mysql+mysqldb").render_as_string(hide_password=False)


# --------------------------------------------------------------------------- URLs


def test_mysqldb_url_uses_mysqlclient_only_when_installed(monkeypatch):
    monkeypatch.setattr(ahb_db, "_installed", lambda module: module == "MySQLdb")
    assert parse_url("mysql+mysqldb://nova:pw@db/nova").drivername == "mysql+mysqldb"
    assert parse_url("mariadb+mysqldb://nova:pw@db/nova").drivername == "mariadb+mysqldb"
    # No driver named, or PyMySQL named: PyMySQL, the default, as always.
    assert parse_url("mysql://nova:pw@db/nova").drivername == "mysql+pymysql"
    assert parse_url("mysql+pymysql://nova:pw@db/nova").drivername == "mysql+pymysql"
    # Checks after the driver is settled still apply.
    with pytest.raises(BadInput, match="names no database"):
        parse_url("mysql+mysqldb://nova:pw@db")

    monkeypatch.setattr(ahb_db, "_installed", lambda module: False)
    assert parse_url("mysql+mysqldb://nova:pw@db/nova").drivername == "mysql+pymysql"


# --------------------------------------------------------------------------- runs


@needs_mysqldb
@pytest.mark.backends("mysql")
def test_backfill_over_mysqlclient_fills_what_pymysql_fills(blank_db, backend, server_url):
    other = f"ahb_{uuid.uuid4().hex[:10]}"
    harness.create_database(backend, other)
    try:
        twin = make_url(blank_db).set(database=other).render_as_string(hide_password=False)
        assert parse_url(over_mysqldb(blank_db)).drivername == "mysql+mysqldb"
        filled = {}
        for url in (over_mysqldb(blank_db), twin):
            simulate(parse_url(url), SMALL_HISTORY)
            revisions.upgrade(parse_url(url))
            result = run_backfill(parse_url(url), BackfillOptions(include_shadow=True))
            assert result.filled > 0
            cell = harness.Cell(url)
            try:
                filled[url] = (
                    result.filled,
                    cell.rows("SELECT id, host FROM instance_actions_events ORDER BY id"),
                    cell.rows(
                        f"SELECT event_table, event_id, outcome, host, rule "
                        f"FROM {cell.location.schema}.audit ORDER BY event_table, event_id"
                    ),
                )
            finally:
                cell.dispose()
        first, second = filled.values()
        assert first == second
    finally:
        harness.drop_database(backend, other)


@needs_mysqldb
@pytest.mark.backends("mysql")
def test_connection_killed_over_mysqlclient_is_database_unavailable(cell, backend):
    url = parse_url(over_mysqldb(cell.url))
    engine = ahb_db.create_engine(url)
    admin = harness.admin_engine(backend)
    try:
        with engine.connect() as conn:
            assert type(conn.connection.driver_connection).__module__.startswith("MySQLdb")
            session = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
            with admin.connect() as killer:
                killer.exec_driver_sql(f"KILL CONNECTION {int(session)}")
            with pytest.raises(sa.exc.DBAPIError) as caught:
                conn.exec_driver_sql("SELECT COUNT(*) FROM instance_actions_events").all()
        assert ahb_db.is_connection_lost(caught.value)
        error = ahb_db.translate_error(caught.value, url)
        assert isinstance(error, DatabaseUnavailable), error
        assert "run the same command again" in str(error)
    finally:
        engine.dispose()
        admin.dispose()


@needs_mysqldb
@pytest.mark.backends("mysql")
def test_privilege_refused_over_mysqlclient_names_the_grant(cell, backend):
    with restricted_user(cell, ["GRANT SELECT ON `{db}`.* TO '{user}'@'%'"]) as (
        user,
        password,
        url,
    ):
        url = parse_url(over_mysqldb(url))
        engine = ahb_db.create_engine(url)
        try:
            with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
                conn.exec_driver_sql("UPDATE instance_actions_events SET host = NULL")
        finally:
            engine.dispose()
        error = ahb_db.translate_error(caught.value, url)
        assert isinstance(error, PrivilegeError), error
        assert "GRANT UPDATE" in str(error) and user in str(error)
        assert password not in str(error)
        assert "mysql+mysqldb://" in str(error)


@needs_mysqldb
@pytest.mark.backends("mysql")
def test_wrong_password_over_mysqlclient_is_never_printed(cell):
    secret = f"no-such-{uuid.uuid4().hex[:8]}"
    url = make_url(over_mysqldb(cell.url)).set(password=secret)
    result = cli("schema", "status", "--db", url.render_as_string(hide_password=False))
    assert result.exit_code == 127, result.output
    assert "cannot log in" in result.stderr
    assert "mysql+mysqldb://root:***@" in result.stderr
    assert secret not in result.output
