"""Planning: decide every NULL-host event of a range, instance by instance, into the plan.

Planning only reads.  It copies the range's NULL-host events (with their
instance) into a temporary table (``ah_null``; both it and the plan are declared
here), then, a chunk of whole instances at a time,
loads their evidence once (:class:`~actionhost_backfill.engine.evidence.EvidenceSnapshot`),
runs the rules (:func:`~actionhost_backfill.inference.infer`) and bulk-loads
the decisions into the plan (``ah_plan``) on the same connection.  A dry run
counts the decisions instead of keeping them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.dialects import bulk
from actionhost_backfill.engine import collector
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.engine.progress import Progress, silent
from actionhost_backfill.engine.settled import Settled, Settling, drop_settled
from actionhost_backfill.engine.workers import Deciders, Work
from actionhost_backfill.errors import DatabaseUnavailable
from actionhost_backfill.inference import Decision, EventRow
from actionhost_backfill.nova.tables import EVENTS, columns_of, nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.state.lease import RunnerLock
from actionhost_backfill.state.tables import FILLED, LEFT_NULL

#: Instances whose events are decided together: at most this many ...
PLAN_INSTANCES = 500
#: ... and at most this many NULL events (one instance with more is a chunk
#: alone).  A chunk's rows and evidence are what the planner holds in memory, and
#: instances differ by orders of magnitude in events.  The bound counts NULL
#: events only: an instance's evidence also holds its events with a host (after
#: the cut-over, or filled by an earlier run), so a chunk of instances with long
#: recorded histories and few NULL events is larger; the 500 instances bound it.
#: At 1 M events on PostgreSQL (66 NULL events per instance) chunks of 500
#: instances peaked at 301 MB RSS, chunks cut at 8,000 events at 145 MB, in the
#: same time (docs/benchmarks.md, "Garbage collection").
CHUNK_EVENTS = 8_000
#: Events whose action is gone carry no evidence: a chunk of them is this long.
ORPHAN_EVENTS = 10_000

_PLAN_TABLES = sa.MetaData()
#: The range's NULL-host events with their instance, decided a chunk of
#: instances at a time (temporary, on the planner's connection).
NULL_EVENTS = sa.Table(
    "ah_null",
    _PLAN_TABLES,
    *columns_of(EVENTS, "id", "action_id"),
    *columns_of("instance_actions", "instance_uuid"),
    *columns_of(EVENTS, "event", "start_time", "finish_time", "result"),
)
#: What the rules are given of each NULL-host event (an ``EventRow``, host aside).
NULL_EVENT_COLUMNS = tuple(
    NULL_EVENTS.c[name]
    for name in ("id", "action_id", "event", "start_time", "finish_time", "result")
)
#: The plan: one decision per event, applied in id order (``engine/fill.py``).
PLAN = sa.Table(
    "ah_plan",
    _PLAN_TABLES,
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("host", sa.String(255)),
    sa.Column("rule", sa.String(32)),
    # Set by the dialect while applying a batch: 1 where the host was written.
    sa.Column("applied", sa.SmallInteger),
)


def still_null(t: sa.Table) -> sa.ColumnElement[bool]:
    """``host IS NULL`` in a form the host index cannot serve.

    Most of the table is NULL before a backfill, so a planner that reads the
    host index for ``host IS NULL`` walks most of it (MariaDB does, for the
    row locks of every batch; PostgreSQL does with stale statistics).  The
    toolkit always knows the ids it wants: the primary key must drive.
    """
    return sa.func.length(t.c.host).is_(None)


def cut(counts: list[int], instances: int, events: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive runs of instances having ``counts`` NULL events
    each: at most ``instances`` instances and, unless one alone has more, ``events`` events."""
    start = total = 0
    for i, n in enumerate(counts):
        if i > start and (i - start >= instances or total + n > events):
            yield start, i
            start, total = i, 0
        total += n
    if start < len(counts):
        yield start, len(counts)


@dataclass
class Chunk:
    """Whole instances (``uuids``; none for events whose action is gone) and their
    NULL events, decided together; ``frontier`` and ``last`` for the pipeline."""

    uuids: list[str]
    events: list[EventRow]
    frontier: int | None = None
    last: bool = False


#: In place of a chunk: the planner saw a stop request.
_STOPPED = object()


