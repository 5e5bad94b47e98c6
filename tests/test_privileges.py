"""Privileges are checked before anything changes, and every refusal names its GRANT.

Each case creates a real restricted user (random name and password) on
PostgreSQL or MariaDB, grants only what the case needs, and drops it
afterwards.  A refusal must exit 127, name every missing privilege with the
GRANT to run, and leave the database exactly as it was (catalog and rows);
running the GRANTs it printed must then be enough for the same command.

SQLite has no users, and the tests run as root, whom file permissions do not
restrict: the SQLite cases make the permission check see an unwritable file
(``os.access``) instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from actionhost_backfill import db as ahb_db
from actionhost_backfill.db import parse_url
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from tests import harness
from tests.harness import cli

SMALL_HISTORY = SimulationOptions(seed=7, instances=25, hosts=4, days=60, cutover=0.6)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def restricted_user(cell: harness.Cell, grants: list[str]) -> Iterator[tuple[str, str, str]]:
    """A new login with only ``grants`` (formatted with {user}, {db}, {state});
    yields (user, password, url).  Dropped afterwards, with everything granted."""
    backend = cell.backend
    user = f"ahb_priv_{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex[:12]}"
    names = {"user": user, "db": cell.sa_url.database, "state": cell.location.schema}
    admin = harness.admin_engine(backend)
    with admin.connect() as conn:
        if backend == "postgresql":
            conn.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        else:
            conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
    try:
        run_as_admin(cell, [g.format(**names) for g in grants])
        url = cell.sa_url.set(username=user, password=password)
        yield user, password, url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                cell.execute(f"DROP OWNED BY {user}")
                conn.exec_driver_sql(f"DROP ROLE {user}")
            else:
                conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


def run_as_admin(cell: harness.Cell, statements: list[str]) -> None:
    """Run statements as the administrator, in the cell database (PostgreSQL grants
    on tables and schemas are per database)."""
    engine = sa.create_engine(cell.url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement.replace("%", "%%"))
    finally:
        engine.dispose()


def printed_grants(text: str) -> list[str]:
    """The GRANT statements a refusal printed."""
    return [g.strip() for g in re.findall(r"GRANT [^;]+;", text)]


def catalog_snapshot(cell: harness.Cell) -> dict:
    """Every schema (database) of the cell with its tables, columns and indexes, and a
    digest of every row: what "nothing was changed" must keep."""
    engine = sa.create_engine(cell.url)
    try:
        with engine.connect() as conn:
            if cell.backend == "postgresql":
                schemas = [
                    r[0]
                    for r in conn.exec_driver_sql(
                        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%' "
                        "AND nspname <> 'information_schema' ORDER BY 1"
                    )
                ]
                objects = conn.exec_driver_sql(
                    "SELECT n.nspname, c.relname, c.relkind, a.attname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                    "WHERE n.nspname = ANY(%(s)s) ORDER BY 1, 2, 4",
                    {"s": schemas},
                ).fetchall()
            else:
                like = cell.sa_url.database.replace("_", "\\_") + "%"
                schemas = [
                    r[0]
                    for r in conn.exec_driver_sql(
                        "SELECT schema_name FROM information_schema.schemata "
                        "WHERE schema_name LIKE %s ORDER BY 1",
                        (like,),
                    )
                ]
                objects = conn.exec_driver_sql(
                    "SELECT c.table_schema, c.table_name, c.column_name, s.index_name "
                    "FROM information_schema.columns c LEFT JOIN information_schema.statistics s "
                    "ON s.table_schema = c.table_schema AND s.table_name = c.table_name "
                    "AND s.column_name = c.column_name WHERE c.table_schema LIKE %s "
                    "ORDER BY 1, 2, 3, 4",
                    (like,),
                ).fetchall()
    finally:
        engine.dispose()
    return {"schemas": schemas, "objects": [tuple(r) for r in objects], "rows": cell.checksum()}


def one_line_refusal(result, *needles: str) -> str:
    assert result.exit_code == 127, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture
def simulated(blank_db) -> harness.Cell:
    simulate(parse_url(blank_db), SMALL_HISTORY)
    cell = harness.Cell(blank_db)
    yield cell
    cell.dispose()


# --------------------------------------------------------------------------- schema status


@pytest.mark.backends("postgresql", "mysql")
def test_status_for_a_select_only_user_names_the_grants_not_upgrade_pending(bare_cell, backend):
    bare_cell.build(with_host=False)
    select = (
        ["GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}"]
        if backend == "postgresql"
        else ["GRANT SELECT ON `{db}`.* TO '{user}'@'%'"]
    )
    with restricted_user(bare_cell, select) as (user, password, url):
        result = cli("schema", "status", "--db", url)
        assert result.exit_code == 127, result.output
        assert "missing privilege" in result.stdout
        if backend == "postgresql":
            assert "ownership (ALTER TABLE ADD COLUMN and CREATE INDEX)" in result.stdout
            assert f"GRANT CREATE ON DATABASE {bare_cell.sa_url.database} TO {user};" in (
                result.stdout
            )
        else:
            db, state = bare_cell.sa_url.database, bare_cell.location.schema
            assert f"GRANT ALTER ON `{db}`.`instance_actions_events` TO '{user}'@'%';" in (
                result.stdout
            )
            assert f"GRANT CREATE, INDEX, SELECT, INSERT, UPDATE, DELETE ON `{state}`.*" in (
                result.stdout
            )
        assert password not in result.output
        # The same for --json, which automation reads.
        result = cli("schema", "status", "--db", url, "--json")
        assert result.exit_code == 127
        assert any("GRANT" in line for line in json_privileges(result.stdout))


def json_privileges(stdout: str) -> list[str]:
    import json

    return json.loads(stdout)["privileges"]


@pytest.mark.backends("postgresql", "mysql")
def test_status_says_the_state_schema_cannot_be_read_not_that_it_is_missing(cell, backend):
    revisions.upgrade(parse_url(cell.url))
    select = (
        ["GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}"]
        if backend == "postgresql"
        else ["GRANT SELECT ON `{db}`.* TO '{user}'@'%'"]
    )
    with restricted_user(cell, select) as (user, _password, url):
        result = cli("schema", "status", "--db", url)
        assert result.exit_code == 127, result.output
        assert result.stdout, result.stderr
        assert "not created yet" not in result.stdout
        state = cell.location.schema
        if backend == "postgresql":
            assert "exists, but this user cannot read it" in result.stdout
            expected = f"GRANT USAGE ON SCHEMA {state} TO {user};"
        else:
            assert "not visible to this user" in result.stdout
            expected = f"GRANT SELECT ON `{state}`.* TO '{user}'@'%';"
        assert expected in result.stdout, result.stdout
        # Granting what it printed for reading is enough to see the revision.
        reads = [g for g in printed_grants(result.stdout) if state in g and "ALTER" not in g]
        run_as_admin(cell, [g for g in reads if "CREATE" not in g])
        result = cli("schema", "status", "--db", url)
        assert f"revision:        {revisions.head_revision()}" in result.stdout, result.output


# --------------------------------------------------------------------------- schema upgrade


@pytest.mark.backends("postgresql", "mysql")
def test_upgrade_without_alter_exits_127_and_changes_nothing(bare_cell, backend):
    """Today's main created the ledger and recorded 0001 before failing (MariaDB)."""
    bare_cell.build(with_host=False)
    if backend == "postgresql":
        # Reads Nova, may create the state schema, owns nothing: no ALTER TABLE.
        grants = [
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}",
            "REVOKE CREATE ON DATABASE {db} FROM PUBLIC",
        ]
    else:
        grants = [
            "GRANT SELECT ON `{db}`.* TO '{user}'@'%'",
            "GRANT ALL PRIVILEGES ON `{state}`.* TO '{user}'@'%'",
        ]
    with restricted_user(bare_cell, grants) as (user, password, url):
        before = catalog_snapshot(bare_cell)
        result = cli("schema", "upgrade", "--db", url)
        assert result.exit_code == 127, result.output
        assert catalog_snapshot(bare_cell) == before  # no state schema, ledger or version row
        if backend == "postgresql":
            message = one_line_refusal(
                result,
                "ownership (ALTER TABLE ADD COLUMN and CREATE INDEX) on instance_actions_events",
                "ownership (ALTER TABLE ADD COLUMN) on shadow_instance_actions_events",
                f"GRANT CREATE ON DATABASE {bare_cell.sa_url.database} TO {user};",
                "nothing was changed",
            )
        else:
            db = bare_cell.sa_url.database
            message = one_line_refusal(
                result,
                f"GRANT ALTER ON `{db}`.`instance_actions_events` TO '{user}'@'%';",
                f"GRANT ALTER ON `{db}`.`shadow_instance_actions_events` TO '{user}'@'%';",
                "nothing was changed",
            )
        assert password not in result.output
        assert bare_cell.state_table_names() == set()
        if backend == "mysql":
            # The GRANTs it printed are enough.
            run_as_admin(bare_cell, printed_grants(message))
            result = cli("schema", "upgrade", "--db", url)
            assert result.exit_code == 0, result.output
            assert "host" in bare_cell.columns("instance_actions_events")


