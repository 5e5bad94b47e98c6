"""The state schema outlives its cell database: a DBA restores the cell from a backup.

The state lives beside the cell (a PostgreSQL schema, a MariaDB database, an
SQLite file), so restoring only the Nova schema from a dump taken before the
upgrade leaves the toolkit's version table, runs and checkpoints describing
another copy of the cell.  The backups and restores here are the operators'
own tools: ``pg_dump``/``psql`` of the ``public`` schema, ``mariadb-dump`` /
``mariadb`` of the cell database, SQLite's online backup API.

The story, on each backend: take a backup, upgrade, backfill part of the
history, restore the backup.  Then ``schema status`` exits 4 naming the missing
index, a resumed backfill exits 4 naming ``--new-run`` and changes nothing,
``schema upgrade`` rebuilds the index although the version table is at head,
and ``backfill --new-run`` reaches exactly the hosts and audit of a straight
run on an untouched copy.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.nova.catalog import HOST_INDEX
from actionhost_backfill.sim.simulate import simulate
from tests import harness
from tests.harness import another_database

from .common import HISTORY, ROOT, audit_state, backfill_process, table_state


def _backup(cell: harness.Cell, where) -> object:
    """Back up the cell database only (never the state schema), as a DBA would."""
    url = cell.sa_url
    if cell.backend == "sqlite":
        target = where / "cell-backup.sqlite"
        with sqlite3.connect(url.database) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        return target
    dump = where / "cell-backup.sql"
    if cell.backend == "postgresql":
        command = ["pg_dump", "--schema=public", "--no-owner", "--file", str(dump), _libpq(url)]
    else:
        command = [*_mariadb(url, "mariadb-dump"), "--single-transaction", f"--result-file={dump}"]
        command.append(url.database)
    subprocess.run(command, check=True, capture_output=True, text=True)
    return dump


def _restore(cell: harness.Cell, backup) -> None:
    """Drop the cell's Nova schema and load the backup; the state stays as it was."""
    cell.dispose()
    url = cell.sa_url
    if cell.backend == "sqlite":
        shutil.copyfile(backup, url.database)
        return
    if cell.backend == "postgresql":
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", _libpq(url)]
        subprocess.run([*psql, "-c", "DROP SCHEMA public CASCADE"], check=True, capture_output=True)
        subprocess.run([*psql, "-f", str(backup)], check=True, capture_output=True)
        return
    admin = harness.admin_engine("mysql")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE `{url.database}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{url.database}` CHARACTER SET utf8")
    admin.dispose()
    with open(backup) as dump:
        subprocess.run(
            [*_mariadb(url, "mariadb"), url.database], stdin=dump, check=True, capture_output=True
        )


