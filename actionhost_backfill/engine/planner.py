"""Planning: decide every NULL-host event of a range, instance by instance, into the plan.

Planning only reads.  It copies the range's NULL-host events (with their
instance) into a temporary table (``ah_null``; both it and the plan are declared
here), then decides the events whose action is gone (no evidence), and the
instances in the order of their first NULL event, a chunk of whole instances at
a time: it loads their evidence once
(:class:`~actionhost_backfill.engine.evidence.EvidenceSnapshot`) and runs the
rules (:func:`~actionhost_backfill.inference.infer`).  Each chunk comes with its
frontier, the id up to which every NULL event is then decided, so the applier
may write up to it while planning goes on (``engine/pipeline.py``).  Otherwise
the decisions are bulk-loaded into the plan (``ah_plan``) on the same
connection, or, in a dry run, counted.  With ``--workers N`` planners in
processes of their own decide a share of the instances each
(``engine/workers.py``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.dialects import bulk
from actionhost_backfill.engine import collector
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.engine.evidence_tables import Share
from actionhost_backfill.engine.progress import Progress, silent
from actionhost_backfill.engine.settled import Settled, Settling, drop_settled
from actionhost_backfill.errors import DatabaseUnavailable
from actionhost_backfill.inference import EventRow, infer
from actionhost_backfill.nova.tables import EVENTS, columns_of, nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.state.lease import RunnerLock
from actionhost_backfill.state.tables import FILLED, LEFT_NULL

if TYPE_CHECKING:
    from actionhost_backfill.engine.workers import Shares

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


def connection_lost(url: URL, where: str) -> DatabaseUnavailable:
    """What planning says when the server goes away ``where``: no event is written
    before it is decided, so the checkpoint is safe and the run resumes."""
    return DatabaseUnavailable(
        f"lost the connection to {mask_url(url)} {where} (nothing undecided was written; "
        "the checkpoint is safe): once the server is back, run the same command again to resume"
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
    NULL events, decided together, and the id up to which every NULL event is decided
    once they are (``last``: the range's last chunk)."""

    uuids: list[str]
    events: list[EventRow]
    frontier: int
    last: bool = False


@dataclass
class Decided:
    """One chunk's decisions, ``(event id, host or None, rule)``, and the id up to which
    every NULL event is decided (the **frontier**; ``last``: the range is decided)."""

    rows: list[tuple[int, str | None, str]]
    frontier: int
    last: bool = False


class Stopped:
    """In place of a chunk: the planner saw a stop request."""


