"""The undo is never thrown away by accident: the guard around dropping the state tables.

The audit is the only record of which hosts a backfill wrote, so it is the
only way ``revert`` can undo them.  Whatever drops the state tables (``schema
downgrade`` below ``0003_backfill_state``, stock ``alembic downgrade``) first
takes the runner lock, as a backfill does, and keeps it until the drop is
done, so no backfill or revert can start between the check and the drop.  It
refuses:

* while another runner holds the lock (a live backfill or revert): exit 3,
  whatever the flags;
* while a backfill run has written hosts that no revert has undone: exit 127,
  unless the operator says ``--discard-audit`` (``-x discard_audit=true``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.errors import AuditAtRisk, RunnerBusy
from actionhost_backfill.state import runs
from actionhost_backfill.state.lease import RunnerLock
from actionhost_backfill.state.location import StateLocation, state_schema_exists
from actionhost_backfill.state.tables import FILLED, StateTables, state

#: Revisions whose downgrade drops the backfill state (runs, audit, lease).
STATE_REVISIONS = frozenset({"0003_backfill_state"})


def unreverted_runs(conn: sa.Connection, st: StateTables) -> list[tuple[int, int]]:
    """``(run id, hosts)`` of each backfill run with written hosts no revert has undone.

    A run a complete revert marked ``reverted`` counts as undone even where the
    revert kept a value someone changed since (that value is no longer ours).
    """
    audit, run_table = st.audit, st.runs
    query = (
        sa.select(audit.c.run_id, sa.func.count())
        .join(run_table, run_table.c.id == audit.c.run_id)
        .where(
            audit.c.outcome == FILLED,
            audit.c.reverted_by.is_(None),
            run_table.c.state != runs.REVERTED,
        )
        .group_by(audit.c.run_id)
        .order_by(audit.c.run_id)
    )
    return [(row[0], row[1]) for row in conn.execute(query)]


def _has_state(conn: sa.Connection, location: StateLocation) -> bool:
    if not state_schema_exists(conn, location):
        return False
    inspector = sa.inspect(conn)
    return all(
        inspector.has_table(t, schema=location.schema) for t in ("runs", "audit", "runner_lease")
    )


@contextmanager
def state_drop_guard(
    conn: sa.Connection,
    url: URL,
    location: StateLocation,
    *,
    discard_audit: bool,
    report: list[str],
) -> Iterator[None]:
    """Hold the runner lock while the caller drops the state tables on ``conn``.

    Raises :class:`RunnerBusy` when a runner holds the lock and
    :class:`AuditAtRisk` when runs have unreverted hosts (unless
    ``discard_audit``); both before anything is dropped.
    """
    if not _has_state(conn, location):
        conn.commit()
        yield
        return
    conn.commit()  # SQLite: our read must not block the lock's write
    engine = db.create_engine(url, location, attach="if-exists", sqlite_begin="IMMEDIATE")
    lock = RunnerLock(engine, location)
    st = state(location.schema)
    acquired = False
    try:
        # Refuse what is refused before writing anything (not even the lease row), then
        # take the lock and look again: a run may have started or ended in between.
        busy = lock.busy_reason()
        if busy:
            raise _busy(location, busy)
        _refuse_unreverted(conn, st, location, discard_audit, report=None)
        try:
            lock.acquire(None)
            acquired = True
        except RunnerBusy as exc:
            raise _busy(location, str(exc)) from None
        _refuse_unreverted(conn, st, location, discard_audit, report=report)
        yield
    finally:
        if acquired:
            lock.release()
        engine.dispose()


def _busy(location: StateLocation, reason: str) -> RunnerBusy:
    return RunnerBusy(
        f"refused to drop the backfill state in {location.describe()}: {reason} "
        "(--discard-audit never overrides a live runner)"
    )


def _refuse_unreverted(
    conn: sa.Connection,
    st: StateTables,
    location: StateLocation,
    discard_audit: bool,
    *,
    report: list[str] | None,
) -> None:
    try:
        found = unreverted_runs(conn, st)
    finally:
        conn.commit()
    if not found:
        return
    listed = ", ".join(f"run {run_id} ({hosts} hosts)" for run_id, hosts in found)
    if not discard_audit:
        raise AuditAtRisk(
            f"refused to drop the backfill state in {location.describe()}: {listed} "
            "wrote hosts that are not reverted, and the audit is the only way to undo "
            f"them: run `actionhost-backfill revert --run {found[0][0]}` for each, or pass "
            "--discard-audit (alembic: -x discard_audit=true) to drop it anyway; "
            "nothing was changed"
        )
    if report is not None:
        report.append(f"discarding the audit of {listed} (--discard-audit)")