@pytest.mark.backends("sqlite")
def test_upgrade_of_an_unwritable_sqlite_file_changes_nothing(bare_cell, monkeypatch):
    """Root ignores file modes, so the check is shown an unwritable cell file."""
    bare_cell.build(with_host=False)
    path = os.path.realpath(bare_cell.sa_url.database)
    real = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: (
            False if os.path.realpath(p) == path and mode & os.W_OK else real(p, mode, **kw)
        ),
    )
    before = bare_cell.checksum()
    fingerprint = bare_cell.fingerprint()
    result = cli("schema", "upgrade", "--db", bare_cell.url)
    one_line_refusal(result, f"write permission on file {path}", "nothing was changed")
    assert bare_cell.checksum() == before and bare_cell.fingerprint() == fingerprint
    assert not os.path.exists(bare_cell.location.sqlite_path)


# --------------------------------------------------------------------------- backfill


@pytest.mark.backends("postgresql", "mysql")
def test_backfill_without_update_refused_before_a_run_naming_each_grant(simulated, backend):
    revisions.upgrade(parse_url(simulated.url))
    if backend == "postgresql":
        grants = [
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}",
            "GRANT USAGE ON SCHEMA {state} TO {user}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {state} TO {user}",
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {state} TO {user}",
            "REVOKE TEMP ON DATABASE {db} FROM PUBLIC",
        ]
    else:
        grants = [
            "GRANT SELECT ON `{db}`.* TO '{user}'@'%'",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON `{state}`.* TO '{user}'@'%'",
        ]
    with restricted_user(simulated, grants) as (user, password, url):
        before = catalog_snapshot(simulated)
        result = cli("backfill", "--db", url, "--no-progress", "--max-lag", "60")
        db = simulated.sa_url.database
        if backend == "postgresql":
            message = one_line_refusal(
                result,
                f"GRANT UPDATE (host) ON instance_actions_events TO {user};",
                f"GRANT TEMP ON DATABASE {db} TO {user};",
                f"GRANT pg_monitor TO {user};",
                "nothing was changed",
            )
        else:
            message = one_line_refusal(
                result,
                f"GRANT UPDATE (host) ON `{db}`.`instance_actions_events` TO '{user}'@'%';",
                f"GRANT CREATE TEMPORARY TABLES ON `{db}`.* TO '{user}'@'%';",
                f"GRANT REPLICATION MASTER ADMIN ON *.* TO '{user}'@'%';",
                f"GRANT SLAVE MONITOR ON *.* TO '{user}'@'%';",
                "nothing was changed",
            )
        assert password not in result.output
        assert catalog_snapshot(simulated) == before
        assert simulated.scalar(f"SELECT COUNT(*) FROM {simulated.location.schema}.runs") == 0
        # With the GRANTs it printed, the backfill runs.
        run_as_admin(simulated, printed_grants(message))
        result = cli("backfill", "--db", url, "--no-progress", "--max-lag", "60")
        assert result.exit_code == 0, result.output


