"""One runner per database: a second backfill or revert is refused, naming the first.

PostgreSQL: a session advisory lock on the runner's own connection; the
server drops it when the process dies, however it dies.  MySQL/MariaDB and
SQLite: a lease row in the state schema (Galera does not support
``GET_LOCK``), renewed by a heartbeat thread; a lease whose holder process is
gone from this machine, or that expired, can be taken over, so a ``kill -9``
never needs a manual unlock.  On PostgreSQL the same row is kept, for the
message a refused runner prints.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from actionhost_backfill import db
from actionhost_backfill.clock import utcnow
from actionhost_backfill.errors import ActionHostError, RunnerBusy
from actionhost_backfill.state.location import StateLocation
from actionhost_backfill.state.tables import state

LEASE_NAME = "runner"
LEASE_TTL = timedelta(seconds=120)
HEARTBEAT_EVERY = 20.0
_ADVISORY_NAMESPACE = 0x61686200  # "ahb\0"


def _now() -> datetime:
    return utcnow().replace(microsecond=0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("State:"):
                    return "Z" not in line.split(":", 1)[1]
    except OSError:
        pass
    return True


@dataclass
class Holder:
    run_id: int | None
    holder: str | None
    hostname: str | None
    pid: int | None
    heartbeat_at: datetime | None
    expires_at: datetime | None
    acquired_at: datetime | None = None

    def describe(self) -> str:
        parts = [f"run {self.run_id}" if self.run_id else "a runner"]
        if self.holder:
            parts.append(f"by {self.holder}")
        if self.heartbeat_at:
            parts.append(f"last seen {self.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC")
        return " ".join(parts)


class RunnerLock:
    """Acquire with :meth:`acquire`, keep with :meth:`heartbeat`, drop with :meth:`release`."""

    def __init__(self, engine: sa.Engine, location: StateLocation):
        self.engine = engine
        self.location = location
        self.dialect = location.dialect
        self.tables = state(location.schema)
        self.token = uuid.uuid4().hex
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.holder = f"{getpass.getuser()}@{self.hostname} pid {self.pid}"
        self._conn: sa.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    # ------------------------------------------------------------------ public

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A short write transaction (the runner's engine begins SQLite ones IMMEDIATE)."""
        with self.engine.begin() as conn:
            yield conn

    def acquire(self, run_id: int | None) -> None:
        if self.dialect.advisory_locks:
            self._acquire_advisory(run_id)
        else:
            self._acquire_lease(run_id)
            self._thread = threading.Thread(target=self._beat, name="actionhost-lease", daemon=True)
            self._thread.start()

    def busy_reason(self) -> str | None:
        """Why :meth:`acquire` would be refused now (another runner alive), else None.

        Reads only: for a caller that must refuse before it writes anything, even
        the lease row (``schema downgrade``: exit 127 leaves the state as it was).
        """
        if self.dialect.advisory_locks:
            namespace, key = advisory_key(self.location.schema)
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                if self.dialect.try_advisory_lock(conn, namespace, key):
                    self.dialect.advisory_unlock(conn, namespace, key)
                    return None
            return self._busy_message(self._read_holder())
        lease = self.tables.lease
        with self.engine.connect() as conn:
            self.dialect.causal_reads(conn)
            row = conn.execute(sa.select(lease).where(lease.c.name == LEASE_NAME)).first()
        if row is None or not row.token or self._takeable(row):
            return None
        return self._busy_message(_holder(row))

    def set_run(self, run_id: int) -> None:
        """Record which run holds the lock (for the message others get)."""
        lease = self.tables.lease
        with self._transaction() as conn:
            conn.execute(
                lease.update()
                .where(lease.c.name == LEASE_NAME, lease.c.token == self.token)
                .values(run_id=run_id)
            )

    def check(self) -> None:
        """Raise if the lease was lost (someone took it over)."""
        if self.lost:
            raise ActionHostError(self.lost)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        lease = self.tables.lease
        with suppress(Exception), self._transaction() as conn:
            conn.execute(
                lease.update()
                .where(lease.c.name == LEASE_NAME, lease.c.token == self.token)
                .values(token=None, run_id=None, expires_at=_now())
            )
        if self._conn is not None:
            with suppress(Exception):
                self.dialect.advisory_unlock(self._conn, _ADVISORY_NAMESPACE, self._key())
            # Never back to the pool: had the unlock failed, a pooled session would
            # keep the lock for the life of this process.  Closed for real, the
            # server ends the session and every lock it held.
            with suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ advisory lock

    def _key(self) -> int:
        return advisory_key(self.location.schema)[1]

    def _acquire_advisory(self, run_id: int | None) -> None:
        try:
            self._conn = self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise db.translate_error(exc, self.engine.url) from None
        self._conn = self._conn.execution_options(isolation_level="AUTOCOMMIT")
        if not self.dialect.try_advisory_lock(self._conn, _ADVISORY_NAMESPACE, self._key()):
            holder = self._read_holder()
            self._conn.close()
            self._conn = None
            raise RunnerBusy(self._busy_message(holder))
        self._write_lease(run_id, force=True)

    # ------------------------------------------------------------------ lease

    def _acquire_lease(self, run_id: int | None) -> None:
        # Two runners on two Galera nodes: the later commit fails certification
        # (a deadlock error); once more, its read then sees the first runner.
        for attempt in range(2):
            try:
                return self._try_lease(run_id)
            except sa.exc.DBAPIError as exc:
                if attempt or not db.is_retryable(exc):
                    raise

    def _try_lease(self, run_id: int | None) -> None:
        lease = self.tables.lease
        with self._transaction() as conn:
            self.dialect.causal_reads(conn)
            row = self._locked_row(conn)
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(lease.insert().values(name=LEASE_NAME))
                except sa.exc.IntegrityError:
                    pass
                row = self._locked_row(conn)
            holder = _holder(row)
            if row.token and row.token != self.token and not self._takeable(row):
                raise RunnerBusy(self._busy_message(holder))
            conn.execute(
                lease.update().where(lease.c.name == LEASE_NAME).values(**self._claim(run_id))
            )

    def _locked_row(self, conn: sa.Connection):
        lease = self.tables.lease
        query = self.dialect.for_update(sa.select(lease).where(lease.c.name == LEASE_NAME))
        return conn.execute(query).first()

    def _takeable(self, row) -> bool:
        if row.expires_at is not None and row.expires_at < _now():
            return True
        return row.hostname == self.hostname and row.pid is not None and not _pid_alive(row.pid)

    def _claim(self, run_id: int | None) -> dict:
        """The lease row's values while this runner holds it."""
        now = _now()
        return dict(
            token=self.token,
            run_id=run_id,
            holder=self.holder,
            hostname=self.hostname,
            pid=self.pid,
            acquired_at=now,
            heartbeat_at=now,
            expires_at=now + LEASE_TTL,
        )

    def _write_lease(self, run_id: int | None, *, force: bool) -> None:
        lease = self.tables.lease
        values = self._claim(run_id)
        with self._transaction() as conn:
            updated = conn.execute(
                lease.update().where(lease.c.name == LEASE_NAME).values(**values)
            ).rowcount
            if not updated:
                conn.execute(lease.insert().values(name=LEASE_NAME, **values))

    def heartbeat(self) -> None:
        lease = self.tables.lease
        now = _now()
        with self._transaction() as conn:
            updated = conn.execute(
                lease.update()
                .where(lease.c.name == LEASE_NAME, lease.c.token == self.token)
                .values(heartbeat_at=now, expires_at=now + LEASE_TTL)
            ).rowcount
        if not updated and not self.dialect.advisory_locks:
            self.lost = (
                "the runner lease was taken over by another process (this one was presumed dead): "
                "stopped; check `actionhost-backfill status` before running again"
            )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            try:
                self.heartbeat()
            except Exception:  # a transient failure: the next beat retries, TTL covers it
                continue

    def _read_holder(self) -> Holder | None:
        lease = self.tables.lease
        try:
            with self.engine.connect() as conn:
                return _holder(
                    conn.execute(sa.select(lease).where(lease.c.name == LEASE_NAME)).first()
                )
        except sa.exc.DBAPIError:
            return None

    def _busy_message(self, holder: Holder | None) -> str:
        who = holder.describe() if holder else "another runner"
        if self.dialect.advisory_locks:
            return (
                f"another backfill or revert is running on this database ({who}): "
                "wait for it to finish, or stop it (Ctrl-C resumes cleanly later)"
            )
        expires = (
            f", lease expires {holder.expires_at:%H:%M:%S} UTC"
            if holder and holder.expires_at
            else ""
        )
        return (
            f"another backfill or revert is running on this database ({who}{expires}): wait for it "
            "to finish; if that process is gone, run again once its lease expires"
        )


