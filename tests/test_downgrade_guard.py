"""A downgrade never throws the undo away by accident.

Going below ``0003_backfill_state`` drops the runs and their audit, the only
record ``revert`` can undo a backfill from.  It is refused, before anything is
dropped, while a runner holds the lock (exit 3, whatever the flags) and while a
run has hosts not reverted (exit 127, unless ``--discard-audit``); the CLI and
stock ``alembic downgrade`` alike.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import RunnerBusy
from actionhost_backfill.nova.catalog import HOST_INDEX
from actionhost_backfill.schema import ddl, revisions
from actionhost_backfill.state.lease import RunnerLock
from tests.harness import Cell, cli, prepare_scenarios, wait_for_batches
from tests.test_offline_sql import run_script
from tests.test_stock_alembic import alembic

STATE_TABLES = {"runs", "audit", "checkpoints", "run_counts", "runner_lease"}


def _prepare(cell: Cell, copies: int = 1) -> None:
    prepare_scenarios(cell, copies=copies)


@contextmanager
def _live_runner(cell: Cell, run_id: int):
    """The runner lease held for run ``run_id``, as a live backfill elsewhere holds it."""
    engine = create_engine(parse_url(cell.url), cell.location, attach="if-exists")
    lock = RunnerLock(engine, cell.location)
    lock.acquire(run_id)
    try:
        yield
    finally:
        lock.release()
        engine.dispose()


def _intact(cell: Cell) -> None:
    assert cell.state_table_names() >= STATE_TABLES
    assert HOST_INDEX in cell.index_names()
    with cell.engine().connect() as conn:
        assert revisions.current_revision(conn, cell.location) == "0003_backfill_state"


def _snapshot(cell: Cell) -> tuple:
    """The Nova tables, the index and every run and audit row (the lease row aside:
    the refused downgrade took and gave back the runner lock)."""
    schema = cell.location.schema
    return (
        cell.checksum(state=False),
        cell.index_names(),
        cell.rows(f"SELECT id, kind, state FROM {schema}.runs ORDER BY id"),
        cell.rows(
            f"SELECT run_id, event_table, event_id, host, outcome, reverted_by FROM {schema}.audit "
            "ORDER BY run_id, event_table, event_id"
        ),
    )


def _backfilled(cell: Cell) -> tuple[int, int]:
    """A complete backfill; returns its run id and how many hosts it wrote."""
    result = run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    assert result.outcome == "complete"
    filled = cell.scalar(
        f"SELECT COUNT(*) FROM {cell.location.schema}.audit "
        "WHERE run_id = :r AND outcome = 'filled'",
        {"r": result.run_id},
    )
    assert filled > 0
    return result.run_id, filled


def test_downgrade_refused_while_a_backfill_runs(cell, backend):
    _prepare(cell, copies=2)
    command = [
        sys.executable,
        "-m",
        "actionhost_backfill",
        "backfill",
        "--db",
        cell.url,
        "--batch-size",
        "5",
        "--sleep",
        "0.3",
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_batches(cell, 1, process)
        for extra in ([], ["--discard-audit"]):
            result = cli("schema", "downgrade", "base", "--db", cell.url, *extra)
            assert result.exit_code == 3, result.output
            assert "refused to drop the backfill state" in result.stderr
            assert "another backfill or revert is running" in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
            _intact(cell)
        assert process.poll() is None, "the backfill still runs"
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    # Stopped on request at its checkpoint, not killed by a missing table.
    assert process.returncode == 1, (out, err)
    _intact(cell)


def test_discard_audit_never_overrides_a_live_runner(cell, backend):
    _prepare(cell)
    _backfilled(cell)
    with _live_runner(cell, 42):
        result = cli("schema", "downgrade", "base", "--db", cell.url, "--discard-audit")
        assert result.exit_code == 3, result.output
        assert "run 42" in result.stderr and "never overrides a live runner" in result.stderr
        done = alembic("-x", f"db={cell.url}", "-x", "discard_audit=true", "downgrade", "base")
        assert done.returncode != 0
        assert "refused to drop the backfill state" in done.stdout + done.stderr
        _intact(cell)


def test_downgrade_refused_after_an_unreverted_run(cell, backend):
    _prepare(cell)
    run_id, filled = _backfilled(cell)
    before = _snapshot(cell)
    checksum = cell.checksum()
    for target in ("base", "-1", "0002_host_index"):
        result = cli("schema", "downgrade", "--db", cell.url, "--", target)
        assert result.exit_code == 127, result.output
        assert f"run {run_id} ({filled} hosts)" in result.stderr
        assert "--discard-audit" in result.stderr and "nothing was changed" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    done = alembic("-x", f"db={cell.url}", "downgrade", "base")
    assert done.returncode != 0
    assert f"run {run_id} ({filled} hosts)" in done.stdout + done.stderr
    _intact(cell)
    assert _snapshot(cell) == before, "nothing was dropped, not even the index"
    assert cell.checksum() == checksum, "nothing was written, not even the lease row"
    # Above the state revision nothing is at risk: a no-op downgrade to head is allowed.
    assert cli("schema", "downgrade", "head", "--db", cell.url).exit_code == 0


def test_discard_audit_drops_the_state(cell, backend):
    _prepare(cell)
    run_id, _ = _backfilled(cell)
    assert cli("schema", "downgrade", "base", "--db", cell.url).exit_code == 127
    result = cli("schema", "downgrade", "base", "--db", cell.url, "--discard-audit")
    assert result.exit_code == 0, result.output
    assert f"discarding the audit of run {run_id}" in result.stdout
    assert not STATE_TABLES & cell.state_table_names()
    assert HOST_INDEX not in cell.index_names()


def test_stock_alembic_discard_audit_drops_the_state(cell, backend):
    _prepare(cell)
    _backfilled(cell)
    assert alembic("-x", f"db={cell.url}", "downgrade", "base").returncode != 0
    _intact(cell)
    done = alembic("-x", f"db={cell.url}", "-x", "discard_audit=true", "downgrade", "base")
    assert done.returncode == 0, done.stderr
    assert not STATE_TABLES & cell.state_table_names()


def test_downgrade_allowed_once_every_run_is_reverted(cell, backend):
    _prepare(cell)
    first, _ = _backfilled(cell)
    # Someone changed one of the written hosts since: revert keeps it, and the run
    # still counts as reverted (that value is no longer the backfill's).
    event = cell.scalar(
        f"SELECT MIN(event_id) FROM {cell.location.schema}.audit "
        "WHERE outcome = 'filled' AND event_table = 'instance_actions_events'"
    )
    cell.execute("UPDATE instance_actions_events SET host = 'operator' WHERE id = :i", {"i": event})
    assert cli("schema", "downgrade", "base", "--db", cell.url).exit_code == 127
    _intact(cell)
    assert cli("revert", "--run", str(first), "--db", cell.url).exit_code == 0
    result = cli("schema", "downgrade", "base", "--db", cell.url)
    assert result.exit_code == 0, result.output
    assert not STATE_TABLES & cell.state_table_names()


def test_no_backfill_can_start_between_the_check_and_the_drop(cell, backend, monkeypatch):
    _prepare(cell)
    seen = []
    original = ddl.drop_backfill_state

    def drop_while_a_backfill_tries_to_start(tables: dict) -> None:
        with pytest.raises(RunnerBusy):
            run_backfill(parse_url(cell.url), BackfillOptions())
        seen.append("refused")
        original(tables)

    monkeypatch.setattr(ddl, "drop_backfill_state", drop_while_a_backfill_tries_to_start)
    result = cli("schema", "downgrade", "base", "--db", cell.url)
    assert result.exit_code == 0, result.output
    assert seen == ["refused"]
    assert not STATE_TABLES & cell.state_table_names()


def _downgrade_script(cell: Cell, *extra: str) -> str:
    dialect = "mariadb" if cell.backend == "mysql" else cell.backend
    result = cli("schema", "sql", "--dialect", dialect, "--db", cell.url, "--downgrade", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_offline_downgrade_script_refuses_runs_not_reverted(cell, backend):
    _prepare(cell)
    run_id, filled = _backfilled(cell)
    before = _snapshot(cell)
    url = parse_url(cell.url)
    ok, error = run_script(backend, url, _downgrade_script(cell))
    assert not ok
    assert {
        "postgresql": f"run {run_id} ({filled} hosts) wrote hosts that are not reverted",
        "mysql": "refused_to_drop_the_audit_of_runs_not_reverted",
        "sqlite": "refused_runs_not_reverted_use_discard_audit",
    }[backend] in error
    _intact(cell)
    assert _snapshot(cell) == before
    ok, error = run_script(backend, url, _downgrade_script(cell, "--discard-audit"))
    assert ok, error
    assert not STATE_TABLES & cell.state_table_names()


def test_offline_downgrade_script_refuses_while_a_runner_is_alive(cell, backend):
    _prepare(cell)
    url = parse_url(cell.url)
    with _live_runner(cell, 42):
        ok, error = run_script(backend, url, _downgrade_script(cell, "--discard-audit"))
        assert not ok
        assert {
            "postgresql": "a backfill or revert is running",
            "mysql": "refused_to_drop_the_state_while_a_backfill_or_revert_runs",
            "sqlite": "refused_while_a_backfill_or_revert_runs",
        }[backend] in error
        _intact(cell)
    ok, error = run_script(backend, url, _downgrade_script(cell))
    assert ok, error
    assert not STATE_TABLES & cell.state_table_names()
