"""The one writer: every change the toolkit makes to Nova's tables goes through :class:`Applier`.

The backfill and the revert hand it a :class:`BatchWork` (what one batch
covers and how it is written); the applier owns everything around it, the same
for both: one short transaction per batch, bounded lock waits (the session is
set up by the dialect), retries with backoff on deadlock, lock-wait timeout,
serialization failure and Galera certification failure, the batch size
(:class:`~actionhost_backfill.engine.sizing.BatchSizer`), ``--sleep``, the
throttle checks between batches (:mod:`~actionhost_backfill.engine.throttling`),
``--max-rows``, the runner lease, progress and the checkpoint, committed in
the same transaction as the batch.  Killed at any instant, the batch in flight
is rolled back by the database and the run resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db, dialects
from actionhost_backfill.dialects import Dialect
from actionhost_backfill.engine import collector
from actionhost_backfill.engine.progress import Progress
from actionhost_backfill.engine.sizing import MAX_BATCH, BatchSizer, pause
from actionhost_backfill.engine.throttling import Throttle, ThrottleOptions
from actionhost_backfill.errors import ActionHostError, BadInput, DatabaseUnavailable
from actionhost_backfill.redact import mask_url
from actionhost_backfill.state import runs
from actionhost_backfill.state.lease import RunnerLock
from actionhost_backfill.state.runs import Checkpoint
from actionhost_backfill.state.tables import StateTables

log = logging.getLogger(__name__)

#: Longest pause between two attempts of a failed batch.
MAX_BACKOFF = 5.0


@dataclass
class Applied:
    """What one batch did: rows it covered, rows it changed, and counts per (outcome, rule)."""

    rows: int
    counts: Counter = field(default_factory=Counter)
    written: int | None = None
    """Rows of Nova's tables the batch changed (what --max-rows counts); None: ``rows``."""

    @property
    def changed(self) -> int:
        return self.rows if self.written is None else self.written


class BatchWork(Protocol):
    """One table's work, batch by batch, in id order."""

    table: str

    def bound(self, conn: sa.Connection, after: int, size: int) -> int | None:
        """The last id of the next batch (at most ``size`` rows after ``after``); None when done."""

    def apply(self, conn: sa.Connection, after: int, upto: int, batch: int) -> Applied:
        """Write the batch ``(after, upto]`` (the applier commits or rolls back)."""


@dataclass
class WriteOptions:
    """How batched writes go, for the backfill and the revert alike."""

    batch_size: int | None = None
    """Fixed rows per batch; None sizes batches toward ``target_batch_seconds``."""
    target_batch_seconds: float | None = None
    """None: :data:`~actionhost_backfill.engine.sizing.DEFAULT_TARGET_SECONDS`."""
    sleep: float = 0.0
    max_rows: int | None = None
    """Rows written (filled, or reverted) before stopping; counted per batch."""
    lock_timeout: float = 5.0
    max_retries: int = 5
    throttle: ThrottleOptions = field(default_factory=ThrottleOptions)

    def validate(self) -> None:
        if self.batch_size is not None and not 1 <= self.batch_size <= MAX_BATCH:
            raise BadInput(
                f"--batch-size must be between 1 and {MAX_BATCH} (got {self.batch_size})"
            )
        if self.target_batch_seconds is not None and not 0.01 <= self.target_batch_seconds <= 60:
            raise BadInput(
                f"--target-batch-seconds must be between 0.01 and 60 (got {self.target_batch_seconds})"
            )
        if not 0 <= self.sleep <= 3600:
            raise BadInput(f"--sleep must be between 0 and 3600 seconds (got {self.sleep})")
        if self.max_rows is not None and self.max_rows < 1:
            raise BadInput(f"--max-rows must be at least 1 (got {self.max_rows})")
        if not 0 < self.lock_timeout <= 3600:
            raise BadInput(
                f"--lock-timeout must be between 0 and 3600 seconds (got {self.lock_timeout})"
            )
        if not 0 <= self.max_retries <= 100:
            raise BadInput(f"--max-retries must be between 0 and 100 (got {self.max_retries})")
        self.throttle.validate()


def prepare_session(conn: sa.Connection, options: WriteOptions) -> tuple[Dialect, BatchSizer]:
    """The connection's dialect, its session set up (lock waits), and the batch sizer,
    capped by what the server allows (Galera write-set limits).  The caller commits."""
    dialect = dialects.for_connection(conn)
    sizer = BatchSizer(options.batch_size, options.target_batch_seconds)
    cap = dialect.configure_session(conn, options.lock_timeout)
    if cap is not None:
        # Logged here, once per run: the pipeline's writer sets its session up too.
        log.info("Galera node: batches capped at %s events (write-set limits)", cap)
        sizer.cap(cap)
    return dialect, sizer


def batch_end(
    conn: sa.Connection, column: sa.ColumnElement, where: list, after: int, size: int
) -> int | None:
    """The ``size``-th value of ``column`` above ``after`` among rows matching ``where``
    (or the last one, when fewer are left); None when none is left."""
    rest = [*where, column > after]
    end = conn.execute(
        sa.select(column).where(*rest).order_by(column).offset(size - 1).limit(1)
    ).scalar()
    if end is None:
        end = conn.execute(sa.select(sa.func.max(column)).where(*rest)).scalar()
    return end


