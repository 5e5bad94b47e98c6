"""Every command, run with a password-bearing URL: the password appears nowhere.

Not in stdout, stderr, --json, --debug tracebacks or logs, on success and on
failure.  PostgreSQL accepts any password from 127.0.0.1 (trust); MariaDB gets
a user whose password it checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

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