def advisory_key(schema: str) -> tuple[int, int]:
    """PostgreSQL: the advisory lock (namespace, key) of the runner lock for ``schema``."""
    return _ADVISORY_NAMESPACE, zlib.crc32(schema.encode()) & 0x7FFFFFFF


def _holder(row) -> Holder | None:
    if row is None:
        return None
    return Holder(
        row.run_id,
        row.holder,
        row.hostname,
        row.pid,
        row.heartbeat_at,
        row.expires_at,
        row.acquired_at,
    )


def live_holder(conn: sa.Connection, location: StateLocation) -> Holder | None:
    """The runner holding this database's lock now (for ``status``), None when none.

    PostgreSQL: whoever holds the advisory lock (``pg_locks``, readable by any
    user), described by the lease row.  Elsewhere: a lease row with a token,
    not expired, whose process is not known dead on this machine.  Reads only.
    """
    lease = state(location.schema).lease
    row = conn.execute(sa.select(lease).where(lease.c.name == LEASE_NAME)).first()
    if location.dialect.advisory_locks:
        held = location.dialect.advisory_lock_held(conn, *advisory_key(location.schema))
        # Held, and the lease row names a runner: a runner that released its lease
        # cleared the token first, while the server may still be ending its session.
        if not held or (row is not None and not row.token):
            return None
        return _holder(row) or Holder(None, None, None, None, None, None)
    if row is None or not row.token:
        return None
    if row.expires_at is not None and row.expires_at < _now():
        return None
    if row.hostname == socket.gethostname() and row.pid is not None and not _pid_alive(row.pid):
        return None
    return _holder(row)
