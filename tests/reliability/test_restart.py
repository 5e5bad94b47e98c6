"""A real server restart in the middle of a backfill and of a revert (throwaway servers).

The run in flight loses its connection: it exits 2 with one line saying so and
how to resume; once the server is back, the same command resumes and reaches
exactly the state of an uninterrupted run (every host, every audit row).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from tests.harness import wait_for_batches
from tests.topology.servers import MariaDB, PostgreSQL

from .common import ROOT, audit_state, backfill_process, simulated, table_state


@pytest.fixture(scope="module")
def servers():
    base = Path(tempfile.mkdtemp(prefix="ahb-restart-"))
    os.chmod(base, 0o755)  # the PostgreSQL server runs as the postgres user
    started: dict = {}
    try:
        yield base, started
    finally:
        for server in started.values():
            server.remove()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def _server(servers, backend: str):
    base, started = servers
    if backend not in started:
        if backend == "postgresql":
            server = PostgreSQL(base / "postgresql")
            server.init()
        else:
            server = MariaDB(base / "mariadb")
            server.base.mkdir(parents=True)
            server.install()
        server.start()
        started[backend] = server
    return started[backend]


def _database(server, name: str) -> str:
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return str(sa.engine.make_url(server.url).set(database=name))


def _restart(server) -> None:
    server.stop()  # PostgreSQL: fast shutdown; MariaDB: SIGTERM (clients see the server go)
    server.start()


def _cli(url: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "actionhost_backfill", *args, "--db", url, "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.backends("postgresql", "mysql")
def test_server_restart_mid_backfill_then_resume_equals_straight_run(servers, backend):
    server = _server(servers, backend)
    reference = simulated(_database(server, "reference_bf"))
    victim = simulated(_database(server, "victim_bf"))
    try:
        assert run_backfill(parse_url(reference.url), BackfillOptions(batch_size=20)).outcome == (
            "complete"
        )
        child = backfill_process(victim.url, "--batch-size", "20", "--sleep", "0.1")
        wait_for_batches(victim, 3, child)
        _restart(server)
        _out, err = child.communicate(timeout=120)
        assert child.returncode == 2, err
        assert len(err.strip().splitlines()) == 1, err
        assert "run the same command again" in err
        resumed = backfill_process(victim.url, "--batch-size", "20")
        _out, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err
        assert table_state(victim) == table_state(reference)
        assert audit_state(victim) == audit_state(reference)
    finally:
        reference.dispose()
        victim.dispose()


@pytest.mark.backends("postgresql", "mysql")
def test_server_restart_mid_revert_then_resume_reverts_everything(servers, backend):
    server = _server(servers, backend)
    cell = simulated(_database(server, "victim_rv"))
    try:
        before = table_state(cell)
        run = run_backfill(parse_url(cell.url), BackfillOptions())
        assert run.outcome == "complete" and run.filled > 100
        child = _cli(
            cell.url, "revert", "--run", str(run.run_id), "--batch-size", "10", "--sleep", "0.1"
        )
        wait_for_batches(cell, 3, child, kind="revert")
        _restart(server)
        _out, err = child.communicate(timeout=120)
        assert child.returncode == 2, err
        assert len(err.strip().splitlines()) == 1 and "run the same command again" in err, err
        resumed = _cli(cell.url, "revert", "--run", str(run.run_id))
        _out, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err
        assert table_state(cell) == before, "every filled host back to NULL, nothing else"
    finally:
        cell.dispose()