class Planner:
    def __init__(
        self,
        conn: sa.Connection,
        snapshot: EvidenceSnapshot,
        *,
        url: URL,
        stop: threading.Event,
        bar: Callable[[int | None, str], Progress],
        on_decided: Callable[[str, list[tuple[int, str | None, str]]], None] | None = None,
        settled_by: Settling | None = None,
        exclude: frozenset[str] = frozenset(),
        share: Share | None = None,
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
        self.share = share
        """Decide only these instances' events (a planner of ``engine/workers.py``)."""

    @property
    def plan(self) -> sa.Table:
        return PLAN

    def drop(self) -> None:
        """Drop the planner's temporary tables."""
        for name in _PLAN_TABLES.tables:
            self.snapshot.drop_temp(name)
        self.conn.commit()

    def empty_plan(self) -> None:
        """An empty plan table on the planner's connection."""
        self.snapshot.drop_temp(PLAN.name)
        self.snapshot.create_empty(PLAN)
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

    def decided(
        self,
        table: str,
        after: int,
        upper: int,
        *,
        lease: RunnerLock | None,
        shares: Shares | None,
    ) -> Iterator[Decided | Stopped]:
        """The decisions of ``(after, upper]``, chunk by chunk, each with its frontier:
        this planner's (:meth:`decide_in_order`), or with ``shares`` those of the share
        planners (:meth:`~actionhost_backfill.engine.workers.Shares.decide_in_order`),
        this planner's plan left empty."""
        if shares is None:
            return self.decide_in_order(table, after, upper, lease=lease)
        self.empty_plan()
        return shares.decide_in_order(self, table, after, upper, lease=lease)

    def decide_in_order(
        self, table: str, after: int, upper: int, *, lease: RunnerLock | None
    ) -> Iterator[Decided | Stopped]:
        """Decide the NULL events of ``(after, upper]``: orphans, then instances in the
        order of their first NULL event, a chunk at a time, each with its frontier."""
        total = self.prepare(table, after, upper)
        bar = self.bar(total, f"plan {table}") if total else silent()
        try:
            for item in self.decide_prepared(upper, lease=lease):
                if isinstance(item, Decided):
                    bar.update(len(item.rows))
                yield item
        finally:
            bar.close()

    def decide_prepared(
        self, upper: int, *, lease: RunnerLock | None
    ) -> Iterator[Decided | Stopped]:
        """:meth:`decide_in_order` once :meth:`prepare` has copied the range's NULL events."""
        conn = self.conn
        n = NULL_EVENTS
        firsts = conn.execute(
            sa.select(n.c.instance_uuid, sa.func.min(n.c.id), sa.func.count())
            .where(n.c.instance_uuid.is_not(None))
            .group_by(n.c.instance_uuid)
        ).all()
        conn.commit()
        firsts.sort(key=lambda r: r[1])
        order = [r[0] for r in firsts]
        starts = [r[1] for r in firsts]
        counts = [r[2] for r in firsts]
        del firsts

        def chunks() -> Iterator[Chunk | Stopped]:
            # Events whose action is gone (no instance, no evidence), in id order.
            frontier = (starts[0] - 1) if starts else upper
            for part, following in self.orphan_chunks():
                if self.stop.is_set():
                    yield Stopped()
                    return
                if lease is not None:
                    lease.check()
                ahead = following - 1 if following is not None else frontier
                yield Chunk([], part, min(frontier, ahead), last=not order and ahead == upper)
            for i, nxt in cut(counts, PLAN_INSTANCES, CHUNK_EVENTS):
                if self.stop.is_set():
                    yield Stopped()
                    return
                if lease is not None:
                    lease.check()
                uuids = order[i:nxt]
                frontier = starts[nxt] - 1 if nxt < len(order) else upper
                yield Chunk(uuids, self.null_events(uuids), frontier, last=frontier == upper)

        handed = False
        for chunk in chunks():
            if isinstance(chunk, Stopped):
                yield chunk
                return
            evidence = self.snapshot.load(chunk.uuids)
            conn.commit()  # no snapshot held open while the rules run or the applier waits
            decisions = infer(
                chunk.events, evidence.actions, evidence.histories, evidence.hosts, self.exclude
            )
            handed = True
            if chunk.last:
                self._release_null_events()
            yield Decided(
                [(d.event_id, d.host, d.rule) for d in decisions], chunk.frontier, chunk.last
            )
        if not handed:
            self._release_null_events()
            yield Decided([], upper, last=True)

    def _release_null_events(self) -> None:
        """The range's NULL events are all read: drop their copy before handing on the
        last chunk.  The applier may have most of the range still to write; the copy
        (a row per NULL event) would hold the server's memory meanwhile, and on
        MariaDB the buffer pool's pages (its temporary tables are InnoDB's).
        :meth:`prepare` makes the next range's."""
        self.snapshot.drop_temp(NULL_EVENTS.name)
        self.conn.commit()

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
        if self.share is not None:
            select = select.where(self.share.holds(owner, snapshot.dialect))
        snapshot.create_temp(
            NULL_EVENTS.name,
            select,
            ["instance_uuid", "id"],
            columns=NULL_EVENTS,
            grouped_by="instance_uuid",
        )
        self.empty_plan()
        count = self.conn.execute(sa.select(sa.func.count()).select_from(NULL_EVENTS)).scalar()
        self.conn.commit()
        return int(count or 0)

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

    def plan_range(
        self,
        table: str,
        after: int,
        upper: int,
        *,
        lease: RunnerLock | None = None,
        tally: Counter | None = None,
        shares: Shares | None = None,
    ) -> int | None:
        """Decide the NULL-host events of ``(after, upper]`` into the plan (in ``shares``'
        planners, when given); return how many, None if stopped.

        ``tally``: count decisions per (outcome, rule) there instead of keeping them.
        """
        started = time.monotonic()
        conn = self.conn
        decided = 0
        try:
            for item in self.decided(table, after, upper, lease=lease, shares=shares):
                if isinstance(item, Stopped):
                    return None
                rows = item.rows
                if self.on_decided is not None:
                    self.on_decided(table, rows)
                if tally is not None:
                    tally.update(
                        ((FILLED if host is not None else LEFT_NULL), rule)
                        for _, host, rule in rows
                    )
                else:
                    bulk.insert_rows(conn, self.plan.name, ("event_id", "host", "rule"), rows)
                conn.commit()
                decided += len(rows)
                collector.between_batches()  # planning alone: no applier to stall
        except sa.exc.DBAPIError as exc:
            db.rollback_hard(conn)
            if db.is_connection_lost(exc):
                raise connection_lost(
                    self.url, f"while planning {table} after id {after}"
                ) from None
            raise
        finally:
            self.seconds += time.monotonic() - started
        return decided