def _libpq(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _mariadb(url, tool: str) -> list[str]:
    return [tool, "-h", url.host or "127.0.0.1", "-P", str(url.port or 3306), "-u", url.username]


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    """A CLI command in its own process, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "actionhost_backfill", *args, "--db", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run_states(cell: harness.Cell) -> list[tuple]:
    schema = cell.location.schema
    return cell.rows(
        f"SELECT r.id, r.state, c.event_table, c.last_id, c.batches FROM {schema}.runs r "
        f"JOIN {schema}.checkpoints c ON c.run_id = r.id ORDER BY r.id, c.event_table"
    )


def test_restored_cell_is_detected_and_converged(backend, blank_db, server_url, tmp_path, request):
    cell = harness.Cell(blank_db)
    request.addfinalizer(cell.dispose)
    reference = harness.Cell(another_database(backend, server_url, tmp_path, request, "reference"))
    request.addfinalizer(reference.dispose)
    for copy in (cell, reference):
        simulate(parse_url(copy.url), HISTORY)
    backup = _backup(cell, tmp_path)

    upgraded = _cli(cell.url, "schema", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    partial = backfill_process(cell.url, "--batch-size", "100", "--max-rows", "1500")
    _out, err = partial.communicate(timeout=600)
    assert partial.returncode == 1, err
    interrupted = _run_states(cell)
    assert [state for _, state, *_ in interrupted] == ["interrupted"] * len(interrupted)

    _restore(cell, backup)
    restored = table_state(cell)
    assert restored == table_state(reference), "the backup predates the backfill"
    assert HOST_INDEX not in cell.index_names()

    # schema status: the version table says head, the database lacks the index.
    status = _cli(cell.url, "schema", "status", "--json")
    assert status.returncode == 4, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["current_revision"] == report["head_revision"]
    assert len(report["drift"]) == 1 and HOST_INDEX in report["drift"][0]
    assert any(line.startswith("re-ensure: create index") for line in report["plan"])

    # A resumed backfill would skip every row below its checkpoint: refused, nothing changed.
    resumed = backfill_process(cell.url)
    _out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 4, err
    assert len(err.strip().splitlines()) == 1, err
    assert "--new-run" in err and "NULL here" in err, err
    assert table_state(cell) == restored
    assert _run_states(cell) == interrupted

    # schema upgrade converges whatever the version table says.
    upgraded = _cli(cell.url, "schema", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "created index" in upgraded.stdout, upgraded.stdout
    assert HOST_INDEX in cell.index_names()
    assert _cli(cell.url, "schema", "status").returncode == 0

    # Starting over reaches what a straight run on an untouched copy reaches.
    fresh = backfill_process(cell.url, "--new-run", "--batch-size", "100")
    _out, err = fresh.communicate(timeout=600)
    assert fresh.returncode == 0, err
    straight = run_backfill(parse_url(_upgraded(reference)), BackfillOptions(batch_size=100))
    assert straight.outcome == "complete"
    assert table_state(cell) == table_state(reference)
    new_run = max(run_id for run_id, *_ in _run_states(cell))
    assert _audit_of(cell, new_run) == audit_state(reference)
    verify = _cli(cell.url, "verify", "--run", str(new_run))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _upgraded(cell: harness.Cell) -> str:
    result = _cli(cell.url, "schema", "upgrade")
    assert result.returncode == 0, result.stderr
    return cell.url


def _audit_of(cell: harness.Cell, run_id: int) -> list[tuple]:
    return cell.rows(
        f"SELECT event_table, event_id, host, rule, outcome FROM {cell.location.schema}.audit "
        f"WHERE run_id = {int(run_id)} ORDER BY event_table, event_id, outcome"
    )


@pytest.mark.backends("sqlite", "postgresql", "mysql")
def test_schema_upgrade_at_head_recreates_missing_state_tables(cell):
    """Re-ensuring covers the state tables too (a DBA dropped one to reclaim space)."""
    assert _cli(cell.url, "schema", "upgrade").returncode == 0
    schema = cell.location.schema
    cell.execute(f"DROP TABLE {schema}.run_counts")
    status = _cli(cell.url, "schema", "status", "--json")
    assert status.returncode == 4, status.stdout
    assert "run_counts" in " ".join(json.loads(status.stdout)["drift"])
    upgraded = _cli(cell.url, "schema", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "created the missing state tables: run_counts" in upgraded.stdout
    assert "run_counts" in cell.state_table_names()
    assert _cli(cell.url, "schema", "status").returncode == 0


def test_revert_on_a_restored_cell_says_the_rows_are_null_already(
    backend, blank_db, tmp_path, request
):
    cell = harness.Cell(blank_db)
    request.addfinalizer(cell.dispose)
    simulate(parse_url(cell.url), HISTORY)
    backup = _backup(cell, tmp_path)
    assert _cli(cell.url, "schema", "upgrade").returncode == 0
    run = run_backfill(parse_url(cell.url), BackfillOptions())
    assert run.outcome == "complete" and run.filled > 100
    _restore(cell, backup)
    before = table_state(cell)
    reverted = _cli(cell.url, "revert", "--run", str(run.run_id), "--json", "--no-progress")
    assert reverted.returncode == 0, reverted.stderr
    report = json.loads(reverted.stdout)
    assert (report["reverted"], report["kept_changed"]) == (0, 0)
    assert report["already_null"] == run.filled
    assert table_state(cell) == before
