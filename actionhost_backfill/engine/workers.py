"""Where the rules run: in line, or in worker processes (``backfill --workers N``).

The planner (the coordinator) keeps reading: it loads each chunk's evidence
from the snapshot on its own connection, in the order it decides chunks, and
hands the plain rows (the chunk's NULL events, its instances' histories and
the cell's known hosts) to a worker process that only runs the rules
(:func:`~actionhost_backfill.inference.infer`, pure: no connection, no clock).
An instance is in one chunk, so it is decided by one worker with all its
evidence, live and archived, and the known hosts (eras, clock skew) are those
of the one snapshot: the decisions are those of one planner.  They come back
in chunk order, so the frontiers, the applier and the checkpoint are as with
one planner.

Workers are started with ``spawn`` (a fresh interpreter: no copy of the
parent's connections or threads) and read their work from a pipe whose only
writer is the parent: when the parent dies, even by ``kill -9``, the pipe
reaches end of file and the worker exits.

With one worker no process is started: the rules run in the planner, as they
always did.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from actionhost_backfill.engine import collector
from actionhost_backfill.errors import WorkerFailed
from actionhost_backfill.inference import Decision, EventRow, infer

RESUME = "run the same command again to resume (--workers 1 decides in the runner itself)"


@dataclass
class Work:
    """One chunk to decide: its NULL events and their evidence
    (:class:`~actionhost_backfill.engine.evidence.BatchEvidence`), and what the
    caller hands over with the decisions."""

    events: list[EventRow]
    evidence: object
    tag: object = None


def _serve(pipe, exclude: frozenset[str]) -> None:  # runs in the worker process
    with collector.collect_between_batches():
        _serve_chunks(pipe, exclude)


def _serve_chunks(pipe, exclude: frozenset[str]) -> None:
    hosts = None
    while True:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            return  # the parent is gone (or closed the pipe): nothing left to decide
        if message is None:
            return
        kind, *args = message
        if kind == "hosts":
            hosts = args[0]
            continue
        events, actions, histories = args
        try:
            reply = ("ok", infer(events, actions, histories, hosts, exclude))
        except Exception as exc:  # handed to the parent, raised there
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            pipe.send(reply)
        except (BrokenPipeError, EOFError, OSError):
            return
        collector.between_batches()


class _Worker:
    def __init__(self, context, exclude: frozenset[str], number: int):
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(theirs, exclude), name=f"planner-{number}", daemon=True
        )
        self.process.start()
        theirs.close()  # the worker's end lives in the worker only: its EOF is our exit
        self.hosts = None
        self.busy = False

    def send(self, work: Work) -> None:
        evidence = work.evidence
        if evidence.hosts is not self.hosts:
            self.pipe.send(("hosts", evidence.hosts))
            self.hosts = evidence.hosts
        self.pipe.send(("infer", work.events, evidence.actions, evidence.histories))
        self.busy = True

    def receive(self) -> list[Decision]:
        try:
            kind, value = self.pipe.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            raise WorkerFailed(
                f"planner worker {self.process.name} exited (code {self.process.exitcode}) "
                f"while deciding (nothing undecided was written; the checkpoint is safe): {RESUME}"
            ) from None
        self.busy = False
        if kind == "error":
            raise WorkerFailed(f"planner worker {self.process.name} failed: {value}: {RESUME}")
        return value

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pipe.send(None)
        self.pipe.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class Deciders:
    """The rules for a stream of chunks, in line or in ``workers`` processes
    (started on first use, stopped by :meth:`close`)."""

    def __init__(self, workers: int = 1, exclude: frozenset[str] = frozenset()):
        if workers < 1:
            raise ValueError(f"workers must be at least 1 (got {workers})")
        self.workers = workers
        self.exclude = exclude
        self._pool: list[_Worker] = []

    def __enter__(self) -> Deciders:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pool, self._pool = self._pool, []
        for worker in pool:
            worker.close()

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._pool if w.process.pid is not None]

    def _start(self) -> list[_Worker]:
        if not self._pool:
            context = multiprocessing.get_context("spawn")
            self._pool = [_Worker(context, self.exclude, n) for n in range(self.workers)]
        return self._pool

    def decide(
        self, items: Iterable[Work | object]
    ) -> Iterator[tuple[Work, list[Decision]] | object]:
        """``(work, decisions)`` for each :class:`Work` of ``items``, in their order; any
        other item is passed through in its place (a stop marker, say).

        ``items`` is read ahead by at most one chunk per worker.
        """
        if self.workers == 1:
            for item in items:
                if isinstance(item, Work):
                    evidence = item.evidence
                    yield (
                        item,
                        infer(
                            item.events,
                            evidence.actions,
                            evidence.histories,
                            evidence.hosts,
                            self.exclude,
                        ),
                    )
                else:
                    yield item
            return
        pool = self._start()
        # In chunk order: (item, the worker deciding it, or None for a pass-through).
        pending: deque[tuple[object, _Worker | None]] = deque()
        turn = 0

        def head():
            item, worker = pending.popleft()
            return item if worker is None else (item, worker.receive())

        try:
            for item in items:
                if isinstance(item, Work):
                    worker = pool[turn % len(pool)]
                    turn += 1
                    # One chunk per worker at a time: neither side ever blocks
                    # sending while the other is blocked sending to it.
                    while worker.busy:
                        yield head()
                    worker.send(item)
                    pending.append((item, worker))
                else:
                    pending.append((item, None))
                while pending and (pending[0][1] is None or pending[0][1].pipe.poll()):
                    yield head()
            while pending:
                yield head()
        except GeneratorExit:
            # The caller stopped reading (after its last chunk, on a stop request,
            # or failing itself).  With chunks still being decided the pool is
            # stopped (their answers are of no use) and the next stream starts
            # afresh; else it serves the next stream.  Only this stream's pool: a
            # stream closed late must not stop a newer one's.
            if any(w.busy for w in pool) and self._pool is pool:
                self.close()
            raise
        except BaseException:
            # A worker failed (it is idle now, but no better), or reading the
            # chunks did: the pool is stopped.
            if self._pool is pool:
                self.close()
            raise
