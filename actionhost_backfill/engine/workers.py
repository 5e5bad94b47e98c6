"""Planners in parallel, each reading its own evidence (``backfill --workers N``).

The instances are split into N *shares* by uuid (ranges compared byte by
byte, balanced by their actions; :func:`share_bounds`).  Each share has its own
planner in a process of its own, with its own connection: it takes an evidence
snapshot of its share's instances only
(:meth:`~actionhost_backfill.engine.evidence_tables.EvidenceTables.take_share`),
copies its share of a range's NULL events and decides them exactly as one
planner would (:meth:`~actionhost_backfill.engine.planner.Planner.decide_prepared`):
orphans (in the first share), then its instances in the order of their first
NULL event, a chunk at a time, each chunk with the share's frontier.  An
instance is in one share, so it is decided by one planner with all its
evidence, live and archived.

What concerns the whole cell is judged once, by the coordinator (the runner's
own planner connection): the eras, the clock skew (from its own copy of the
migration rows) and the known hosts, the hosts each share's tables record
included (:meth:`~actionhost_backfill.engine.evidence_tables.EvidenceTables.take_cell`).
Every planner decides with those, so the decisions are those of one planner.

The coordinator hands each chunk on as it arrives, from whichever planner
sends it (to the applier where deciding and applying overlap, else into the
plan or, in a dry run, the counts), with the **frontier** of all of them: the smallest of the
shares' frontiers (every NULL event at or below it is decided, in every
share).  The applier, the checkpoint and a resume after ``kill -9`` are as
with one planner.  A planner that gets ahead blocks on its pipe: the lead
stays bounded (a chunk per planner, and the hand-over's
:data:`~actionhost_backfill.engine.pipeline.LEAD`).

Planners are started with ``spawn`` and read their orders from a pipe whose
only writer is the runner: when the runner dies, even by ``kill -9``, the pipe
reaches end of file (or a write to it fails) and the planner exits, its
connection and temporary tables with it.  A stop request, or the runner
stopping mid-range (``--max-rows``), stops the planners: the run ends there,
and the resumed run starts new ones, which take their shares again.

With ``--workers 1`` no process is started: the runner's planner decides.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db, dialects
from actionhost_backfill.engine import collector
from actionhost_backfill.engine import planner as planning
from actionhost_backfill.engine.evidence import EvidenceSnapshot, SnapshotStats
from actionhost_backfill.engine.evidence_tables import Share
from actionhost_backfill.engine.planner import Decided, Planner, Stopped, connection_lost
from actionhost_backfill.engine.progress import silent
from actionhost_backfill.engine.settled import Settled, settling_runs
from actionhost_backfill.errors import WorkerFailed
from actionhost_backfill.nova.tables import nova
from actionhost_backfill.state.lease import RunnerLock
from actionhost_backfill.state.location import StateLocation
from actionhost_backfill.state.tables import state

#: How often the coordinator, waiting for the planners, looks at the stop request.
POLL_SECONDS = 0.2

RESUME = "run the same command again to resume (--workers 1 decides in the runner itself)"


def share_bounds(conn: sa.Connection, count: int, *, archived: bool) -> list[Share]:
    """At most ``count`` shares of the instances, about equal in actions (live, and
    ``archived`` too): each share's instances are a range of uuids in byte order."""
    weights: Counter[str] = Counter()
    for name in (
        ("instance_actions", "shadow_instance_actions") if archived else ("instance_actions",)
    ):
        t = nova(name)
        for uuid, n in conn.execute(
            sa.select(t.c.instance_uuid, sa.func.count())
            .where(t.c.instance_uuid.is_not(None))
            .group_by(t.c.instance_uuid)
        ):
            weights[uuid] += n
    conn.rollback()
    total = sum(weights.values())
    edges: list[str | None] = [None]
    running = 0
    for uuid in sorted(weights, key=lambda u: u.encode()):
        if len(edges) < count and running >= total * len(edges) / count:
            edges.append(uuid)
        running += weights[uuid]
    edges.append(None)
    return [Share(low, high) for low, high in itertools.pairwise(edges)]


