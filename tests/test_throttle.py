"""Throttling between batches: a pause file, server load, replica lag on real replicas.

Each test acts at the exact moment the applier logs that it is throttled (a
log handler, not a sleep), checks that nothing was written while it waited,
then lifts the cause and sees the run finish.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.engine.throttling import ThrottleOptions
from actionhost_backfill.errors import ExitCode
from tests.harness import Cell, cli, prepare_scenarios, wait_until
from tests.logwatch import when_logged
from tests.topology.replicas import mariadb_pair, postgresql_pair

THROTTLE_LOG = "actionhost_backfill.engine.throttling"


def _prepare(cell: Cell) -> dict:
    return prepare_scenarios(cell)


def _hosts(cell: Cell) -> list[tuple]:
    return cell.rows("SELECT id, host FROM instance_actions_events ORDER BY id")


def test_pause_file_holds_the_run_between_batches(cell, tmp_path):
    _prepare(cell)
    before = _hosts(cell)
    pause = tmp_path / "pause"
    pause.touch()
    during: list = []

    def lift(_message: str) -> None:
        during.append(_hosts(cell))  # the run waits: nothing written yet
        pause.unlink()

    with when_logged(THROTTLE_LOG, "throttled: ", lift) as seen:
        result = run_backfill(
            parse_url(cell.url),
            BackfillOptions(throttle=ThrottleOptions(pause_file=str(pause))),
        )
    assert seen and f"{pause} exists" in seen[0]
    assert during == [before]
    assert result.outcome == "complete" and result.filled > 0
    assert result.throttle.pauses == 1 and result.throttle.seconds > 0
    assert set(result.throttle.reasons) == {"pause-file"}


def _blocked_sessions(cell: Cell, backend: str, count: int):
    """``count`` sessions stuck in a query (waiting on a lock the test holds): what
    Threads_running counts.  Returns a function that releases them."""
    engine = sa.create_engine(cell.url, poolclass=sa.pool.NullPool)
    holder = engine.connect()
    started = threading.Barrier(count + 1)
    if backend == "postgresql":
        holder.exec_driver_sql("SELECT pg_advisory_lock(4242)")
        wait_sql = "SELECT pg_advisory_lock(4242)"
    else:
        holder.exec_driver_sql("SELECT GET_LOCK('ahb-load', 60)")
        wait_sql = "SELECT GET_LOCK('ahb-load', 60)"

    def waiter() -> None:
        with engine.connect() as conn:
            started.wait()
            conn.exec_driver_sql(wait_sql)
            conn.rollback()

    threads = [threading.Thread(target=waiter) for _ in range(count)]
    for thread in threads:
        thread.start()
    started.wait()
    # Each waiter is inside its query once the server lists it as waiting.
    probe = engine.connect()
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'SELECT pg_advisory_lock%%'"
        if backend == "postgresql"
        else "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT GET_LOCK%%' "
        "AND state = 'User lock'"
    )

    def all_waiting() -> bool:
        waiting = probe.exec_driver_sql(query).scalar()
        probe.rollback()
        return waiting >= count

    wait_until(all_waiting, f"{count} sessions waiting on the lock")
    probe.close()

    def release() -> None:
        if backend == "postgresql":
            holder.exec_driver_sql("SELECT pg_advisory_unlock(4242)")
        else:
            holder.exec_driver_sql("SELECT RELEASE_LOCK('ahb-load')")
        holder.commit()

    def cleanup() -> None:
        for thread in threads:
            thread.join(timeout=60)
        holder.close()
        engine.dispose()

    return release, cleanup


@pytest.mark.backends("postgresql", "mysql")
def test_max_load_pauses_until_the_server_calms_down(cell, backend):
    _prepare(cell)
    before = _hosts(cell)
    release, cleanup = _blocked_sessions(cell, backend, 3)
    during: list = []

    def calm(_message: str) -> None:
        during.append(_hosts(cell))
        release()

    try:
        with when_logged(THROTTLE_LOG, "throttled: ", calm) as seen:
            result = run_backfill(
                parse_url(cell.url),
                BackfillOptions(throttle=ThrottleOptions(max_load=["Threads_running=2"])),
            )
    finally:
        release()
        cleanup()
    assert seen and "Threads_running=" in seen[0] and "> 2" in seen[0]
    assert during == [before]
    assert result.outcome == "complete" and set(result.throttle.reasons) == {"load"}


@pytest.mark.backends("postgresql", "mysql")
def test_critical_load_stops_with_intervene_and_resumes(cell, backend):
    _prepare(cell)
    before = _hosts(cell)
    release, cleanup = _blocked_sessions(cell, backend, 3)
    try:
        stopped = cli("backfill", "--db", cell.url, "--critical-load", "Threads_running=2")
    finally:
        release()
        cleanup()
    assert stopped.exit_code == ExitCode.INTERVENE, stopped.output
    assert "over --critical-load Threads_running=2" in stopped.stderr
    assert "run the same command again" in stopped.stderr
    assert _hosts(cell) == before
    schema = cell.location.schema
    # Its own state, not "failed": the server was overloaded, nothing is broken.
    assert cell.scalar(f"SELECT state FROM {schema}.runs") == "critical-load"
    status = cli("status", "--db", cell.url)
    assert status.exit_code == 1 and "critical-load" in status.stdout, status.output
    resumed = cli("backfill", "--db", cell.url, "--critical-load", "Threads_running=2", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["filled"] > 0


def test_bad_load_spec_is_bad_input(cell):
    _prepare(cell)
    result = cli("backfill", "--db", cell.url, "--max-load", "Threads_running")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "expected VARIABLE=NUMBER" in result.stderr


# ------------------------------------------------------------------ real replicas


@pytest.fixture(scope="module")
def topology_dir():
    base = Path(tempfile.mkdtemp(prefix="ahb-topology-"))
    os.chmod(base, 0o755)  # the PostgreSQL servers run as the postgres user
    yield base
    import shutil

    shutil.rmtree(base, ignore_errors=True)


def _cell_on(server_url: str, backend: str) -> Cell:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE nova")
    admin.dispose()
    cell = Cell(str(sa.engine.make_url(server_url).set(database="nova")))
    cell.build()
    return cell


@pytest.mark.backends("mysql")
def test_max_lag_waits_for_a_stopped_mariadb_replica(topology_dir, backend):
    primary, replica = mariadb_pair(topology_dir / "mariadb")
    try:
        cell = _cell_on(primary.url, "mysql")
        _prepare(cell)
        before = _hosts(cell)
        during: list = []
        gtid = primary.sql("SELECT @@gtid_binlog_pos").strip()
        replica.sql(f"SELECT MASTER_GTID_WAIT('{gtid}', 60)")
        replica.sql("STOP SLAVE SQL_THREAD")  # Seconds_Behind_Master is now NULL

        def restart(_message: str) -> None:
            during.append(_hosts(cell))
            replica.sql("START SLAVE SQL_THREAD")

        with when_logged(THROTTLE_LOG, "throttled: ", restart) as seen:
            done = cli("backfill", "--db", cell.url, "--max-lag", "5", "--json")
        assert done.exit_code == 0, done.output
        assert "replication stopped" in seen[0]
        assert during == [before], "nothing written while the replica was stopped"
        throttled = json.loads(done.stdout)["throttled"]
        assert throttled["pauses"] >= 1 and throttled["worst_lag_seconds"] == "unknown"
        gtid = primary.sql("SELECT @@gtid_binlog_pos").strip()
        replica.sql(f"SELECT MASTER_GTID_WAIT('{gtid}', 60)")
        hosts = "SELECT id, host FROM nova.instance_actions_events ORDER BY id"
        assert primary.sql(hosts) == replica.sql(hosts)
        cell.dispose()
    finally:
        primary.remove()
        replica.remove()


@pytest.mark.backends("postgresql")
def test_max_lag_waits_for_a_paused_postgresql_standby(topology_dir, backend):
    primary, standby = postgresql_pair(topology_dir / "postgresql")
    try:
        cell = _cell_on(primary.url, "postgresql")
        _prepare(cell)
        standby_engine = sa.create_engine(standby.url, isolation_level="AUTOCOMMIT")
        with standby_engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_wal_replay_pause()")

        def resume(_message: str) -> None:
            with standby_engine.connect() as conn:
                conn.exec_driver_sql("SELECT pg_wal_replay_resume()")

        with when_logged(THROTTLE_LOG, "throttled: ", resume) as seen:
            result = run_backfill(
                parse_url(cell.url),
                BackfillOptions(batch_size=20, throttle=ThrottleOptions(max_lag=0)),
            )
        assert seen and "behind" in seen[0]
        assert result.outcome == "complete"
        assert result.throttle.pauses >= 1 and result.throttle.worst_lag > 0
        standby_engine.dispose()
        cell.dispose()
    finally:
        primary.remove()
        standby.remove()


@pytest.mark.backends("sqlite")
def test_load_options_on_sqlite_are_bad_input_and_change_nothing(cell, backend):
    _prepare(cell)
    before = _hosts(cell)
    result = cli("backfill", "--db", cell.url, "--max-load", "Threads_running=5")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "SQLite has none" in result.stderr and len(result.stderr.splitlines()) == 1
    assert _hosts(cell) == before
    assert cell.scalar(f"SELECT COUNT(*) FROM {cell.location.schema}.runs") == 0
