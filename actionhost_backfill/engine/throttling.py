"""Pausing between batches for what DBAs watch: replica lag, Galera flow control,
server load, a pause file (pt-online-schema-change's ``--max-lag``,
``--max-load``, ``--critical-load``; gh-ost's ``--throttle-flag-file``).

The applier asks :meth:`Throttle.wait` after each committed batch, so a pause
never holds a lock.  Each :class:`Check` says why the next batch should wait
(or None); a critical check stops the run with "intervene" and a resume hint.
Checks read their server on their own short connection, never the runner's.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import dialects
from actionhost_backfill.dialects import galera as galera_node
from actionhost_backfill.engine import collector
from actionhost_backfill.errors import ActionHostError, BadInput
from actionhost_backfill.redact import mask_url

log = logging.getLogger(__name__)

#: Seconds between two looks while throttled (--check-interval, pt-online-schema-change's name).
POLL_SECONDS = 0.5


class CriticalLoad(ActionHostError):
    """A --critical-load threshold was crossed: stop, a person must look."""


class NoReplicas(BadInput):
    """--max-lag with --fail-without-replicas, and no replica to watch."""


@dataclass
class Reading:
    """Why to pause (None: go on), and the lag seen, in seconds, if this check measures lag."""

    reason: str | None
    lag: float | None = None


class Check:
    name = "check"

    def read(self) -> Reading:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PauseFile(Check):
    name = "pause-file"

    def __init__(self, path: str):
        self.path = path

    def read(self) -> Reading:
        if os.path.exists(self.path):
            return Reading(f"{self.path} exists (remove it to go on)")
        return Reading(None)


class _OnServer(Check):
    """A check that reads one server over its own connection (opened once)."""

    def __init__(self, url: URL):
        self.url = url
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.conn: sa.Connection | None = None

    def connection(self) -> sa.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = self.engine.connect()
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.engine.dispose()


class ReplicaLag(_OnServer):
    """The lag a replica reports of itself (MySQL/MariaDB ``Seconds_Behind_Master``,
    a PostgreSQL standby's replay position), read by its dialect."""

    name = "replica lag"

    def __init__(self, url: URL, max_lag: float):
        super().__init__(url)
        self.max_lag = max_lag
        self.dialect = dialects.for_url(url)

    def read(self) -> Reading:
        conn = self.connection()
        try:
            reason, lag = self.dialect.replica_lag(conn, mask_url(self.url), self.max_lag)
        finally:
            conn.rollback()
        return Reading(reason, lag)


class GaleraFlowControl(_OnServer):
    """This node's flow control: paused since the last look, or a long receive queue."""

    name = "galera flow control"

    def __init__(self, url: URL, recv_queue: int = galera_node.RECV_QUEUE_DRAINED):
        super().__init__(url)
        self.dialect = dialects.for_url(url)
        self.recv_queue = recv_queue
        self.paused_ns: int | None = None

    def read(self) -> Reading:
        conn = self.connection()
        try:
            status = self.dialect.galera_flow_status(conn)
        finally:
            conn.rollback()
        paused = int(status.get("wsrep_flow_control_paused_ns") or 0)
        queue = int(status.get("wsrep_local_recv_queue") or 0)
        rose = self.paused_ns is not None and paused > self.paused_ns
        self.paused_ns = paused
        if rose:
            return Reading("Galera flow control paused the cluster since the last batch")
        if queue > self.recv_queue:
            return Reading(f"Galera receive queue {queue} > {self.recv_queue}")
        return Reading(None)


@dataclass(frozen=True)
class LoadLimit:
    """``VAR=N`` of --max-load / --critical-load."""

    variable: str
    limit: float

    @classmethod
    def parse(cls, text: str, option: str) -> LoadLimit:
        name, sep, value = text.partition("=")
        try:
            limit = float(value)
        except ValueError:
            limit = -1.0
        if not sep or not name.strip() or limit < 0 or not name.strip().replace("_", "").isalnum():
            raise BadInput(
                f"{option} {text!r}: expected VARIABLE=NUMBER, e.g. {option} Threads_running=25"
            )
        return cls(name.strip(), limit)


class ServerLoad(_OnServer):
    """Status variables (MySQL/MariaDB ``SHOW GLOBAL STATUS``; PostgreSQL: only
    ``Threads_running``, the active backends in ``pg_stat_activity``)."""

    name = "load"

    def __init__(self, url: URL, pause: list[LoadLimit], critical: list[LoadLimit]):
        super().__init__(url)
        self.pause = pause
        self.critical = critical
        self.dialect = dialects.for_url(url)
        self.dialect.check_load_variables([limit.variable for limit in pause + critical])

    def values(self) -> dict[str, float]:
        conn = self.connection()
        try:
            names = [limit.variable for limit in self.pause + self.critical]
            return self.dialect.load_status(conn, names)
        finally:
            conn.rollback()

    def read(self) -> Reading:
        values = self.values()
        for limit in self.critical:
            value = values.get(limit.variable.lower())
            if value is None:
                raise BadInput(
                    f"--critical-load: no status variable {limit.variable!r} on this server"
                )
            if value > limit.limit:
                raise CriticalLoad(
                    f"{limit.variable}={value:g} is over --critical-load {limit.variable}="
                    f"{limit.limit:g}: the backfill stopped at its checkpoint; once the server "
                    "is calm, run the same command again to resume"
                )
        for limit in self.pause:
            value = values.get(limit.variable.lower())
            if value is None:
                raise BadInput(f"--max-load: no status variable {limit.variable!r} on this server")
            if value > limit.limit:
                return Reading(f"{limit.variable}={value:g} > {limit.limit:g}")
        return Reading(None)


@dataclass
class ThrottleStats:
    seconds: float = 0.0
    pauses: int = 0
    worst_lag: float | None = None
    reasons: dict[str, float] = field(default_factory=dict)
    """Seconds throttled per check name."""


def throttle_dict(stats: ThrottleStats | None) -> dict | None:
    """For ``--json``: seconds paused, pauses, per check, the worst lag (None: no lag read;
    ``"unknown"`` when a replica had stopped replicating)."""
    if stats is None:
        return None
    lag = stats.worst_lag
    return {
        "seconds": round(stats.seconds, 3),
        "pauses": stats.pauses,
        "by_check": {name: round(v, 3) for name, v in stats.reasons.items()},
        "worst_lag_seconds": "unknown"
        if lag == float("inf")
        else (None if lag is None else round(lag, 3)),
    }


class Throttle:
    """Waits while any check says so; ``on_change(reason or None)`` tells the progress bar."""

    def __init__(
        self,
        checks: list[Check],
        stop: threading.Event,
        *,
        on_change: Callable[[str | None], None] | None = None,
        poll: float = POLL_SECONDS,
    ):
        self.checks = checks
        self.stop = stop
        self.on_change = on_change
        self.poll = poll
        self.stats = ThrottleStats()

    def _look(self) -> tuple[Check, str] | None:
        for check in self.checks:
            reading = check.read()
            if reading.lag is not None:
                worst = self.stats.worst_lag
                self.stats.worst_lag = reading.lag if worst is None else max(worst, reading.lag)
            if reading.reason is not None:
                return check, reading.reason
        return None

    def wait(self) -> bool:
        """Return once every check is clear; True when a stop was requested meanwhile."""
        if not self.checks:
            return self.stop.is_set()
        found = self._look()
        if found is None:
            return self.stop.is_set()
        started = time.monotonic()
        self.stats.pauses += 1
        shown = None
        try:
            while found is not None:
                check, reason = found
                if reason != shown:
                    log.info("throttled: %s", reason)
                    if self.on_change:
                        self.on_change(f"throttled: {reason}")
                    shown = reason
                if self.stop.wait(self.poll):
                    return True
                collector.between_batches()  # paused between batches: no lock held
                found = self._look()
        finally:
            spent = time.monotonic() - started
            self.stats.seconds += spent
            name = (found or (check, ""))[0].name
            self.stats.reasons[name] = self.stats.reasons.get(name, 0.0) + spent
            if self.on_change:
                self.on_change(None)
            log.info("throttle released after %.1fs", spent)
        return self.stop.is_set()

    def close(self) -> None:
        for check in self.checks:
            check.close()


class StandbyLag(_OnServer):
    """Standbys discovered from the primary (PostgreSQL ``pg_stat_replication``).

    ``replay_lag`` is refreshed only by the standby's status reports and can
    read near 0 for seconds after replay stopped; so lag is measured here from
    WAL positions: the age of the oldest primary position this check saw that
    some standby has not replayed yet (a lower bound on its lag).
    """

    name = "replica lag"

    def __init__(self, url: URL, max_lag: float):
        super().__init__(url)
        self.max_lag = max_lag
        self.dialect = dialects.for_url(url)
        self.samples: list[tuple[float, int]] = []

    def read(self) -> Reading:
        conn = self.connection()
        try:
            rows = self.dialect.standby_positions(conn)
        finally:
            conn.rollback()
        now = time.monotonic()
        current = int(rows[0][0])
        self.samples.append((now, current))
        worst: tuple[float, str] | None = None
        for _, name, addr, replayed in rows:
            if name is None and addr is None:
                continue  # no standby connected
            replayed = int(replayed) if replayed is not None else -1
            behind = [t for t, lsn in self.samples if lsn > replayed]
            lag = now - min(behind) if behind else 0.0
            if worst is None or lag > worst[0]:
                worst = (lag, f"{name or 'standby'}@{addr or 'local'}")
        oldest_needed = min((int(r[3]) for r in rows if r[3] is not None), default=current)
        self.samples = [(t, lsn) for t, lsn in self.samples if lsn > oldest_needed][-1000:]
        if worst is None:
            return Reading(None, None)
        if worst[0] > self.max_lag:
            return Reading(f"standby {worst[1]} is {worst[0]:.1f}s behind", worst[0])
        return Reading(None, worst[0])


@dataclass
class ThrottleOptions:
    max_lag: float | None = None
    replicas: list[str] = field(default_factory=list)
    max_load: list[str] = field(default_factory=list)
    critical_load: list[str] = field(default_factory=list)
    pause_file: str | None = None
    check_interval: float = POLL_SECONDS
    """Seconds between two looks while paused."""
    fail_without_replicas: bool = False
    """--max-lag and no replica found: refuse (exit 127) instead of running unthrottled."""

    def validate(self, backend: str | None = None) -> None:
        if (self.max_load or self.critical_load) and backend is not None:
            dialects.for_backend(backend).check_load_variables([])
        if self.max_lag is not None and not 0 <= self.max_lag <= 86_400:
            raise BadInput(f"--max-lag must be between 0 and 86400 seconds (got {self.max_lag})")
        if self.replicas and self.max_lag is None:
            raise BadInput("--replica needs --max-lag SECONDS (the lag to stay under)")
        if not 0.01 <= self.check_interval <= 60:
            raise BadInput(
                f"--check-interval must be between 0.01 and 60 seconds (got {self.check_interval})"
            )
        if self.fail_without_replicas and self.max_lag is None:
            raise BadInput(
                "--fail-without-replicas needs --max-lag SECONDS (it refuses a lag check "
                "that has no replica to watch)"
            )
        for text in self.max_load:
            LoadLimit.parse(text, "--max-load")
        for text in self.critical_load:
            LoadLimit.parse(text, "--critical-load")

    def record(self) -> dict:
        """What a run keeps in its options (replica URLs masked)."""
        return {
            "max_lag": self.max_lag,
            "replicas": [mask_url(r) for r in self.replicas],
            "max_load": self.max_load,
            "critical_load": self.critical_load,
            "pause_file": self.pause_file,
        }


def build_throttle(
    options: ThrottleOptions,
    url: URL,
    conn: sa.Connection,
    stop: threading.Event,
    *,
    on_change: Callable[[str | None], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> Throttle:
    """The checks ``options`` ask for; replicas discovered on ``conn`` unless named.

    ``--max-lag`` with no replica to watch (none named, none connected to the
    primary, not Galera) is said once through ``notify`` and the run goes on
    unthrottled by lag, as pt-online-schema-change does ("No slaves found");
    with ``fail_without_replicas`` it is refused instead (exit 127), before
    anything is written.
    """
    from actionhost_backfill.db import parse_url

    checks: list[Check] = []
    try:
        _add_checks(options, url, conn, checks, parse_url, notify)
    except BaseException:
        for check in checks:
            check.close()
        raise
    if checks:
        log.info("throttle checks: %s", ", ".join(c.name for c in checks))
    return Throttle(checks, stop, on_change=on_change, poll=options.check_interval)


def _add_checks(options, url, conn, checks, parse_url, notify) -> None:
    if options.pause_file:
        checks.append(PauseFile(options.pause_file))
    dialect = dialects.for_connection(conn)
    if options.max_lag is not None:
        lag_checks = len(checks)
        searched = "the primary"
        if options.replicas:
            for raw in options.replicas:
                # A lag check reads the server's replication status: no database needed
                # (pt-online-schema-change's replica DSNs name only the host).
                replica = parse_url(raw, option="--replica", need_database=False)
                checks.append(ReplicaLag(replica, options.max_lag))
        else:
            searched = dialect.replication_source
            if dialect.has_standbys(conn):
                checks.append(StandbyLag(url, options.max_lag))
            for replica in dialect.replicas(conn, url):
                checks.append(ReplicaLag(replica, options.max_lag))
        if dialect.is_galera(conn):
            checks.append(GaleraFlowControl(url))
        conn.rollback()
        if len(checks) == lag_checks:
            where = f"{mask_url(url)} ({searched})"
            if options.fail_without_replicas:
                raise NoReplicas(
                    f"--max-lag {options.max_lag:g}: no replica found on {where} and "
                    "--fail-without-replicas was given: name one with --replica URL, or drop "
                    "--fail-without-replicas to run without lag throttling (nothing was changed)"
                )
            message = (
                f"--max-lag {options.max_lag:g}: no replica found on {where}: running without "
                "lag throttling (name replicas with --replica URL; --fail-without-replicas "
                "refuses instead)"
            )
            (notify or log.warning)(message)
    if options.max_load or options.critical_load:
        checks.append(
            ServerLoad(
                url,
                [LoadLimit.parse(t, "--max-load") for t in options.max_load],
                [LoadLimit.parse(t, "--critical-load") for t in options.critical_load],
            )
        )