@dataclass(frozen=True)
class _Orders:
    """What a share's planner is started with."""

    url: URL
    location: StateLocation
    share: Share
    lock_timeout: float
    basis: dict
    """The decisions' basis (``engine/settled.py``): which earlier runs' NULLs stand."""
    exclude: frozenset[str]
    audit_available: bool
    """Whether the state schema exists (a dry run may come before it)."""
    chunking: tuple[int, int]
    """The runner's chunk bounds (:data:`~actionhost_backfill.engine.planner.PLAN_INSTANCES`,
    :data:`~actionhost_backfill.engine.planner.CHUNK_EVENTS`): chunks cut as one planner cuts them."""


def _serve(pipe, orders: _Orders) -> None:  # runs in the planner's process
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the
    # runner turns them into a stop and closes the pipe; the planner ends with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
        try:
            with collector.collect_between_batches():
                _plan_share(pipe, orders)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise
        except sa.exc.DBAPIError as exc:  # handed to the runner, raised there
            lost = db.is_connection_lost(exc)
            pipe.send(("lost" if lost else "error", f"{type(exc).__name__}: {exc}"))
        except Exception as exc:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def _plan_share(pipe, orders: _Orders) -> None:
    planning.PLAN_INSTANCES, planning.CHUNK_EVENTS = orders.chunking  # this process's own
    engine = db.create_engine(orders.url, orders.location, attach="if-exists")
    try:
        with db.connect(engine) as conn:
            dialects.for_connection(conn).configure_session(conn, orders.lock_timeout)
            conn.commit()
            snapshot = EvidenceSnapshot(
                conn, orders.location, audit_available=orders.audit_available
            )
            settled_by = (
                settling_runs(conn, state(orders.location.schema), orders.basis)
                if orders.audit_available
                else None
            )
            conn.rollback()
            share_planner = Planner(
                conn,
                snapshot,
                url=orders.url,
                stop=threading.Event(),
                bar=lambda *_: silent(),
                settled_by=settled_by,
                exclude=orders.exclude,
                share=orders.share,
            )
            try:
                while (message := pipe.recv()) is not None:
                    kind, *args = message
                    if kind == "take":
                        pipe.send(("taken", *snapshot.take_share(orders.share)))
                    elif kind == "hosts":
                        snapshot.hosts = args[0]
                    else:  # "range"
                        table, after, upper = args
                        share_planner.settled = Settled()
                        total = share_planner.prepare(table, after, upper)
                        pipe.send(("total", total, share_planner.settled))
                        for item in share_planner.decide_prepared(upper, lease=None):
                            pipe.send(("decided", item.rows, item.frontier, item.last))
                            collector.between_batches()
            finally:
                with contextlib.suppress(Exception):
                    share_planner.drop()
                    snapshot.drop()
    finally:
        engine.dispose()