@pytest.mark.backends("postgresql", "mysql")
def test_revert_without_update_refused_before_a_revert_run(simulated, backend):
    url_admin = parse_url(simulated.url)
    revisions.upgrade(url_admin)
    assert cli("backfill", "--db", simulated.url, "--no-progress").exit_code == 0
    if backend == "postgresql":
        grants = [
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}",
            "GRANT USAGE ON SCHEMA {state} TO {user}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA {state} TO {user}",
        ]
    else:
        grants = [
            "GRANT SELECT ON `{db}`.* TO '{user}'@'%'",
            "GRANT SELECT ON `{state}`.* TO '{user}'@'%'",
        ]
    with restricted_user(simulated, grants) as (_user, _password, url):
        before = catalog_snapshot(simulated)
        result = cli("revert", "--db", url, "--run", "1", "--no-progress")
        message = one_line_refusal(result, "UPDATE", "INSERT", "nothing was changed")
        assert "instance_actions_events" in message
        assert catalog_snapshot(simulated) == before
        # A dry run only reads: allowed.
        result = cli("revert", "--db", url, "--run", "1", "--dry-run", "--no-progress")
        assert result.exit_code == 0, result.output
        assert catalog_snapshot(simulated) == before


# --------------------------------------------------------------------------- read-only commands


