"""Every command, run with a password-bearing URL: the password appears nowhere.

Not in stdout, stderr, --json, --debug tracebacks or logs, on success and on
failure.  PostgreSQL accepts any password from 127.0.0.1 (trust); MariaDB gets
a user whose password it checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import uuid

import pytest
import sqlalchemy as sa

from actionhost_backfill.redact import scrub
from actionhost_backfill.sim.simulate import SimulationOptions
from tests import harness

from .common import ROOT, simulated

SECRET = "s3cr3t-Pw-42"


@pytest.fixture
def secret_url(blank_db, backend):
    cell = simulated(blank_db, SimulationOptions(seed=6, events=1200, hosts=5, days=90))
    cell.dispose()
    if backend == "postgresql":
        yield (
            harness.Cell(blank_db).sa_url.set(password=SECRET).render_as_string(hide_password=False)
        )
        return
    user = f"ahb_s_{uuid.uuid4().hex[:6]}"
    database = harness.Cell(blank_db).sa_url.database
    admin = harness.admin_engine("mysql")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{SECRET}'")
        conn.exec_driver_sql(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%%'")
        conn.exec_driver_sql(f"GRANT ALL PRIVILEGES ON `{database}_actionhost`.* TO '{user}'@'%%'")
    try:
        yield (
            harness.Cell(blank_db)
            .sa_url.set(username=user, password=SECRET)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actionhost_backfill", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.backends("postgresql", "mysql")
def test_password_never_printed(secret_url, tmp_path):
    engine = sa.create_engine(secret_url)
    with engine.connect() as conn:
        instance, request_id = conn.execute(
            sa.text("SELECT instance_uuid, request_id FROM instance_actions ORDER BY id LIMIT 1")
        ).one()
    engine.dispose()
    unreachable = sa.engine.make_url(secret_url).set(port=1).render_as_string(hide_password=False)
    missing = (
        sa.engine.make_url(secret_url).set(database="nope_db").render_as_string(hide_password=False)
    )
    api = f"sqlite:///{tmp_path / 'api.sqlite'}"
    api_engine = sa.create_engine(api)
    with api_engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE cell_mappings (id INTEGER PRIMARY KEY, uuid TEXT, name TEXT, "
            "database_connection TEXT, disabled BOOLEAN)"
        )
        conn.execute(
            sa.text("INSERT INTO cell_mappings VALUES (1, 'u1', 'cell1', :c, 0)"), {"c": secret_url}
        )
        conn.execute(
            sa.text("INSERT INTO cell_mappings VALUES (2, 'u2', 'down', :c, 0)"),
            {"c": unreachable},
        )
    api_engine.dispose()
    conf = tmp_path / "nova.conf"
    conf.write_text(f"[database]\nconnection = {secret_url}\n[api_database]\nconnection = {api}\n")

    invocations = [
        ["schema", "status", "--db", secret_url],
        ["schema", "status", "--db", secret_url, "--json"],
        ["schema", "upgrade", "--db", secret_url, "--json"],
        ["schema", "sql", "--db", secret_url],
        ["backfill", "--db", secret_url, "--dry-run", "--json"],
        ["--debug", "backfill", "--db", secret_url, "--max-rows", "200"],
        ["backfill", "--db", secret_url, "--json"],
        ["status", "--db", secret_url],
        ["status", "--db", secret_url, "--json"],
        ["verify", "--db", secret_url, "--json"],
        ["revert", "--run", "1", "--db", secret_url, "--dry-run", "--json"],
        ["events", "list", instance, "--db", secret_url, "--json"],
        ["events", "show", instance, request_id, "--db", secret_url],
        ["failures", "--all-time", "--db", secret_url, "--json"],
        ["accuracy", "--db", secret_url, "--json"],
        ["simulate", "--db", secret_url],
        ["demo", "--db", secret_url],
        ["--debug", "backfill", "--db", unreachable],
        ["--debug", "status", "--db", missing],
        ["status", "--nova-conf", str(conf)],
        ["--debug", "status", "--all-cells", "--nova-conf", str(conf), "--json"],
        ["verify", "--all-cells", "--api-db", api],
    ]
    exits = []
    for args in invocations:
        done = _run(*args)
        exits.append(done.returncode)
        assert SECRET not in done.stdout, args
        assert SECRET not in done.stderr, args
    with_env = _run("status", env={"ACTIONHOST_DB_URL": secret_url})
    assert SECRET not in with_env.stdout + with_env.stderr
    assert 0 in exits and ExitCode_values_seen(exits)


def ExitCode_values_seen(exits: list[int]) -> bool:
    """Successes and failures were both exercised."""
    return any(code != 0 for code in exits)


# --------------------------------------------------------------------------- masking by structure

#: Passwords that are also ordinary text: digits of 127.0.0.1 and of counts, a
#: letter of every word, Nova's and the servers' usual names.  "local" is part of
#: the host (localhost) and of the database name; "actionhost" of the database
#: name and of the state schema's name on every backend.
PASSWORDS = ["1", "a", "cell", "nova", "root", "postgres", "127", "local", "actionhost"]
#: The same scenario with this password is the reference: masked output must not differ.
NEUTRAL = "Zq-neutral-9"


def _credential_forms(password: str) -> list[str]:
    """The ways a password shows as a credential (URL userinfo, key=value, dict item)."""
    forms = []
    for p in {password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password)}:
        forms += [f":{p}@", f"password={p}", f"password='{p}'", f"'password': '{p}'"]
    return forms


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "mysql+pymysql://nova:{q}@127.0.0.1:3306/nova_cell1",
            "nova:***@127.0.0.1:3306/nova_cell1",
        ),
        (
            "postgresql://u:{q}@localhost/postgres?password={q}",
            "u:***@localhost/postgres?password=***",
        ),
        (
            "URL postgres://u:{raw}@localhost/postgres?password={q}, as typed",
            "u:***@localhost/postgres?password=***, as typed",
        ),
        (
            "host='127.0.0.1' password='{pw}' dbname=nova",
            "host='127.0.0.1' password='***' dbname=nova",
        ),
        ("{{'host': 'cell', 'password': '{pw}', 'db': 'nova'}}", "'password': '***', 'db': 'nova'"),
    ],
)
@pytest.mark.parametrize("password", [*PASSWORDS, "p@ss:w/rd", "with space"])
def test_scrub_masks_credentials_only(text, masked, password):
    raw = password if " " not in password else urllib.parse.quote(password)  # never raw in a URL
    line = text.format(pw=password, q=urllib.parse.quote(password, safe=""), raw=raw)
    ordinary = (
        "database ux_cell3_actionhost on 127.0.0.1: 3,141 rows, GRANT postgres TO ux_root_pg; "
        "nova a localhost local_actionhost (using password: YES)"
    )
    assert scrub(ordinary) == ordinary  # nothing else is ever altered
    cleaned = scrub(f"{ordinary} {line}")
    assert cleaned.startswith(ordinary) and masked in cleaned
    assert not any(form in cleaned for form in _credential_forms(password))
    document = json.dumps({"database": line, "count": 3141, "host": "127.0.0.1"})
    assert json.loads(scrub(document))["count"] == 3141  # --json still parses


class Target:
    """A cell on ``backend`` reached as a user whose password the test sets."""

    def __init__(self, backend: str, tmp_path, request):
        self.backend = backend
        tag = uuid.uuid4().hex[:6]
        self.user = f"ahb_pw_{tag}"
        self.database = f"ahb_local_actionhost_{tag}"
        if backend == "sqlite":
            folder = tmp_path / "local"
            folder.mkdir()
            self.sqlite = f"sqlite:///{folder / 'nova_cell1.sqlite'}"
            sa.create_engine(self.sqlite).connect().close()
            return
        self.admin = harness.admin_engine(backend)
        request.addfinalizer(self.cleanup)
        with self.admin.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{NEUTRAL}'")
                conn.exec_driver_sql(f'CREATE DATABASE "{self.database}" OWNER {self.user}')
            else:
                conn.exec_driver_sql(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8")
                for host in ("%%", "localhost"):  # '%%': the driver formats even without parameters
                    conn.exec_driver_sql(
                        f"CREATE USER '{self.user}'@'{host}' IDENTIFIED BY '{NEUTRAL}'"
                    )
                    for schema in (self.database, f"{self.database}_actionhost"):
                        conn.exec_driver_sql(
                            f"GRANT ALL PRIVILEGES ON `{schema}`.* TO '{self.user}'@'{host}'"
                        )

    def set_password(self, password: str) -> None:
        if self.backend == "sqlite":
            return
        literal = "'" + password.replace("'", "''") + "'"  # DDL takes no bound parameters
        with self.admin.connect() as conn:
            if self.backend == "postgresql":
                conn.exec_driver_sql(f"ALTER ROLE {self.user} PASSWORD {literal}")
            else:
                for host in ("%%", "localhost"):
                    conn.exec_driver_sql(
                        f"ALTER USER '{self.user}'@'{host}' IDENTIFIED BY {literal.replace('%', '%%')}"
                    )

    def url(self, password: str) -> str:
        if self.backend == "sqlite":
            return self.sqlite
        server = sa.engine.make_url(harness.admin_url_for(self.backend))
        return server.set(
            host="localhost", username=self.user, password=password, database=self.database
        ).render_as_string(hide_password=False)

    def cleanup(self) -> None:
        harness.drop_database(self.backend, self.database)
        with self.admin.connect() as conn:
            if self.backend == "postgresql":
                conn.exec_driver_sql(f"DROP ROLE IF EXISTS {self.user}")
            else:
                for host in ("%%", "localhost"):
                    conn.exec_driver_sql(f"DROP USER IF EXISTS '{self.user}'@'{host}'")
        self.admin.dispose()


def _invocations(target: Target, password: str, tmp_path) -> list[list[str]]:
    """Every kind of output a password could reach: reports, --json, errors, --debug, nova.conf."""
    db = target.url(password)
    down = f"mysql+pymysql://nova:{urllib.parse.quote(password)}@127.0.0.1:1/nova_local"
    api = tmp_path / "api_local.sqlite"
    api.unlink(missing_ok=True)
    engine = sa.create_engine(f"sqlite:///{api}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE cell_mappings (id INTEGER PRIMARY KEY, uuid TEXT, name TEXT, "
            "database_connection TEXT, disabled BOOLEAN)"
        )
        conn.execute(
            sa.text(
                "INSERT INTO cell_mappings VALUES (1, 'u1', 'cell1', :c, 0), (2, 'u2', 'down', :d, 0)"
            ),
            {"c": db, "d": down},
        )
    engine.dispose()
    conf = tmp_path / "nova.conf"
    conf.write_text(
        f"[database]\nconnection = {db}\n[api_database]\nconnection = sqlite:///{api}\n"
    )
    wrong = target.url(password + "x") if target.backend == "mysql" else down
    return [
        ["status", "--db", db],
        ["status", "--db", db, "--json"],
        ["schema", "status", "--db", db, "--json"],
        ["verify", "--db", db, "--json"],
        ["failures", "--all-time", "--db", db],
        ["failures", "--all-time", "--db", db, "--json"],
        ["status", "--nova-conf", str(conf)],
        ["--debug", "status", "--all-cells", "--nova-conf", str(conf), "--json"],
        ["status", "--all-cells", "--nova-conf", str(conf)],
        ["--debug", "status", "--db", down],
        ["--debug", "status", "--db", down, "--json"],
        ["--debug", "status", "--db", wrong, "--json"],
        ["status", "--db", f"mysql+nosuchdriver://nova:{password}@localhost/nova_local"],
        ["status", "--db", f"mysql://nova:{password}@localhost"],
    ]


@pytest.mark.parametrize("password", PASSWORDS)
def test_masking_never_alters_output(backend, server_url, tmp_path, request, password):
    """With any password, output is the same as with another password, and never shows it."""
    target = Target(backend, tmp_path, request)
    target.set_password(password)
    cell = target.url(password)
    simulated(cell, SimulationOptions(seed=9, events=400, hosts=4, days=60)).dispose()

    def run(pw: str) -> list[tuple]:
        seen = []
        for args in _invocations(target, pw, tmp_path):
            result = harness.cli(*args)
            seen.append((args, result.exit_code, result.stdout, result.stderr))
        return seen

    filled = harness.cli("backfill", "--db", cell, "--json", "--no-progress")
    assert filled.exit_code == 0, filled.stderr
    outputs = run(password)
    for args, _code, stdout, stderr in [(["backfill"], 0, filled.stdout, filled.stderr), *outputs]:
        for form in _credential_forms(password):
            assert form not in stdout + stderr, (args, form)
        if "--json" in args or args == ["backfill"]:
            json.loads(stdout)  # every --json document parses, errors included
    assert {code for _, code, _, _ in outputs} >= {0, 127}  # successes and failures seen

    target.set_password(NEUTRAL)
    reference = run(NEUTRAL)
    for (args, *got), (_, *expected) in zip(outputs, reference, strict=True):
        assert got == expected, args  # nothing but the password differed
    assert "localhost" in outputs[0][2] or backend == "sqlite"
    assert "ahb_local_actionhost_" in outputs[1][2] or backend == "sqlite"