class _Planner:
    """A share's planner process, seen from the runner."""

    def __init__(self, context, orders: _Orders, number: int):
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(theirs, orders), name=f"planner-{number}", daemon=True
        )
        self.process.start()
        theirs.close()  # the planner's end lives there only: its EOF is our exit
        self.url = orders.url

    def send(self, *message) -> None:
        try:
            self.pipe.send(message)
        except (BrokenPipeError, EOFError, OSError):
            self.receive("")  # it exited: say why

    def receive(self, expected: str) -> tuple:
        try:
            kind, *values = self.pipe.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            raise WorkerFailed(
                f"planner {self.process.name} exited (code {self.process.exitcode}) "
                f"(nothing undecided was written; the checkpoint is safe): {RESUME}"
            ) from None
        if kind == "lost":
            raise connection_lost(self.url, f"in {self.process.name}")
        if kind == "error":
            raise WorkerFailed(f"planner {self.process.name} failed: {values[0]}: {RESUME}")
        if kind != expected:
            raise WorkerFailed(f"planner {self.process.name} sent {kind!r}, not {expected!r}")
        return tuple(values)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pipe.send(None)
        self.pipe.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class Shares:
    """``workers`` planners, each deciding its share of the instances (started by
    :meth:`take`, stopped by :meth:`close`)."""

    def __init__(
        self,
        workers: int,
        url: URL,
        location: StateLocation,
        *,
        lock_timeout: float,
        basis: dict,
        exclude: frozenset[str],
        audit_available: bool,
    ):
        if workers < 2:
            raise ValueError(f"shares need at least two planners (got {workers})")
        self.workers = workers
        self.url = url
        self.location = location
        self.lock_timeout = lock_timeout
        self.basis = basis
        self.exclude = exclude
        self.audit_available = audit_available
        self.shares: list[Share] = []
        self._pool: list[_Planner] = []

    def __enter__(self) -> Shares:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pool, self._pool = self._pool, []
        for planner in pool:
            planner.close()

    def pids(self) -> list[int]:
        return [p.process.pid for p in self._pool if p.process.pid is not None]

    def take(self, snapshot: EvidenceSnapshot) -> SnapshotStats:
        """Split the instances, start a planner per share and have each take its share of
        the evidence, while ``snapshot`` (the coordinator's) judges the cell; every
        planner then decides with the cell's known hosts."""
        self.close()
        self.shares = share_bounds(
            snapshot.conn, self.workers, archived=snapshot.has_shadow["instance_actions"]
        )
        pool = self._start()
        try:
            stats = snapshot.take_cell(lambda: [p.receive("taken") for p in pool])
            for planner in pool:
                planner.send("hosts", snapshot.hosts)
        except BaseException:
            self.close()
            raise
        return stats

    def _start(self) -> list[_Planner]:
        context = multiprocessing.get_context("spawn")
        orders = [
            _Orders(
                self.url,
                self.location,
                share,
                self.lock_timeout,
                self.basis,
                self.exclude,
                self.audit_available,
                (planning.PLAN_INSTANCES, planning.CHUNK_EVENTS),
            )
            for share in self.shares
        ]
        self._pool = [_Planner(context, o, n) for n, o in enumerate(orders)]
        for planner in self._pool:
            planner.send("take")
        return self._pool

    def decide_in_order(
        self, planner: Planner, table: str, after: int, upper: int, *, lease: RunnerLock | None
    ) -> Iterator[Decided | Stopped]:
        """:meth:`~actionhost_backfill.engine.planner.Planner.decide_in_order` by the share
        planners: each chunk as it arrives, with the frontier of all of them.
        ``planner`` is the coordinator's: its stop request, progress and settled count."""
        pool = self._pool
        if not pool:
            raise RuntimeError("the share planners are stopped: take() starts them")
        try:
            for p in pool:
                p.send("range", table, after, upper)
            total = 0
            for p in pool:
                count, settled = p.receive("total")
                total += count
                planner.settled.add(settled)
        except BaseException:
            self.close()
            raise
        bar = planner.bar(total, f"plan {table}") if total else silent()
        frontiers = {p.pipe: after for p in pool}
        by_pipe = {p.pipe: p for p in pool}
        waiting = set(by_pipe)
        try:
            while waiting:
                if planner.stop.is_set():
                    yield Stopped()
                    return
                for pipe in wait(list(waiting), timeout=POLL_SECONDS):
                    rows, frontier, last = by_pipe[pipe].receive("decided")
                    if lease is not None:
                        lease.check()
                    frontiers[pipe] = frontier
                    if last:
                        waiting.discard(pipe)
                    bar.update(len(rows))
                    yield Decided(rows, min(frontiers.values()), last=not waiting)
        finally:
            # Stopped, failed, or the caller stopped reading mid-range: the
            # planners' answers would be stale, and the run ends here (take()
            # starts new planners; a resumed run does).
            if waiting and self._pool is pool:
                self.close()
            bar.close()
