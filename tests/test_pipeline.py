"""Deciding while applying (engine/pipeline.py): the same decisions and writes as planning
first, batches that overlap planning, and a paused applier that holds no lock while
planning stops at its bounded lead.

SQLite plans then applies (one writer per file): these tests run on the servers.
"""

from __future__ import annotations

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine import pipeline, planner
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.engine.fill import PlanFill
from actionhost_backfill.engine.planner import Planner
from actionhost_backfill.engine.throttling import ThrottleOptions
from tests.harness import wait_until
from tests.logwatch import when_logged
from tests.reliability.common import another_database, audit_state, simulated, table_state

pytestmark = pytest.mark.backends("postgresql", "mysql")

THROTTLE_LOG = "actionhost_backfill.engine.throttling"


def _small_chunks(monkeypatch, instances: int = 5, events: int | None = None) -> None:
    """Chunks of a few instances (or, with ``events``, cut by NULL events, instances
    of every size): many hand-overs and frontiers in a small history."""
    monkeypatch.setattr(planner, "PLAN_INSTANCES", instances)
    if events is not None:
        monkeypatch.setattr(planner, "CHUNK_EVENTS", events)
        monkeypatch.setattr(planner, "ORPHAN_EVENTS", 3)  # events whose action is gone


def _record(monkeypatch, log: list[str]) -> None:
    decide, apply = Planner.decide_prepared, PlanFill.apply

    def decided(self, upper, **kw):
        for done in decide(self, upper, **kw):
            log.append("decide")
            yield done

    def applied(self, conn, after, upto, batch):
        log.append("apply")
        return apply(self, conn, after, upto, batch)

    monkeypatch.setattr(Planner, "decide_prepared", decided)
    monkeypatch.setattr(PlanFill, "apply", applied)


@pytest.mark.parametrize("cut_by", ["instances", "events"])
def test_the_pipeline_writes_what_planning_first_writes(
    cut_by, backend, server_url, blank_db, tmp_path, request, monkeypatch
):
    serial = simulated(another_database(backend, server_url, tmp_path, request, "serial"))
    piped = simulated(blank_db)
    orphans: set[int] = set()
    if cut_by == "events":
        # Events whose action is gone, decided in chunks of ORPHAN_EVENTS before the
        # instances (the simulator writes none): purge archived actions.
        orphans = _purge_archived_actions(serial)
        assert _purge_archived_actions(piped) == orphans and len(orphans) > 3 * 3
    options = BackfillOptions(include_shadow=True, batch_size=10)
    try:
        with monkeypatch.context() as m:
            m.setattr(pipeline, "pipelined", lambda conn: False)
            first = run_backfill(parse_url(serial.url), options)
        if cut_by == "instances":
            _small_chunks(monkeypatch)
        else:  # a chunk holds one instance or several, as their NULL events add up
            _small_chunks(monkeypatch, instances=500, events=40)
        pieces: list[tuple[int, int]] = []
        cut = planner.cut
        monkeypatch.setattr(
            planner, "cut", lambda *a: [p for p in cut(*a) if pieces.append(p) or True]
        )
        log: list[str] = []
        _record(monkeypatch, log)
        second = run_backfill(parse_url(piped.url), options)
        assert first.outcome == second.outcome == "complete"
        # Batches were written while decisions were still being made.
        assert "apply" in log[: len(log) - log[::-1].index("decide")]
        sizes = [stop - start for start, stop in pieces]
        assert len(sizes) > 1 and (max(sizes) > 1 if cut_by == "events" else max(sizes) == 5)
        assert table_state(piped) == table_state(serial)
        assert audit_state(piped) == audit_state(serial)  # event by event, rule included
        # Every one of them decided (left NULL, with a reason), a page at a time.
        for cell in (serial, piped):
            audited = {
                (table, event_id): (host, outcome)
                for table, event_id, host, _, outcome in audit_state(cell)
            }
            for event_id in orphans:
                assert audited[("shadow_instance_actions_events", event_id)] == (None, "left-null")
        assert second.filled_by_rule == first.filled_by_rule
        assert second.null_by_reason == first.null_by_reason
        assert second.examined == first.examined
    finally:
        serial.dispose()
        piped.dispose()


def _purge_archived_actions(cell, actions: int = 4) -> set[int]:
    """Delete the archived actions with the most NULL-host archived events (as a purge
    of the shadow tables may; they have no foreign keys): the NULL events left without."""
    gone = [
        r[0]
        for r in cell.rows(
            "SELECT action_id FROM shadow_instance_actions_events WHERE host IS NULL "
            "GROUP BY action_id ORDER BY count(*) DESC, action_id"
        )[:actions]
    ]
    ids = ", ".join(str(int(i)) for i in gone)
    cell.execute(f"DELETE FROM shadow_instance_actions WHERE id IN ({ids})")
    return {
        r[0]
        for r in cell.rows(
            f"SELECT id FROM shadow_instance_actions_events WHERE action_id IN ({ids}) "
            "AND host IS NULL"
        )
    }


def _open_transactions(cell, backend: str) -> int:
    """Transactions other sessions hold open in this database (what holds locks)."""
    if backend == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND (state LIKE 'idle in transaction%%' "
            "OR backend_xid IS NOT NULL)"
        )
    else:
        query = (
            "SELECT count(*) FROM information_schema.innodb_trx t "
            "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
            "WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID()"
        )
    return cell.scalar(query)


def test_a_paused_applier_holds_no_lock_and_planning_stops_at_its_lead(
    blank_db, backend, tmp_path, monkeypatch
):
    cell = simulated(blank_db)
    _small_chunks(monkeypatch, instances=2)
    monkeypatch.setattr(pipeline, "LEAD", 2)
    log: list[str] = []
    _record(monkeypatch, log)
    before = table_state(cell)
    pause = tmp_path / "pause"
    pause.touch()
    during: dict = {}

    def lead() -> int:
        taken = sum(1 for e in log if e == "decide")
        return taken - during.get("handed", 0)

    handed = pipeline.bulk.insert_rows

    def hand_over(conn, table, columns, rows, **kw):
        if table == "ah_plan":
            during["handed"] = during.get("handed", 0) + 1
            during["max_lead"] = max(during.get("max_lead", 0), lead())
        return handed(conn, table, columns, rows, **kw)

    monkeypatch.setattr(pipeline.bulk, "insert_rows", hand_over)

    def paused(_message: str) -> None:
        # The applier waits before its first batch with one chunk handed over: the
        # planner fills the hand-over (LEAD chunks) and decides one more, then waits.
        wait_until(lambda: lead() == pipeline.LEAD + 1, "the planner at its lead")
        wait_until(lambda: _open_transactions(cell, backend) == 0, "no transaction open")
        during["hosts"] = table_state(cell)
        during["lead"] = lead()
        pause.unlink()

    try:
        with when_logged(THROTTLE_LOG, "throttled: ", paused) as seen:
            result = run_backfill(
                parse_url(cell.url),
                BackfillOptions(
                    include_shadow=True,
                    batch_size=10,
                    throttle=ThrottleOptions(pause_file=str(pause)),
                ),
            )
        assert seen, "the applier paused"
        assert during["hosts"] == before, "nothing written while paused"
        assert during["lead"] == pipeline.LEAD + 1
        assert during["max_lead"] <= pipeline.LEAD + 1
        assert result.outcome == "complete" and result.filled > 0
    finally:
        cell.dispose()