class Planner:
    def __init__(
        self,
        conn: sa.Connection,
        snapshot: EvidenceSnapshot,
        *,
        url: URL,
        stop: threading.Event,
        bar: Callable[[int | None, str], Progress],
        on_decided: Callable[[str, list[EventRow], list[Decision], object], None] | None = None,
        settled_by: Settling | None = None,
        exclude: frozenset[str] = frozenset(),
        deciders: Deciders | None = None,
    ):
        self.conn = conn
        self.snapshot = snapshot
        self.url = url
        self.stop = stop
        self.bar = bar
        self.on_decided = on_decided
        self.exclude = exclude
        self.seconds = 0.0
        self.settled_by = settled_by
        """Leave out events complete runs of these state tables already decided
        (:mod:`~actionhost_backfill.engine.settled`); None: decide every NULL event."""
        self.settled = Settled()
        self.deciders = deciders or Deciders(1, exclude)
        """Where the rules run (``engine/workers.py``): in line, or in worker processes."""

    @property
    def plan(self) -> sa.Table:
        return PLAN

    def drop(self) -> None:
        """Drop the planner's temporary tables."""
        for name in _PLAN_TABLES.tables:
            self.snapshot.drop_temp(name)
        self.conn.commit()

    def upper_bound(self, table: str, after: int, horizon: int, budget: int | None) -> int:
        """``horizon``, or with --max-rows the id of the budget-th NULL event: no more
        rows than that can be written from this range (no point planning what will
        not be applied now); when fewer were written, the next range is planned."""
        if budget is None:
            return horizon
        t = nova(table)
        cutoff = self.conn.execute(
            sa.select(t.c.id)
            .where(t.c.id > after, t.c.id <= horizon, still_null(t))
            .order_by(t.c.id)
            .offset(max(0, budget - 1))
            .limit(1)
        ).scalar()
        self.conn.rollback()
        return horizon if cutoff is None else cutoff

    def undecided(self, table: str, after: int, upper: int) -> tuple[int, Settled]:
        """How many NULL-host events of ``(after, upper]`` a run would decide, and how
        many it would leave alone as settled (reads only; the plan is left empty)."""
        total, left_out = self._prepare(table, after, upper)
        self.conn.commit()
        return total, left_out

    def prepare(self, table: str, after: int, upper: int) -> int:
        """The NULL-host events of ``(after, upper]`` to decide (settled ones left out and
        counted): how many (:mod:`~actionhost_backfill.engine.pipeline` decides them)."""
        total, left_out = self._prepare(table, after, upper)
        self.settled.add(left_out)
        return total

    def decide_chunks(self, chunks: Iterable[Chunk | object], *, commit: bool = False) -> Iterator:
        """``(work, decisions)`` for each :class:`Chunk` of ``chunks`` in their order (the
        chunk is ``work.tag``, its evidence ``work.evidence``); other items pass through.

        The evidence of each chunk is read here, on the planner's connection, in
        chunk order; the rules run where :attr:`deciders` runs them.  ``commit``:
        end the read transaction after each chunk's evidence.
        """

        def loaded():
            for chunk in chunks:
                if isinstance(chunk, Chunk):
                    evidence = self.snapshot.load(chunk.uuids)
                    if commit:
                        self.conn.commit()
                    yield Work(chunk.events, evidence, chunk)
                else:
                    yield chunk

        return self.deciders.decide(loaded())

    def _prepare(self, table: str, after: int, upper: int) -> tuple[int, Settled]:
        """The NULL-host events of ``(after, upper]`` to decide, those complete runs
        already decided left out: how many, and what was left out."""
        snapshot = self.snapshot
        total = self._copy_null_events(table, after, upper)
        left_out = Settled()
        if total and self.settled_by is not None:
            left_out = drop_settled(
                self.conn, NULL_EVENTS, table, self.settled_by, snapshot.present
            )
            total -= left_out.events
        return total, left_out

    def _copy_null_events(self, events_table: str, after: int, upper: int) -> int:
        """Copy the NULL-host events of ``(after, upper]`` with their instance; empty the plan.

        Returns how many events there are to decide.
        """
        snapshot = self.snapshot
        t = nova(events_table)
        joined, owner = snapshot.with_owner(t)
        select = (
            sa.select(
                t.c.id,
                t.c.action_id,
                owner.label("instance_uuid"),
                t.c.event,
                t.c.start_time,
                t.c.finish_time,
                t.c.result,
            )
            .select_from(joined)
            .where(t.c.id > after, t.c.id <= upper, t.c.host.is_(None))
        )
        snapshot.create_temp(NULL_EVENTS.name, select, ["instance_uuid", "id"], columns=NULL_EVENTS)
        snapshot.drop_temp(PLAN.name)
        snapshot.create_empty(PLAN)
        self.conn.commit()
        count = self.conn.execute(sa.select(sa.func.count()).select_from(NULL_EVENTS)).scalar()
        self.conn.commit()
        return int(count or 0)

    def _null_chunks(self, instances: int) -> Iterator[tuple[list[str], list[EventRow]]]:
        """The NULL-host events, a chunk of whole instances at a time (uuid order),
        then the events whose action is gone (id order, no instance)."""
        n = NULL_EVENTS
        # The instance list is read once (tens of bytes per instance): asking
        # the server for "the next 500 after X" each time made MariaDB group
        # the whole rest of the table per chunk.
        everyone = self.conn.execute(
            sa.select(n.c.instance_uuid, sa.func.count())
            .where(n.c.instance_uuid.is_not(None))
            .group_by(n.c.instance_uuid)
            .order_by(n.c.instance_uuid)
        ).all()
        self.conn.commit()
        for start, stop in cut([r[1] for r in everyone], instances, CHUNK_EVENTS):
            uuids = [r[0] for r in everyone[start:stop]]
            yield uuids, self.null_events(uuids)
        for events, _ in self.orphan_chunks():
            yield [], events

    def null_events(self, uuids: list[str]) -> list[EventRow]:
        """The NULL-host events of these instances, in id order."""
        n = NULL_EVENTS
        # Sorted here: "ORDER BY id" lets MariaDB walk the whole id index
        # instead of looking the instances up.
        rows = sorted(
            self.conn.execute(
                sa.select(*NULL_EVENT_COLUMNS).where(
                    self.snapshot.dialect.in_values(n.c.instance_uuid, uuids)
                )
            ).all(),
            key=lambda r: r[0],
        )
        self.conn.commit()
        return [EventRow(*r) for r in rows]

    def orphan_chunks(self) -> Iterator[tuple[list[EventRow], int | None]]:
        """The NULL-host events whose action is gone (no instance, no evidence), in id
        order, :data:`ORPHAN_EVENTS` at a time, each chunk with the id of the next
        such event (None after the last): read a chunk at a time, never all at once."""
        size = ORPHAN_EVENTS
        page = self._orphans_after(0, size + 1)
        while page:
            events, ahead = page[:size], page[size:]
            yield events, (ahead[0].id if ahead else None)
            if not ahead:
                return
            page = self._orphans_after(events[-1].id, size + 1)

    def _orphans_after(self, after: int, limit: int) -> list[EventRow]:
        n = NULL_EVENTS
        rows = self.conn.execute(
            sa.select(*NULL_EVENT_COLUMNS)
            .where(n.c.instance_uuid.is_(None), n.c.id > after)
            .order_by(n.c.id)
            .limit(limit)
        ).all()
        self.conn.commit()
        return [EventRow(*r) for r in rows]

    def _checked_chunks(self, lease: RunnerLock | None) -> Iterator[Chunk | object]:
        """:meth:`_null_chunks`, the stop request and the lease looked at before each."""
        for uuids, events in self._null_chunks(PLAN_INSTANCES):
            if self.stop.is_set():
                yield _STOPPED
                return
            if lease is not None:
                lease.check()
            yield Chunk(uuids, events)

    def plan_range(
        self,
        table: str,
        after: int,
        upper: int,
        *,
        lease: RunnerLock | None = None,
        tally: Counter | None = None,
    ) -> int | None:
        """Decide the NULL-host events of ``(after, upper]``; return how many, None if stopped.

        ``tally``: count decisions per (outcome, rule) there instead of keeping them.
        """
        started = time.monotonic()
        conn = self.conn
        decided = 0
        try:
            total, left_out = self._prepare(table, after, upper)
            self.settled.add(left_out)
            bar = self.bar(total, f"plan {table}") if total else silent()
            try:
                for done in self.decide_chunks(self._checked_chunks(lease)):
                    if done is _STOPPED:
                        return None
                    work, decisions = done
                    events, evidence = work.events, work.evidence
                    if self.on_decided is not None:
                        self.on_decided(table, events, decisions, evidence)
                    if tally is not None:
                        tally.update(
                            ((FILLED if d.filled else LEFT_NULL), d.rule) for d in decisions
                        )
                    else:
                        bulk.insert_rows(
                            conn,
                            self.plan.name,
                            ("event_id", "host", "rule"),
                            [(d.event_id, d.host, d.rule) for d in decisions],
                        )
                    conn.commit()
                    decided += len(decisions)
                    bar.update(len(decisions))
                    collector.between_batches()  # planning alone: no applier to stall
            finally:
                bar.close()
        except sa.exc.DBAPIError as exc:
            db.rollback_hard(conn)
            if db.is_connection_lost(exc):
                raise DatabaseUnavailable(
                    f"lost the connection to {mask_url(self.url)} while planning {table} after id "
                    f"{after} (nothing was written; the checkpoint is safe): once the server is "
                    "back, run the same command again to resume"
                ) from None
            raise
        finally:
            self.seconds += time.monotonic() - started
        return decided