@pytest.mark.backends("postgresql", "mysql")
def test_validate_and_dry_run_need_only_select_and_temporary_tables(simulated, backend):
    """SELECT alone is refused naming the one missing privilege (temporary tables: the
    evidence snapshot); with it, both run and change nothing."""
    if backend == "postgresql":
        grants = [
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}",
            "REVOKE TEMP ON DATABASE {db} FROM PUBLIC",
        ]
    else:
        grants = ["GRANT SELECT ON `{db}`.* TO '{user}'@'%'"]
    with restricted_user(simulated, grants) as (user, _password, url):
        db = simulated.sa_url.database
        expected = (
            f"GRANT TEMP ON DATABASE {db} TO {user};"
            if backend == "postgresql"
            else f"GRANT CREATE TEMPORARY TABLES ON `{db}`.* TO '{user}'@'%';"
        )
        before = catalog_snapshot(simulated)
        for command in (["validate"], ["backfill", "--dry-run", "--no-progress"]):
            result = cli(*command, "--db", url)
            message = one_line_refusal(result, expected, "nothing was changed")
            assert printed_grants(message) == [expected]
        run_as_admin(simulated, [expected])
        for command in (["validate"], ["backfill", "--dry-run", "--no-progress"]):
            result = cli(*command, "--db", url)
            assert result.exit_code == 0, result.output
        assert catalog_snapshot(simulated) == before


# --------------------------------------------------------------------------- the generic message


@pytest.mark.parametrize(
    ("server", "errno_or_state", "message", "statement", "expected"),
    [
        (
            "mysql",
            1044,
            "Access denied for user 'ro'@'%' to database 'nova'",
            "CREATE TEMPORARY TABLE ah_mig AS SELECT 1",
            "GRANT CREATE TEMPORARY TABLES ON `nova`.* TO 'ro'@'%';",
        ),
        (
            "mysql",
            1142,
            "UPDATE command denied to user 'ro'@'%' for table `nova`.`instance_actions_events`",
            "UPDATE instance_actions_events SET host = NULL",
            "GRANT UPDATE ON `nova`.`instance_actions_events` TO 'ro'@'%';",
        ),
        (
            "mysql",
            1227,
            "Access denied; you need (at least one of) the REPLICATION MASTER ADMIN privilege(s) "
            "for this operation",
            "SHOW SLAVE HOSTS",
            "GRANT REPLICATION MASTER ADMIN ON *.* TO 'ro'@'%';",
        ),
        (
            "postgresql",
            "42501",
            "permission denied for table instance_actions_events",
            "UPDATE instance_actions_events SET host = NULL",
            "GRANT UPDATE ON instance_actions_events TO ro;",
        ),
        (
            "postgresql",
            "42501",
            'permission denied to create temporary tables in database "nova"',
            "CREATE TEMPORARY TABLE ah_mig AS SELECT 1",
            "GRANT TEMP ON DATABASE nova TO ro;",
        ),
    ],
)
def test_permission_denied_always_names_the_privilege(
    server, errno_or_state, message, statement, expected
):
    class DriverError(Exception):
        pass

    orig = DriverError(errno_or_state, message) if server == "mysql" else DriverError(message)
    if server == "postgresql":
        orig.sqlstate = errno_or_state
    exc = sa.exc.DBAPIError(statement, {}, orig)
    scheme = "mysql+pymysql" if server == "mysql" else "postgresql+psycopg"
    error = ahb_db.translate_error(exc, parse_url(f"{scheme}://ro:pw@db/nova"))
    assert expected in str(error), str(error)
    assert "grant the privilege named" not in str(error)