@dataclass
class ApplyStats:
    batches: int = 0
    rows: int = 0
    retries: int = 0
    batch_seconds: list[float] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


class Applier:
    """Applies :class:`BatchWork` on ``conn``, recording progress in run ``run_id``.

    ``write=False`` (a dry run) rolls every batch back and records nothing;
    ``budget`` (``--max-rows``) counts the rows batches changed, not those they examined;
    ``keep_counts`` adds each batch's counts to the run's ``run_counts`` (the
    backfill's per-rule figures).  ``stats`` sums what committed batches did.
    """

    def __init__(
        self,
        conn: sa.Connection,
        *,
        url: URL,
        st: StateTables,
        run_id: int | None,
        sizer: BatchSizer,
        options: WriteOptions,
        stop: threading.Event,
        lease: RunnerLock | None,
        progress: Progress,
        what: str,
        write: bool = True,
        keep_counts: bool = True,
        throttle: Throttle | None = None,
    ):
        self.conn = conn
        self.url = url
        self.st = st
        self.run_id = run_id
        self.sizer = sizer
        self.options = options
        self.stop = stop
        self.lease = lease
        self.progress = progress
        self.what = what
        self.write = write
        self.keep_counts = keep_counts
        self.throttle = throttle
        self.budget = options.max_rows
        self.stats = ApplyStats()

    @property
    def stopping(self) -> bool:
        return self.stop.is_set() or (self.budget is not None and self.budget <= 0)

    def run(self, work: BatchWork, checkpoint: Checkpoint) -> bool:
        """Apply ``work`` from ``checkpoint`` on; True when the table is done (else stopped)."""
        while not self.stopping:
            # Between batches, never holding a lock: wait while a throttle check says so.
            if self.throttle is not None and self.throttle.wait():
                break
            if self.lease is not None:
                self.lease.check()
            size = self.sizer.size
            if self.budget is not None:
                size = max(1, min(size, self.budget))
            started = time.monotonic()
            with collector.in_batch():
                applied, upto, retries = self._one_batch(work, checkpoint, size, started)
            if upto is None:
                return retries >= 0
            checkpoint.last_id = upto
            checkpoint.batches += 1
            seconds = time.monotonic() - started
            self.stats.batches += 1
            self.stats.rows += applied.rows
            self.stats.batch_seconds.append(seconds)
            self.stats.counts.update(applied.counts)
            self.sizer.observe(applied.rows, seconds)
            if self.budget is not None:
                self.budget -= applied.changed
            self.progress.update(applied.rows)
            collector.between_batches()  # committed: no lock held
            if self.options.sleep and pause(self.options.sleep, self.stop):
                break
        return False

    def _one_batch(
        self, work: BatchWork, checkpoint: Checkpoint, size: int, started: float
    ) -> tuple[Applied, int | None, int]:
        """Returns (applied, upto, retries); upto None when nothing is left (retries -1: stopped)."""
        conn, after = self.conn, checkpoint.last_id
        retries = 0
        while True:
            try:
                upto = work.bound(conn, after, size)
                if upto is None:
                    conn.rollback()
                    return Applied(0), None, 0
                applied = work.apply(conn, after, upto, checkpoint.batches + 1)
                if self.write:
                    if self.keep_counts:
                        runs.add_counts(conn, self.st, self.run_id, work.table, applied.counts)
                    runs.advance(
                        conn,
                        self.st,
                        self.run_id,
                        work.table,
                        last_id=upto,
                        examined=applied.rows,
                        seconds=time.monotonic() - started,
                        retries=retries,
                    )
                    conn.commit()
                else:
                    conn.rollback()
                return applied, upto, retries
            except sa.exc.DBAPIError as exc:
                retries = self._after_failure(exc, work.table, after, retries)
                if retries < 0:
                    return Applied(0), None, -1

    def _after_failure(self, exc: sa.exc.DBAPIError, table: str, after: int, retries: int) -> int:
        """Roll back; raise when the failure is final; else wait and return the retry count.

        Returns -1 when a stop was requested while waiting.
        """
        db.rollback_hard(self.conn)
        if isinstance(exc, sa.exc.DBAPIError) and db.is_connection_lost(exc):
            raise DatabaseUnavailable(
                f"lost the connection to {mask_url(self.url)} during a {self.what} batch of "
                f"{table} after id {after} (the batch was rolled back; the checkpoint is safe): "
                "once the server is back, run the same command again to resume"
            ) from None
        if not db.is_retryable(exc):
            raise exc
        if retries >= self.options.max_retries:
            log.warning(
                "giving up a batch of %s after id %s after %s attempts", table, after, retries + 1
            )
            reason = db.translate_error(exc, self.url)
            raise ActionHostError(
                f"a {self.what} batch of {table} after id {after} failed {retries + 1} times "
                f"({reason}): find the blocking transaction, then run the same command again "
                "to resume"
            ) from None
        retries += 1
        self.stats.retries += 1
        log.info(
            "retrying a batch of %s after id %s (%s/%s): %s",
            table,
            after,
            retries,
            self.options.max_retries,
            exc,
        )
        if pause(min(0.1 * 2**retries, MAX_BACKOFF), self.stop):
            return -1
        return retries
