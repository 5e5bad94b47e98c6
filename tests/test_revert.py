"""A revert meets a row lock: it waits --lock-timeout, retries, and gives up cleanly.

The revert writes through the same applier as the backfill, so it has the
same bounded lock waits and retries (it once had its own loop with neither:
a revert's FOR UPDATE could wait forever on PostgreSQL).
"""

from __future__ import annotations

import json

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.engine.revert import RevertWork
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.history import HistoryBuilder
from tests import scenarios
from tests.harness import Cell, cli
from tests.locks import held_during_first_batch


def _backfilled(cell: Cell) -> tuple[int, dict[int, str]]:
    builder = HistoryBuilder()
    expect = scenarios.build_all(builder)
    with cell.engine().begin() as conn:
        builder.write(conn)
    revisions.upgrade(parse_url(cell.url))
    run = run_backfill(parse_url(cell.url), BackfillOptions())
    filled = {
        i: host
        for i, host in cell.rows("SELECT id, host FROM instance_actions_events ORDER BY id")
        if host is not None and expect.get(i, (None,))[0] == host
    }
    assert filled
    return run.run_id, filled


def _hosts(cell: Cell) -> list[tuple]:
    return cell.rows("SELECT id, host FROM instance_actions_events ORDER BY id")


def test_revert_blocked_by_a_row_lock_gives_up_after_its_retries(cell, backend, monkeypatch):
    run_id, filled = _backfilled(cell)
    before = _hosts(cell)
    target = min(filled)
    argv = ["revert", "--run", str(run_id), "--db", cell.url]
    argv += ["--lock-timeout", "0.5", "--max-retries", "1"]
    with held_during_first_batch(
        monkeypatch, RevertWork, cell.url, backend, target, release_on="give-up"
    ) as seen:
        blocked = cli(*argv)
    assert seen["retried"], blocked.output
    assert blocked.exit_code == ExitCode.INTERVENE, blocked.output
    assert "failed 2 times" in blocked.output and "run the same command again" in blocked.output
    assert _hosts(cell) == before, "a batch that gave up changed nothing"
    schema = cell.location.schema
    state = cell.scalar(f"SELECT state FROM {schema}.runs WHERE kind = 'revert'")
    # SQLite: the holder locks the whole file, state tables included; if it has
    # not let go yet, the failure is not waited for: a run left running resumes
    # the same way.
    assert state == "failed" or (backend == "sqlite" and state == "running")

    resumed = cli(*argv, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["reverted"] == len(filled)
    assert all(host is None for i, host in _hosts(cell) if i in filled)


def test_revert_retries_once_the_lock_is_released(cell, backend, monkeypatch):
    run_id, filled = _backfilled(cell)
    target = min(filled)
    with held_during_first_batch(monkeypatch, RevertWork, cell.url, backend, target) as seen:
        done = cli(
            "revert", "--run", str(run_id), "--db", cell.url, "--lock-timeout", "0.5", "--json"
        )
    assert seen["retried"]
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["retries"] >= 1 and payload["reverted"] == len(filled)
    assert all(host is None for i, host in _hosts(cell) if i in filled)
