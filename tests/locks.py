"""Another session holding a lock exactly while the toolkit writes its first batch.

``held_during_first_batch`` patches a work class's ``bound`` (the first thing
a batch does) so that, before the first batch begins, a second connection
takes the lock (a row lock FOR UPDATE on PostgreSQL and MySQL, SQLite's write
lock) and keeps it.  It lets go when the applier logs that it is retrying a
batch (``release_on="retry"``) or giving one up (``release_on="give-up"``).
No sleeps stand in for synchronisation: the batch starts only once the lock
is held, and the lock is released on the applier's own signal.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa


class _RetrySignal(logging.Handler):
    def __init__(self, event: threading.Event, seen: dict):
        super().__init__(logging.INFO)
        self.event = event
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("retrying a batch of "):
            self.seen["retried"] = True
            if self.seen["release_on"] == "retry":
                self.event.set()
        elif message.startswith("giving up a batch of "):
            self.event.set()


@contextlib.contextmanager
def held_during_first_batch(
    monkeypatch: pytest.MonkeyPatch,
    work_class: type,
    url: str,
    backend: str,
    row_id: int | None,
    *,
    release_on: str = "retry",
    hold_at_most: float = 60.0,
) -> Iterator[dict]:
    """Yields a dict that records ``retried`` (whether the applier retried while held)."""
    held, release = threading.Event(), threading.Event()
    seen: dict = {"retried": False, "release_on": release_on}
    engine = (
        sa.create_engine(url, connect_args={"isolation_level": None, "timeout": 30})
        if backend == "sqlite"
        else sa.create_engine(url)
    )
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with engine.connect() as conn:
                if backend == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.begin()
                    conn.execute(
                        sa.text("SELECT id FROM instance_actions_events WHERE id = :i FOR UPDATE"),
                        {"i": row_id},
                    )
                held.set()
                release.wait(hold_at_most)
                if backend == "sqlite":
                    conn.exec_driver_sql("ROLLBACK")
                else:
                    conn.rollback()
        except BaseException as exc:  # surfaced in the test's thread
            errors.append(exc)
            held.set()

    thread = threading.Thread(target=hold)
    original = work_class.bound

    def bound(self, conn, after, size):
        if not thread.is_alive() and not held.is_set():
            conn.rollback()  # our transaction must not hold the lock first
            thread.start()
            held.wait(30)
            if errors:
                raise errors[0]
        return original(self, conn, after, size)

    handler = _RetrySignal(release, seen)
    logger = logging.getLogger("actionhost_backfill.engine.applier")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)

    monkeypatch.setattr(work_class, "bound", bound)
    try:
        yield seen
    finally:
        release.set()
        if thread.is_alive() or held.is_set():
            thread.join(timeout=hold_at_most)
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        engine.dispose()