# --------------------------------------------------------------------------- roles


@pytest.mark.backends("mysql")
def test_privileges_held_through_a_role_are_seen(bare_cell, backend):
    """information_schema lists only the user's own grants: a MariaDB role's must be read
    too, or a correctly provisioned user would be refused."""
    bare_cell.build(with_host=False)
    role = f"ahb_role_{uuid.uuid4().hex[:8]}"
    db, state = bare_cell.sa_url.database, bare_cell.location.schema
    run_as_admin(
        bare_cell,
        [
            f"CREATE ROLE {role}",
            f"GRANT ALTER ON `{db}`.`instance_actions_events` TO {role}",
            f"GRANT ALTER ON `{db}`.`shadow_instance_actions_events` TO {role}",
            f"GRANT CREATE, INDEX, SELECT, INSERT, UPDATE, DELETE ON `{state}`.* TO {role}",
        ],
    )
    try:
        grants = [
            "GRANT SELECT ON `{db}`.* TO '{user}'@'%'",
            f"GRANT {role} TO '{{user}}'@'%'",
            f"SET DEFAULT ROLE {role} FOR '{{user}}'@'%'",
        ]
        with restricted_user(bare_cell, grants) as (_user, _password, url):
            result = cli("schema", "status", "--db", url)
            assert result.exit_code == 1, result.output  # upgrade pending, and allowed
            assert "missing privilege" not in result.stdout
            result = cli("schema", "upgrade", "--db", url)
            assert result.exit_code == 0, result.output
            assert "host" in bare_cell.columns("instance_actions_events")
    finally:
        run_as_admin(bare_cell, [f"DROP ROLE {role}"])


def test_mysql_grant_lines_and_database_patterns():
    from actionhost_backfill.dialects.mysql_privileges import Grants, _like

    assert _like("nova\\_%", "nova_cell1") and not _like("nova\\_%", "novaXcell1")
    assert _like("nova_actionhost", "novaXactionhost")  # an unescaped _ is a wildcard
    assert not _like("nova", "nova_actionhost")
    grants = Grants("u", "%")
    for line in (
        "GRANT USAGE ON *.* TO `r`",
        "GRANT SELECT, UPDATE (`host`, `id`) ON `nova`.`instance_actions_events` TO `r`",
        "GRANT ALL PRIVILEGES ON `nova\\_actionhost`.* TO `r`",
        "GRANT SLAVE MONITOR ON *.* TO `r`",
        "GRANT `other` TO `r`",
        "GRANT EXECUTE ON PROCEDURE `nova`.`p` TO `r`",
    ):
        grants._add_grant_line(line)
    assert grants.has("SELECT", "nova", "instance_actions_events")
    assert grants.has("UPDATE", "nova", "instance_actions_events", "host")
    assert not grants.has("UPDATE", "nova", "instance_actions_events")
    assert not grants.has("SELECT", "nova", "instances")
    assert grants.has("CREATE", "nova_actionhost") and grants.has(
        "DELETE", "nova_actionhost", "runs"
    )
    assert grants.has_global("SLAVE MONITOR") and not grants.has_global("PROCESS")
