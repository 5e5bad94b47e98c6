"""kill -9 at random moments, resume each time: the result equals an uninterrupted run.

CI runs at least 20 kills per backend; ``--long`` runs 200.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill

from .common import another_database, audit_state, backfill_process, simulated, table_state

#: Longest wait before a kill, in seconds.
MAX_DELAY = 1.6


def _null_events(cell) -> int:
    return cell.scalar(
        "SELECT (SELECT COUNT(*) FROM instance_actions_events WHERE host IS NULL) + "
        "(SELECT COUNT(*) FROM shadow_instance_actions_events WHERE host IS NULL)"
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_9_anywhere_then_resume(backend, server_url, blank_db, tmp_path, request, workers):
    """With planner workers too (``--workers 2``): a kill lands in whatever they decide."""
    kills_wanted = 200 if request.config.getoption("--long") else 20
    reference = simulated(another_database(backend, server_url, tmp_path, request, "reference"))
    victim = simulated(blank_db)
    try:
        straight = run_backfill(parse_url(reference.url), BackfillOptions(batch_size=25))
        assert straight.outcome == "complete"

        rng = random.Random(1234)
        # Batches of 10 with a pause after each: the run cannot finish before
        # (batches x pause) seconds of work, on any machine, and the pause is
        # chosen so that this outlasts every kill's longest delay (1.6 s) with
        # room to spare: each kill lands in the middle of the work (startup,
        # planning or a batch), never after the run ended.
        batches = -(-_null_events(victim) // 10)
        sleep = f"{max(0.05, 2 * kills_wanted * MAX_DELAY / batches):.3f}"
        kills = 0
        while kills < kills_wanted:
            child = backfill_process(
                victim.url, "--workers", workers, "--batch-size", "10", "--sleep", sleep
            )
            time.sleep(rng.uniform(0.2, MAX_DELAY))  # a random moment, not a synchronisation
            if child.poll() is not None:
                _out, err = child.communicate()
                pytest.fail(
                    f"the run ended (exit {child.returncode}) before kill {kills + 1}: {err}"
                )
            child.send_signal(signal.SIGKILL)
            child.communicate()
            kills += 1
        final = backfill_process(victim.url, "--workers", workers)
        _out, err = final.communicate(timeout=600)
        assert final.returncode == 0, err
        assert table_state(victim) == table_state(reference)  # no row lost, none wrong
        assert audit_state(victim) == audit_state(reference)  # none written twice
        assert (
            victim.scalar(
                f"SELECT COUNT(*) FROM {victim.location.schema}.runs WHERE state = 'complete'"
            )
            == 1
        )
        request.node.user_properties.append(("kills", kills))
    finally:
        reference.dispose()
        victim.dispose()


@pytest.mark.backends("postgresql", "mysql")
def test_connection_lost_mid_run_exits_intervene_then_resumes(backend, blank_db):
    """The server drops the runner's connection (as a restart does): exit 2, resume completes."""
    from tests import harness

    cell = simulated(blank_db)
    try:
        child = backfill_process(cell.url, "--batch-size", "25", "--sleep", "0.05")
        admin = harness.admin_engine(backend)
        database = cell.sa_url.database
        killed = 0
        deadline = time.monotonic() + 60
        with admin.connect() as conn:
            while child.poll() is None and time.monotonic() < deadline and not killed:
                time.sleep(1.0)
                if backend == "postgresql":
                    killed = conn.exec_driver_sql(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        f"WHERE datname = '{database}' AND application_name = 'actionhost-backfill' "
                        "AND pid <> pg_backend_pid()"
                    ).scalar()
                else:
                    ids = [
                        r[0]
                        for r in conn.exec_driver_sql(
                            "SELECT id FROM information_schema.processlist "
                            f"WHERE db = '{database}' AND id <> CONNECTION_ID()"
                        )
                    ]
                    for connection_id in ids:
                        conn.exec_driver_sql(f"KILL CONNECTION {connection_id}")
                    killed = len(ids)
        admin.dispose()
        out, err = child.communicate(timeout=120)
        assert killed, "the runner's connection was never found"
        assert child.returncode == 2, (child.returncode, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "run the same command again" in err
        resumed = backfill_process(cell.url)
        out, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        assert "result: complete" in out
        left = cell.scalar(
            f"SELECT COUNT(*) FROM {cell.location.schema}.audit a WHERE outcome = 'filled' "
            "AND NOT EXISTS (SELECT 1 FROM instance_actions_events e WHERE e.id = a.event_id "
            "AND e.host = a.host) AND event_table = 'instance_actions_events'"
        )
        assert left == 0
    finally:
        cell.dispose()
