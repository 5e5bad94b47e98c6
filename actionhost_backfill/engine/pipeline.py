"""Deciding and applying at the same time: the planner decides what follows while the
applier writes what is decided.

A range ``(after, upper]`` of one events table is decided on the planner's
connection (the one holding the evidence snapshot) in a background thread, and
applied on a second connection by the :class:`~actionhost_backfill.engine.applier.Applier`
in the calling thread, so a run takes about as long as the slower of the two.

The applier writes by event id, the planner decides whole instances: an event
may be applied once every NULL event at or below its id is decided.  The
planner therefore decides the events whose action is gone first (they need no
evidence), then the instances in the order of their first NULL event id, and
hands over each chunk with its **frontier**: the id below the first NULL event
of the next undecided instance.  Every NULL event up to the frontier is in the
plan; the applier writes up to it, batch by batch, the checkpoint advancing as
today (so a resume after ``kill -9`` at any instant starts after the last
committed batch and decides the rest again from the same evidence).  Each
instance is decided once, with all its NULL events of the range and all its
evidence, by the same rules: the decisions are those of planning the whole
range first.

The hand-over holds at most :data:`LEAD` chunks: when the applier pauses (a
throttle check, ``--sleep``; it holds no lock between batches) or stops
(``--max-rows``, a stop request), planning stops at that lead.  The planner
commits after every chunk, holding no snapshot open while it waits.

SQLite has one writer per file and begins every transaction of the runner's
engine ``IMMEDIATE``: the backfill plans then applies there, as before.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa

from actionhost_backfill import db, dialects
from actionhost_backfill.dialects import Dialect, bulk
from actionhost_backfill.engine.applier import Applier
from actionhost_backfill.engine.fill import PlanFill
from actionhost_backfill.engine.planner import Planner, Stopped, connection_lost
from actionhost_backfill.state.lease import RunnerLock
from actionhost_backfill.state.runs import Checkpoint

if TYPE_CHECKING:
    from actionhost_backfill.engine.workers import Shares

#: Decided chunks (:func:`~actionhost_backfill.engine.planner.cut`) the planner
#: may hold ahead of the applier.
LEAD = 4

#: The interpreter's thread switch interval while planning and applying overlap.
SWITCH_SECONDS = 0.0005

#: How often a thread waiting on the other looks at the stop request.
POLL_SECONDS = 0.2


def pipelined(conn: sa.Connection) -> bool:
    """Whether this backend lets a second connection write while the planner reads."""
    return dialects.for_connection(conn).plans_while_applying


_switching = threading.Lock()
_switching_runs = 0
_switch_before = 0.0


@contextlib.contextmanager
def _fine_switching() -> Iterator[None]:
    """While planning and applying overlap, the switch interval is :data:`SWITCH_SECONDS`.

    The planner thread computes while the applier mostly waits on the server; at
    the default 5 ms switch interval each of a batch's statements waits up to that
    long for the interpreter after its answer arrives, lengthening the time the
    batch holds its row locks.  Pipelines may overlap (``--parallel-cells`` runs
    cells in threads): the first sets the interval, the last puts it back.
    """
    global _switching_runs, _switch_before
    with _switching:
        if _switching_runs == 0:
            _switch_before = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_SECONDS)
        _switching_runs += 1
    try:
        yield
    finally:
        with _switching:
            _switching_runs -= 1
            if _switching_runs == 0:
                sys.setswitchinterval(_switch_before)


def create_plan(conn: sa.Connection, plan: sa.Table) -> None:
    """An empty temporary table like ``plan`` on ``conn`` (the applier's connection)."""
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(
        f"{quote(c.name)} {c.type.compile(dialect=conn.dialect)}"
        + (" PRIMARY KEY" if c.primary_key else "")
        for c in plan.columns
    )
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {plan.name} ({columns})")
    conn.commit()


def release_plan(conn: sa.Connection, dialect: Dialect, plan: sa.Table) -> None:
    """Drop the applier's plan table and close its connection (back to the pool clean)."""
    with contextlib.suppress(Exception):
        dialect.drop_temp(conn, plan.name)
        conn.commit()
    conn.close()


def _plan_thread(
    planner: Planner,
    table: str,
    after: int,
    upper: int,
    lease: RunnerLock | None,
    handoff: queue.Queue,
    halt: threading.Event,
    shares: Shares | None,
) -> None:
    """Decide into ``handoff`` (in ``shares``, when given); any failure is handed over
    too, to be raised by the applier."""

    def give(item) -> bool:
        while not halt.is_set():
            try:
                handoff.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    conn = planner.conn
    started = time.monotonic()
    waited = 0.0
    try:
        for item in planner.decided(table, after, upper, lease=lease, shares=shares):
            if halt.is_set():
                return
            paused = time.monotonic()
            if not give(item):
                return
            waited += time.monotonic() - paused
            if isinstance(item, Stopped) or item.last:
                return
    except sa.exc.DBAPIError as exc:
        db.rollback_hard(conn)
        if db.is_connection_lost(exc):
            give(connection_lost(planner.url, f"while planning {table} after id {after}"))
        else:
            give(exc)
    except BaseException as exc:  # handed to the applier's thread, raised there
        give(exc)
    finally:
        # Time spent deciding, not waiting for the applier to take the chunks.
        planner.seconds += time.monotonic() - started - waited


def plan_and_apply(
    planner: Planner,
    applier: Applier,
    work: PlanFill,
    checkpoint: Checkpoint,
    *,
    after: int,
    upper: int,
    lease: RunnerLock | None,
    next_pass: Callable[[], bool],
    shares: Shares | None = None,
) -> bool:
    """Decide ``(after, upper]`` of ``work.table`` in a thread (with ``shares``: in the
    planners of :mod:`~actionhost_backfill.engine.workers`) while ``applier`` writes it;
    True when every decided event is applied, False when the applier stopped."""
    wconn = applier.conn
    wconn.execute(sa.delete(work.plan))
    wconn.commit()
    handoff: queue.Queue = queue.Queue(maxsize=LEAD)
    halt = threading.Event()
    thread = threading.Thread(
        target=_plan_thread,
        args=(planner, work.table, after, upper, lease, handoff, halt, shares),
        name="planner",
        daemon=True,
    )
    with _fine_switching():
        thread.start()
        try:
            while True:
                try:
                    item = handoff.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    if not thread.is_alive() and handoff.empty():
                        return False  # halted without a word: only on our own request
                    continue
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Stopped):
                    return False
                bulk.insert_rows(wconn, work.plan.name, ("event_id", "host", "rule"), item.rows)
                wconn.commit()
                work.frontier = item.frontier
                while not applier.run(work, checkpoint):
                    if not next_pass():
                        return False
                if item.last:
                    return True
        finally:
            halt.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    handoff.get(timeout=POLL_SECONDS)
            thread.join()
