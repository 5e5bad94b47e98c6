"""Runs: resume, interruption, concurrency, one runner, retries, revert, verify."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.engine import planner as planning
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.engine.fill import PlanFill
from actionhost_backfill.errors import RunnerBusy
from actionhost_backfill.sim.history import HistoryBuilder
from actionhost_backfill.state import runs
from actionhost_backfill.state.lease import RunnerLock
from tests import scenarios
from tests.harness import Cell, cli, prepare_scenarios, wait_for_batches
from tests.locks import held_during_first_batch


def _prepare(cell: Cell, copies: int = 1) -> dict:
    return prepare_scenarios(cell, copies=copies)


def _table_state(cell: Cell) -> list[tuple]:
    return cell.rows(
        "SELECT id, host FROM instance_actions_events UNION ALL SELECT id, host FROM shadow_instance_actions_events ORDER BY 1"
    )


def _audit_state(cell: Cell) -> list[tuple]:
    return cell.rows(
        f"SELECT run_id, event_table, event_id, host, rule, outcome, reverted_by FROM {cell.location.schema}.audit "
        "ORDER BY run_id, event_table, event_id"
    )


def _run_state(cell: Cell) -> list[tuple]:
    schema_name = cell.location.schema
    return (
        cell.rows(f"SELECT id, kind, state FROM {schema_name}.runs ORDER BY id")
        + cell.rows(
            f"SELECT run_id, event_table, last_id, horizon, done, examined FROM {schema_name}.checkpoints ORDER BY 1, 2"
        )
        + cell.rows(
            f"SELECT run_id, event_table, outcome, rule, row_count FROM {schema_name}.run_counts ORDER BY 1, 2, 3, 4"
        )
    )


def test_stopped_after_n_rows_then_resumed_equals_uninterrupted(backend, server_url, tmp_path):
    """Two identical databases: one run straight through, one in --max-rows slices."""
    from tests import harness

    cells = []
    for name in ("straight", "sliced"):
        if backend == "sqlite":
            path = tmp_path / f"{name}.sqlite"
            sa.create_engine(f"sqlite:///{path}").connect().close()
            url = f"sqlite:///{path}"
        else:
            db_name = f"ahb_{name}_{os.getpid()}_{time.monotonic_ns() % 100000}"
            harness.create_database(backend, db_name)
            url = (
                sa.engine.make_url(server_url)
                .set(database=db_name)
                .render_as_string(hide_password=False)
            )
        cell = Cell(url)
        cell.build()
        _prepare(cell, copies=3)
        cells.append(cell)
    straight, sliced = cells
    try:
        full = run_backfill(
            parse_url(straight.url), BackfillOptions(include_shadow=True, batch_size=50)
        )
        assert full.outcome == "complete"
        slices = 0
        while True:
            part = run_backfill(
                parse_url(sliced.url),
                BackfillOptions(include_shadow=True, batch_size=50, max_rows=37),
            )
            slices += 1
            if part.outcome == "complete":
                break
            assert part.outcome == "partial" and part.exit_code == 1
            assert part.run_id == 1 and (slices == 1 or part.resumed)
        assert slices > 3
        assert _table_state(sliced) == _table_state(straight)
        assert _audit_state(sliced) == _audit_state(straight)
        # Same run, same checkpoints and counts; only batch boundaries differ.
        assert _run_state(sliced) == _run_state(straight)
    finally:
        for cell in cells:
            cell.dispose()
            if backend != "sqlite":
                harness.drop_database(backend, cell.sa_url.database)


def test_stop_request_finishes_the_batch_and_resumes(cell, monkeypatch):
    _prepare(cell)
    stop = threading.Event()
    original = PlanFill.apply
    calls = []

    def write_then_stop(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            stop.set()  # as Ctrl-C would, in the middle of the second batch
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PlanFill, "apply", write_then_stop)
    result = run_backfill(parse_url(cell.url), BackfillOptions(batch_size=10), stop=stop)
    monkeypatch.undo()
    assert result.outcome == "interrupted" and result.exit_code == 1
    assert result.batches == 2, "the batch in flight is finished, then the run stops"
    assert "run the same command again" in result.message
    assert cell.scalar(f"SELECT state FROM {cell.location.schema}.runs") == "interrupted"
    assert cell.scalar(f"SELECT last_id FROM {cell.location.schema}.checkpoints") > 0
    resumed = run_backfill(parse_url(cell.url), BackfillOptions(batch_size=10))
    assert resumed.resumed and resumed.run_id == result.run_id and resumed.outcome == "complete"


@pytest.mark.backends("postgresql", "mysql")
def test_host_recorded_concurrently_is_never_overwritten(cell, backend, monkeypatch):
    expect = _prepare(cell)
    target = min(i for i, (host, _) in expect.items() if host)
    writer = sa.create_engine(cell.url, isolation_level="AUTOCOMMIT")
    original = planning.infer

    def load_while_nova_writes(events, *evidence):
        if any(e.id == target for e in events):
            with writer.connect() as conn:  # Nova records the host between our read and our write
                conn.execute(
                    sa.text(
                        "UPDATE instance_actions_events SET host = 'nova-recorded' WHERE id = :i"
                    ),
                    {"i": target},
                )
        return original(events, *evidence)

    monkeypatch.setattr(planning, "infer", load_while_nova_writes)
    try:
        result = run_backfill(parse_url(cell.url), BackfillOptions(batch_size=10))
    finally:
        writer.dispose()
    assert result.skipped == 1
    assert (
        cell.scalar("SELECT host FROM instance_actions_events WHERE id = :i", {"i": target})
        == "nova-recorded"
    )
    row = cell.rows(
        f"SELECT host, rule, outcome FROM {cell.location.schema}.audit WHERE event_id = :i",
        {"i": target},
    )
    assert row == [(None, "recorded-meanwhile", "skipped")]


@pytest.mark.backends("sqlite")
def test_sqlite_writers_cannot_interleave_and_recorded_rows_are_skipped(cell, backend):
    """SQLite has one writer: a host recorded before a batch is simply not selected."""
    expect = _prepare(cell)
    target = max(i for i, (host, _) in expect.items() if host and i < 60)
    cell.execute(
        "UPDATE instance_actions_events SET host = 'nova-recorded' WHERE id = :i", {"i": target}
    )
    run_backfill(parse_url(cell.url), BackfillOptions(batch_size=10))
    assert (
        cell.scalar("SELECT host FROM instance_actions_events WHERE id = :i", {"i": target})
        == "nova-recorded"
    )
    assert not cell.rows(
        f"SELECT 1 FROM {cell.location.schema}.audit WHERE event_id = :i", {"i": target}
    )


def test_second_runner_is_refused_naming_the_first(cell):
    _prepare(cell)
    url = parse_url(cell.url)
    engine = create_engine(url, cell.location, attach="if-exists")
    lock = RunnerLock(engine, cell.location)
    lock.acquire(42)
    try:
        with pytest.raises(RunnerBusy, match="run 42"):
            run_backfill(url, BackfillOptions())
        result = cli("backfill", "--db", cell.url)
        assert result.exit_code == 3, result.output
        assert "another backfill or revert is running" in result.stderr
        result = cli("revert", "--run", "1", "--db", cell.url)
        assert result.exit_code in (3, 127), result.output
        # A dry run writes nothing and needs no lock.
        assert run_backfill(url, BackfillOptions(dry_run=True)).outcome == "complete"
    finally:
        lock.release()
        engine.dispose()
    assert run_backfill(url, BackfillOptions()).outcome == "complete"


@pytest.mark.backends("sqlite", "mysql")
def test_lease_of_a_dead_process_is_taken_over(cell, backend):
    _prepare(cell)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    url = parse_url(cell.url)
    engine = create_engine(url, cell.location, attach="if-exists")
    lock = RunnerLock(engine, cell.location)
    lock.pid = dead.pid  # as if a runner with that pid had been killed -9
    lock.acquire(7)
    lock._stop.set()  # stop heartbeating without releasing: the lease stays
    engine.dispose()
    result = run_backfill(url, BackfillOptions())
    assert result.outcome == "complete"


def test_lock_wait_is_retried(cell, backend, monkeypatch):
    """Another session holds a row (SQLite: the database) as the first batch starts;
    the batch waits --lock-timeout, rolls back, retries and writes once it is free."""
    expect = _prepare(cell)
    target = min(i for i, (host, _) in expect.items() if host)
    with held_during_first_batch(monkeypatch, PlanFill, cell.url, backend, target) as seen:
        result = run_backfill(parse_url(cell.url), BackfillOptions(lock_timeout=0.5, max_retries=5))
    assert seen["retried"], "the first batch met the lock"
    assert result.outcome == "complete"
    assert result.retries >= 1
    assert (
        cell.scalar("SELECT host FROM instance_actions_events WHERE id = :i", {"i": target})
        == expect[target][0]
    )


def test_revert_restores_nulls_and_leaves_foreign_values_alone(cell):
    expect = _prepare(cell)
    run = run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    filled = [i for i, (host, _) in expect.items() if host]
    live_filled = [
        i
        for i in filled
        if cell.rows("SELECT 1 FROM instance_actions_events WHERE id = :i", {"i": i})
    ]
    changed, archived = live_filled[0], live_filled[1]
    cell.execute(
        "UPDATE instance_actions_events SET host = 'fixed-by-operator' WHERE id = :i",
        {"i": changed},
    )
    # The archiver moved one filled event to the shadow table since.
    row = cell.rows(
        "SELECT id, event, action_id, host, deleted FROM instance_actions_events WHERE id = :i",
        {"i": archived},
    )[0]
    cell.execute(
        "INSERT INTO shadow_instance_actions_events (id, event, action_id, host, deleted) VALUES (:i, :e, :a, :h, :d)",
        dict(zip("ieahd", row, strict=True)),
    )
    cell.execute("DELETE FROM instance_actions_events WHERE id = :i", {"i": archived})

    report = cli("verify", "--db", cell.url, "--json")
    assert report.exit_code == 4, report.output
    verified = json.loads(report.stdout)
    assert verified["drift"] == 1 and verified["archived_and_matching"] == 1
    assert verified["drift_examples"][0]["event_id"] == changed

    dry = cli("revert", "--run", str(run.run_id), "--db", cell.url, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["reverted"] == len(filled) - 1
    result = cli(
        "revert", "--run", str(run.run_id), "--db", cell.url, "--batch-size", "7", "--json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["reverted"] == len(filled) - 1 and payload["kept_changed"] == 1
    assert (
        cell.scalar("SELECT host FROM instance_actions_events WHERE id = :i", {"i": changed})
        == "fixed-by-operator"
    )
    assert (
        cell.scalar(
            "SELECT host FROM shadow_instance_actions_events WHERE id = :i", {"i": archived}
        )
        is None
    )
    others = [i for i in live_filled if i not in (changed, archived)]
    assert all(
        cell.scalar("SELECT host FROM instance_actions_events WHERE id = :i", {"i": i}) is None
        for i in others
    )
    assert (
        cell.scalar(
            f"SELECT state FROM {cell.location.schema}.runs WHERE id = :i", {"i": run.run_id}
        )
        == "reverted"
    )
    again = cli("revert", "--run", str(run.run_id), "--db", cell.url, "--json")
    assert json.loads(again.stdout)["reverted"] == 0


def test_cli_exit_codes_and_messages(cell):
    _prepare(cell)
    for args, message in (
        (["--batch-size", "0"], "--batch-size must be between 1 and 100000 (got 0)"),
        (["--sleep", "-1"], "--sleep must be between 0 and 3600 seconds (got -1.0)"),
        (["--max-rows", "0"], "--max-rows must be at least 1 (got 0)"),
        (["--batch-size", "many"], "Invalid value for '--batch-size'"),
    ):
        result = cli("backfill", "--db", cell.url, *args)
        assert result.exit_code == 127, result.output
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    result = cli("revert", "--run", "999", "--db", cell.url)
    assert result.exit_code == 127 and "no backfill run with that id" in result.stderr

    result = cli("backfill", "--db", cell.url, "--max-rows", "20")
    assert result.exit_code == 1, result.output
    assert "run the same command again to resume" in result.stdout
    status = cli("status", "--db", cell.url, "--json")
    assert status.exit_code == 1 and json.loads(status.stdout)["unfinished_run"] == 1
    result = cli("backfill", "--db", cell.url, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["resumed"] is True and payload["outcome"] == "complete"
    assert cli("status", "--db", cell.url).exit_code == 0
    assert cli("verify", "--db", cell.url).exit_code == 0


def test_backfill_before_upgrade_is_bad_input(cell):
    result = cli("backfill", "--db", cell.url)
    assert result.exit_code == 127
    assert "run `actionhost-backfill schema upgrade` first" in result.stderr


@pytest.mark.backends("sqlite")
def test_sigterm_finishes_the_batch_and_exits_partial(cell, backend):
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
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_batches(cell, 1, process)  # signal mid-run, once a batch has committed
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, (out, err)
    assert "SIGTERM: stopping after the batch in flight" in err
    assert "run the same command again to resume" in out
    done = subprocess.run(command[:-2], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(resumed)" in done.stdout


@pytest.mark.parametrize("until_complete", [False, True])
def test_until_complete_takes_in_events_written_during_the_run(cell, until_complete, monkeypatch):
    _prepare(cell)
    original = planning.infer
    added: list[int] = []
    writers: list[threading.Thread] = []

    def write_late_events():
        # A compute not yet upgraded (rolling upgrade) still records no host.
        builder = HistoryBuilder()
        # Ids clear of the first history's, so both can live in one cell.
        for table in (
            "instance_actions_events",
            "instance_actions",
            "instances",
            "instance_faults",
            "migrations",
        ):
            builder.counters[table] = iter(range(10_000, 10_100))
        late = scenarios.never_moved(builder, scenarios.datetime(2026, 1, 1))
        writer = create_engine(
            parse_url(cell.url), attach="never", lock_timeout=30, sqlite_begin="IMMEDIATE"
        )
        with writer.begin() as conn:  # on SQLite this waits for the batch in flight
            builder.write(conn)
        writer.dispose()
        added.extend(late.items())

    def load_while_old_computes_write(events, *evidence):
        if not writers:
            writers.append(threading.Thread(target=write_late_events))
            writers[0].start()
        return original(events, *evidence)

    monkeypatch.setattr(planning, "infer", load_while_old_computes_write)
    try:
        result = run_backfill(
            parse_url(cell.url),
            BackfillOptions(batch_size=25, sleep=0.3, until_complete=until_complete),
        )
    finally:
        for thread in writers:
            thread.join()
    assert added, "the late events were written during the run"
    assert result.outcome == "complete"
    late_hosts = [
        cell.scalar("SELECT host FROM instance_actions_events WHERE id = :i", {"i": i})
        for i, _ in added
    ]
    if until_complete:
        assert late_hosts == [host for _, (host, _) in added]
        assert any(late_hosts)
    else:
        assert not any(late_hosts), "without --until-complete the run stops at its starting horizon"


@pytest.mark.backends("postgresql")
def test_postgresql_sessions_keep_temporary_tables_in_memory(cell):
    """Every toolkit session starts with temp_buffers raised (PostgreSQL refuses the
    change once a session has used a temporary table), and temporary tables work."""
    from actionhost_backfill.dialects.postgresql import TEMP_BUFFERS

    engine = create_engine(parse_url(cell.url))
    try:
        for _ in range(2):  # each new session, not only the first
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW temp_buffers").scalar() == TEMP_BUFFERS
                conn.exec_driver_sql("CREATE TEMPORARY TABLE ah_probe (x integer)")
                conn.exec_driver_sql("INSERT INTO ah_probe VALUES (1)")
                assert conn.exec_driver_sql("SELECT x FROM ah_probe").scalar() == 1
                conn.rollback()
    finally:
        engine.dispose()


@pytest.mark.backends("mysql")
def test_mysql_statement_binlog_snapshot_copies_through_the_client(cell, backend, monkeypatch):
    """Under statement-based binlog READ COMMITTED is unsafe; the snapshot must not lock rows."""
    from actionhost_backfill.dialects import mysql

    expect = _prepare(cell)
    monkeypatch.setattr(mysql, "can_read_committed", lambda conn: False)
    copied = []
    original = EvidenceSnapshot._copy_through_client

    def spy(self, name, select, *args, **kwargs):
        copied.append(name)
        return original(self, name, select, *args, **kwargs)

    monkeypatch.setattr(EvidenceSnapshot, "_copy_through_client", spy)
    result = run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    # The planner's copy of the NULL-host events too (its table, the snapshot's helper).
    assert {"ah_mig", "ah_ev", "ah_meta", "ah_vol", "ah_null"} <= set(copied)
    audit = {
        r[0]: (r[1], r[2])
        for r in cell.rows(f"SELECT event_id, host, rule FROM {cell.location.schema}.audit")
    }
    assert audit == expect
    assert result.outcome == "complete"


@contextlib.contextmanager
def _statements_of(monkeypatch, owner, name: str):
    """Each call of ``owner.name`` made inside: its arguments and the statements
    (text, executemany) it sent to a server from its own thread (the planner's
    thread, reading meanwhile, is not counted)."""
    calls: list[tuple[tuple, list[tuple[str, bool]]]] = []
    caller: list[int | None] = [None]
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        calls.append((args, []))
        caller[0] = threading.get_ident()
        try:
            return original(*args, **kwargs)
        finally:
            caller[0] = None

    def record(conn, cursor, statement, parameters, context, executemany):
        if caller[0] == threading.get_ident():
            calls[-1][1].append((statement, executemany))

    monkeypatch.setattr(owner, name, wrapped)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield calls
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def test_a_batch_is_a_few_set_based_statements(cell, monkeypatch):
    """However big the batch, applying it costs the same few statements: no per-row SQL,
    no executemany, no event row read back into the client."""
    expect = _prepare(cell)
    with _statements_of(monkeypatch, PlanFill, "apply") as calls:
        small = run_backfill(parse_url(cell.url), BackfillOptions(batch_size=5, max_rows=20))
        big = run_backfill(parse_url(cell.url), BackfillOptions(batch_size=100_000))
    statements = [batch for _, batch in calls]
    # --max-rows counts rows written: 20 hosts, in batches of at most 5 events.
    assert small.filled == 20 and small.batches >= 4 and big.batches == 1
    assert big.examined > 5 * small.batches, "the big batch covers many more rows"
    per_batch = {len(batch) for batch in statements}
    assert max(per_batch) <= 5 and len(per_batch) == 1, per_batch
    assert not any(many for batch in statements for _, many in batch)
    assert all(
        host == expect[i][0]
        for i, host in cell.rows("SELECT id, host FROM instance_actions_events")
        if host is not None and i in expect and expect[i][0] is not None
    )


def test_a_batchs_counts_are_one_statement_and_add_up_to_the_audit(cell, monkeypatch):
    """The per-rule counters (``run_counts``) take one upsert per batch, however many
    rules and reasons the batch holds, and end equal to the audit they summarise."""
    _prepare(cell, copies=2)
    with _statements_of(monkeypatch, runs, "add_counts") as calls:
        result = run_backfill(parse_url(cell.url), BackfillOptions(batch_size=40))
    counters = [sum(1 for n in args[4].values() if n) for args, _ in calls]
    assert result.batches == len(calls) > 3
    assert max(counters) >= 3, "some batch counts several rules"
    assert all(len(statements) == 1 for _, statements in calls), calls
    schema = cell.location.schema
    assert cell.rows(
        f"SELECT run_id, event_table, outcome, rule, row_count FROM {schema}.run_counts "
        "ORDER BY 1, 2, 3, 4"
    ) == cell.rows(
        f"SELECT run_id, event_table, outcome, rule, count(*) FROM {schema}.audit "
        "GROUP BY run_id, event_table, outcome, rule ORDER BY 1, 2, 3, 4"
    )


@pytest.mark.backends("postgresql", "mysql")
def test_user_who_cannot_write_events_gets_the_grant_and_nothing_changes(cell, backend):
    """Reads Nova and owns the state schema, but may not UPDATE the events table."""
    from tests import harness

    _prepare(cell)
    user = f"ahb_nw_{uuid.uuid4().hex[:6]}"
    password = "nw-secret-456"
    schema_name = cell.location.schema
    database = cell.sa_url.database
    admin = harness.admin_engine(backend)
    with admin.connect() as conn:
        if backend == "postgresql":
            conn.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            cell.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}")
            cell.execute(f"GRANT USAGE ON SCHEMA {schema_name} TO {user}")
            cell.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {schema_name} TO {user}")
            cell.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema_name} TO {user}")
        else:
            conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
            conn.exec_driver_sql(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%%'")
            conn.exec_driver_sql(f"GRANT ALL ON `{schema_name}`.* TO '{user}'@'%%'")
    try:
        before = _table_state(cell)
        url = cell.sa_url.set(username=user, password=password).render_as_string(
            hide_password=False
        )
        result = cli("backfill", "--db", url, "--no-progress")
        assert result.exit_code == 127, result.output
        grant = (
            f"GRANT UPDATE (host) ON instance_actions_events TO {user};"
            if backend == "postgresql"
            else f"GRANT UPDATE (host) ON `{database}`.`instance_actions_events` TO '{user}'@'%';"
        )
        assert grant in result.stderr and "nothing was changed" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert password not in result.output
        assert _table_state(cell) == before
        assert cell.scalar(f"SELECT COUNT(*) FROM {schema_name}.runs") == 0
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                cell.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {user}")
                cell.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema_name} FROM {user}")
                cell.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_name} FROM {user}")
                cell.execute(f"REVOKE ALL ON SCHEMA {schema_name} FROM {user}")
                conn.exec_driver_sql(f"DROP ROLE {user}")
            else:
                conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


@pytest.mark.backends("postgresql", "mysql")
def test_server_gone_during_the_plans_bulk_load_is_intervene(cell, backend, monkeypatch):
    """The plan is loaded through the driver's own cursor (COPY, multi-row INSERT): a lost
    server there is reported like anywhere else (exit 2, resume hint), not as an internal error."""
    from actionhost_backfill.errors import DatabaseUnavailable
    from tests import harness

    _prepare(cell)
    before = _table_state(cell)
    original = planning.infer
    database = cell.sa_url.database

    def infer_then_server_gone(events, *evidence):
        decisions = original(events, *evidence)
        harness.cut_connections(backend, database)
        return decisions

    monkeypatch.setattr(planning, "infer", infer_then_server_gone)
    with pytest.raises(DatabaseUnavailable, match="run the same command again"):
        run_backfill(parse_url(cell.url), BackfillOptions())
    monkeypatch.undo()
    assert _table_state(cell) == before
    assert run_backfill(parse_url(cell.url), BackfillOptions()).outcome == "complete"
