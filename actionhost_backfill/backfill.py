"""The backfill: keyset batches over NULL-host events, inferred and written safely.

One transaction per batch reads the batch, infers its hosts, locks the rows
still NULL, writes the hosts together with their audit rows, the per-rule
counts and the run's checkpoint, and commits.  Killed at any instant, the
batch in flight is rolled back by the database and the run resumes from the
last committed checkpoint to the same final state.  The write only touches
rows whose host is still NULL, so a host Nova records meanwhile is never
overwritten.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from . import bulk, db, novadb, runs, schema
from .batching import MAX_BATCH, BatchSizer, galera_cap, pause
from .bulk import chunks
from .errors import ActionHostError, BadInput, DatabaseUnavailable, PrivilegeError, SchemaNotReady
from .evidence import EvidenceSnapshot, SnapshotStats
from .inference import RECORDED_MEANWHILE, Decision, EventRow, infer
from .locking import RunnerLock
from .progress import Progress, Silent
from .redact import mask_url
from .state import StateLocation, resolve_state_location, state_schema_exists
from .tables import EVENTS, FILLED, LEFT_NULL, SHADOW_EVENTS, SKIPPED, StateTables, nova, state

log = logging.getLogger(__name__)

ProgressFactory = Callable[[int | None, str], Progress]


@dataclass
class BackfillOptions:
    batch_size: int = 1000
    target_batch_seconds: float | None = None
    sleep: float = 0.0
    max_rows: int | None = None
    until_complete: bool = False
    include_shadow: bool = False
    dry_run: bool = False
    new_run: bool = False
    lock_timeout: float = 5.0
    max_retries: int = 5
    sample: int = 5

    def validate(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise BadInput(
                f"--batch-size must be between 1 and {MAX_BATCH} (got {self.batch_size})"
            )
        if self.target_batch_seconds is not None and not 0.01 <= self.target_batch_seconds <= 60:
            raise BadInput(
                f"--target-batch-seconds must be between 0.01 and 60 (got {self.target_batch_seconds})"
            )
        if self.sleep < 0 or self.sleep > 3600:
            raise BadInput(f"--sleep must be between 0 and 3600 seconds (got {self.sleep})")
        if self.max_rows is not None and self.max_rows < 1:
            raise BadInput(f"--max-rows must be at least 1 (got {self.max_rows})")
        if not 0 < self.lock_timeout <= 3600:
            raise BadInput(
                f"--lock-timeout must be between 0 and 3600 seconds (got {self.lock_timeout})"
            )
        if not 0 <= self.max_retries <= 100:
            raise BadInput(f"--max-retries must be between 0 and 100 (got {self.max_retries})")

    def tables(self) -> list[str]:
        return [EVENTS, SHADOW_EVENTS] if self.include_shadow else [EVENTS]

    def scope(self) -> dict:
        """What a run covers; resuming with another scope is refused."""
        return {"include_shadow": self.include_shadow}


@dataclass
class BackfillResult:
    database: str
    dry_run: bool
    run_id: int | None = None
    resumed: bool = False
    outcome: str = "complete"
    """complete, partial (more to do) or interrupted."""
    filled_by_rule: Counter = field(default_factory=Counter)
    null_by_reason: Counter = field(default_factory=Counter)
    skipped: int = 0
    examined: int = 0
    batches: int = 0
    retries: int = 0
    elapsed: float = 0.0
    remaining: int = 0
    snapshot: SnapshotStats | None = None
    samples: list[dict] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)
    plan_seconds: float = 0.0
    """Time spent deciding (reads only); the rest went to applying batches."""
    message: str | None = None

    @property
    def filled(self) -> int:
        return sum(self.filled_by_rule.values())

    @property
    def left_null(self) -> int:
        return sum(self.null_by_reason.values())

    @property
    def rows_per_second(self) -> float:
        return self.examined / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "complete" else 1

    def batch_percentiles(self) -> dict[str, float] | None:
        """p50 / p99 / max of batch durations in seconds (what a lock holder waits)."""
        if not self.batch_seconds:
            return None
        ordered = sorted(self.batch_seconds)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

        return {"p50": pick(0.50), "p99": pick(0.99), "max": round(ordered[-1], 4)}

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            "resumed": self.resumed,
            "outcome": self.outcome,
            "examined": self.examined,
            "filled": self.filled,
            "filled_by_rule": dict(sorted(self.filled_by_rule.items())),
            "left_null": self.left_null,
            "null_by_reason": dict(sorted(self.null_by_reason.items())),
            "skipped_recorded_meanwhile": self.skipped,
            "batches": self.batches,
            "retries": self.retries,
            "elapsed_seconds": round(self.elapsed, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "remaining": self.remaining,
            "batch_seconds": self.batch_percentiles(),
            "plan_seconds": round(self.plan_seconds, 3),
            "snapshot": None
            if self.snapshot is None
            else {
                "migrations": self.snapshot.migrations,
                "events": self.snapshot.events,
                "shelve_records": self.snapshot.shelve_records,
                "volume_connectors": self.snapshot.volume_connectors,
                "archived_actions": self.snapshot.archived_actions,
                "compute_hosts": self.snapshot.compute_hosts,
                "seconds": round(self.snapshot.seconds, 3),
            },
            "samples": self.samples,
            "message": self.message,
            "exit_code": self.exit_code,
        }


# --------------------------------------------------------------------------- preflight


def _preflight(
    conn: sa.Connection, url: URL, location: StateLocation, options: BackfillOptions
) -> bool:
    """Refuse bad input before anything is written; return whether state is ready."""
    novadb.require_nova(conn, novadb.BACKFILL_TABLES)
    names = novadb.list_tables(conn)
    for table in options.tables():
        if table not in names:
            raise BadInput(
                f"--include-shadow: table {table} not found in {mask_url(url)}: drop the option "
                "(this cell has no archived events)"
            )
        column = novadb.host_column(conn, table)
        if not column.present:
            raise SchemaNotReady(
                f"{table}.host is missing in {mask_url(url)}: run `actionhost-backfill schema upgrade` first"
            )
        if column.problem:
            novadb.raise_if_incompatible(conn, [column])
    ready = (
        state_schema_exists(conn, location)
        and schema.current_revision(conn, location) == schema.head_revision()
    )
    if not options.dry_run and not ready:
        current = (
            schema.current_revision(conn, location) if state_schema_exists(conn, location) else None
        )
        raise SchemaNotReady(
            f"the toolkit's schema in {location.describe()} is at {current or 'no revision'}, "
            f"the backfill needs {schema.head_revision()}: run `actionhost-backfill schema upgrade` "
            "first (or use --dry-run, which needs no schema change)"
        )
    if not options.dry_run:
        _check_write_privileges(conn, url, location, options)
    return ready


def _check_write_privileges(
    conn: sa.Connection, url: URL, location: StateLocation, options: BackfillOptions
) -> None:
    """Statements that touch no row still need their privileges: try them, roll back."""
    backend = location.backend
    if backend == "sqlite":
        for path in (url.database, location.sqlite_path):
            if path and not os.access(path, os.W_OK):
                raise PrivilegeError(
                    f"{path} is read-only: the backfill writes to it; fix its permissions"
                )
        return
    st = state(location.schema)
    probes = [
        (t, nova(t).update().where(nova(t).c.id == -1).values(host=nova(t).c.host))
        for t in options.tables()
    ]
    probes += [
        (
            f"{location.schema}.audit",
            st.audit.insert().from_select(
                list(st.audit.c.keys()), sa.select(*st.audit.c).where(sa.false())
            ),
        ),
        (
            f"{location.schema}.runs",
            st.runs.update().where(st.runs.c.id == -1).values(message=None),
        ),
        (
            f"{location.schema}.checkpoints",
            st.checkpoints.update().where(st.checkpoints.c.run_id == -1).values(done=False),
        ),
    ]
    user = url.username or "<user>"
    try:
        for name, statement in probes:
            try:
                conn.execute(statement)
            except sa.exc.DBAPIError as exc:
                if isinstance(db.translate_error(exc, url), PrivilegeError):
                    conn.rollback()
                    if backend == "postgresql":
                        grant = (
                            f"GRANT UPDATE ON {name} TO {user};"
                            if "." not in name
                            else f"GRANT USAGE ON SCHEMA {location.schema} TO {user}; GRANT ALL ON ALL TABLES IN SCHEMA {location.schema} TO {user};"
                        )
                    else:
                        database = name.split(".")[0] if "." in name else url.database
                        grant = f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.* TO '{user}'@'%';"
                    raise PrivilegeError(
                        f"user {user} may not write {name} in {mask_url(url)}: run {grant} (nothing was changed)"
                    ) from None
                raise
    finally:
        conn.rollback()


# --------------------------------------------------------------------------- runner


class _Runner:
    def __init__(
        self,
        url: URL,
        location: StateLocation,
        options: BackfillOptions,
        *,
        stop: threading.Event | None,
        progress: ProgressFactory | None,
    ):
        self.url = url
        self.location = location
        self.options = options
        self.stop = stop or threading.Event()
        self.progress_factory = progress
        self.backend = location.backend
        self.st: StateTables = state(location.schema)
        self.result = BackfillResult(database=mask_url(url), dry_run=options.dry_run)
        self.sizer = BatchSizer(options.batch_size, options.target_batch_seconds)
        self.remaining_budget = options.max_rows

    # -- connection ------------------------------------------------------

    def configure(self, conn: sa.Connection) -> None:
        seconds = self.options.lock_timeout
        if self.backend == "postgresql":
            conn.exec_driver_sql(f"SET lock_timeout = '{max(1, round(seconds * 1000))}ms'")
        elif self.backend == "mysql":
            whole = max(1, round(seconds))
            conn.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {whole}")
            conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {whole}")
            # REPEATABLE READ makes CREATE ... SELECT (the evidence snapshot) take
            # shared locks on every row it reads, stalling Nova's own updates;
            # READ COMMITTED reads without locks (and takes no gap locks).
            if db.mysql_can_read_committed(conn):
                conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            wsrep = dict(conn.exec_driver_sql("SHOW VARIABLES LIKE 'wsrep%%'").all())
            cap = galera_cap(wsrep)
            if cap is not None:
                self.sizer.cap(cap)
                log.info("Galera node: batches capped at %s events (write-set limits)", cap)
        conn.commit()

    # -- reading ---------------------------------------------------------

    def pending(self, conn: sa.Connection, table: str, after: int, horizon: int) -> int:
        t = nova(table)
        return (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(t)
                .where(t.c.id > after, t.c.id <= horizon, t.c.host.is_(None))
            ).scalar()
            or 0
        )

    def max_id(self, conn: sa.Connection, table: str) -> int:
        t = nova(table)
        return conn.execute(sa.select(sa.func.max(t.c.id))).scalar() or 0

    # -- one batch ---------------------------------------------------------

    def decide(
        self, snapshot: EvidenceSnapshot, table: str, uuids: list[str], events: list[EventRow]
    ) -> list[Decision]:
        evidence = snapshot.load(uuids)
        decisions = infer(events, evidence.actions, evidence.histories, evidence.hosts)
        if self.options.dry_run and self.options.sample:
            self._sample(snapshot, table, events, decisions, evidence)
        return decisions

    def _sample(self, snapshot, table, events, decisions, evidence) -> None:
        seen = Counter((s["rule"]) for s in self.result.samples)
        by_id = {e.id: e for e in events}
        picked = []
        for decision in decisions:
            if seen[decision.rule] >= self.options.sample:
                continue
            seen[decision.rule] += 1
            picked.append((decision, by_id[decision.event_id]))
        requests = snapshot.request_ids(sorted({e.action_id for _, e in picked if e.action_id}))
        for decision, event in picked:
            action = evidence.actions.get(event.action_id)
            self.result.samples.append(
                {
                    "table": table,
                    "event_id": event.id,
                    "event": event.name,
                    "instance_uuid": action.instance_uuid if action else None,
                    "request_id": requests.get(event.action_id),
                    "host": decision.host,
                    "rule": decision.rule,
                }
            )

    def write(
        self,
        conn: sa.Connection,
        run_id: int,
        table: str,
        batch_no: int,
        after: int,
        last_id: int,
        decisions: list[Decision],
    ) -> Counter:
        """Write one batch's hosts, audit, counts and checkpoint (caller commits)."""
        t = nova(table)
        fill = [d for d in decisions if d.filled]
        still_null: set[int] = set()
        for chunk in chunks([d.event_id for d in fill]):
            query = sa.select(t.c.id).where(
                db.in_values(t.c.id, chunk, self.backend), _still_null(t)
            )
            if self.backend != "sqlite":  # SQLite: BEGIN IMMEDIATE already excludes writers
                query = query.with_for_update()
            still_null.update(r[0] for r in conn.execute(query))
        counts: Counter = Counter()
        audit_rows = []
        for d in decisions:
            if d.filled and d.event_id in still_null:
                outcome, host, rule = FILLED, d.host, d.rule
            elif d.filled:
                outcome, host, rule = SKIPPED, None, RECORDED_MEANWHILE
            else:
                outcome, host, rule = LEFT_NULL, None, d.rule
            counts[(outcome, rule)] += 1
            audit_rows.append((run_id, table, d.event_id, host, rule, outcome, batch_no))
        bulk.insert_rows(conn, "audit", AUDIT_COLUMNS, audit_rows, schema=self.location.schema)
        filled = sum(n for (outcome, _), n in counts.items() if outcome == FILLED)
        if filled:
            written = self._update_from_audit(conn, table, run_id, after, last_id)
            if written != filled:
                raise _Retry(
                    f"expected to write {filled} rows in {table} ids {after + 1}..{last_id}, wrote {written}"
                )
        runs.add_counts(conn, self.st, run_id, table, counts)
        return counts

    def _update_from_audit(
        self, conn: sa.Connection, table: str, run_id: int, after: int, last_id: int
    ) -> int:
        audit = f"{self._q(self.location.schema)}.audit"
        params = {"run": run_id, "tbl": table, "lo": after, "hi": last_id, "filled": FILLED}
        where = "a.run_id = :run AND a.event_table = :tbl AND a.event_id > :lo AND a.event_id <= :hi AND a.outcome = :filled"
        if self.backend == "postgresql":
            sql = f"UPDATE {table} AS e SET host = a.host FROM {audit} AS a WHERE {where} AND e.id = a.event_id AND LENGTH(e.host) IS NULL"
        elif self.backend == "mysql":
            sql = f"UPDATE {table} AS e JOIN {audit} AS a ON e.id = a.event_id SET e.host = a.host WHERE {where} AND LENGTH(e.host) IS NULL"
        else:
            sql = (
                f"UPDATE {table} SET host = (SELECT a.host FROM {audit} AS a WHERE a.run_id = :run "
                f"AND a.event_table = :tbl AND a.event_id = {table}.id) "
                f"WHERE id IN (SELECT a.event_id FROM {audit} AS a WHERE {where}) "
                "AND LENGTH(host) IS NULL"
            )
        return conn.execute(sa.text(sql), params).rowcount

    def _q(self, name: str) -> str:
        return f'"{name}"' if self.backend != "mysql" else f"`{name}`"

    # -- loop --------------------------------------------------------------

    def run(self) -> BackfillResult:
        started = time.monotonic()
        # SQLite: a batch takes the write lock when it begins (see db.create_engine).
        begin = "DEFERRED" if self.options.dry_run else "IMMEDIATE"
        engine = db.create_engine(self.url, self.location, attach="if-exists", sqlite_begin=begin)
        try:
            with db.connect(engine) as conn:
                ready = _preflight(conn, self.url, self.location, self.options)
                conn.rollback()
            if self.options.dry_run:
                self._dry_run(engine, audit_available=ready)
            else:
                self._real_run(engine)
        except sa.exc.DBAPIError as exc:
            raise db.translate_error(exc, self.url) from None
        finally:
            engine.dispose()
            self.result.elapsed = time.monotonic() - started
        return self.result

    def _dry_run(self, engine: sa.Engine, *, audit_available: bool) -> None:
        with db.connect(engine) as conn:
            self.configure(conn)
            snapshot = EvidenceSnapshot(conn, self.location, audit_available=audit_available)
            self._take_snapshot(snapshot)
            horizons = {t: self.max_id(conn, t) for t in self.options.tables()}
            conn.rollback()
            try:
                for table in self.options.tables():
                    upper, decided = self._plan(
                        conn, snapshot, table, 0, horizons[table], tally=True
                    )
                    self.result.examined += decided
                    if self.remaining_budget is not None:
                        self.remaining_budget -= decided
                    if upper is None or upper < horizons[table]:
                        self.result.remaining += self.pending(
                            conn, table, upper or 0, horizons[table]
                        )
                        self.result.outcome = "partial"
                        conn.rollback()
                    if upper is None:
                        break
            finally:
                snapshot.drop()

    def _real_run(self, engine: sa.Engine) -> None:
        lock = RunnerLock(engine, self.location)
        lock.acquire(None)
        try:
            with db.connect(engine) as conn:
                self.configure(conn)
                run = self._open_run(conn)
                lock.set_run(run.id)
                try:
                    self._run_tables(conn, run, lock)
                except KeyboardInterrupt:
                    conn.rollback()
                    self._finish(
                        conn, run.id, runs.INTERRUPTED, "aborted during a batch (rolled back)"
                    )
                    self.result.outcome = "interrupted"
                    self.result.message = self._resume_hint(run.id)
                except ActionHostError as exc:
                    self._fail(conn, engine, run.id, str(exc))
                    raise
                except sa.exc.DBAPIError as exc:
                    error = db.translate_error(exc, self.url)
                    self._fail(conn, engine, run.id, str(error))
                    raise error from None
        finally:
            lock.release()

    def _fail(self, conn: sa.Connection, engine: sa.Engine, run_id: int, message: str) -> None:
        """Record the failure if the database still answers (best effort)."""
        for attempt in (conn, None):
            try:
                if attempt is None:
                    with engine.begin() as fresh:
                        runs.set_state(fresh, self.st, run_id, runs.FAILED, message)
                else:
                    attempt.rollback()
                    runs.set_state(attempt, self.st, run_id, runs.FAILED, message)
                    attempt.commit()
                return
            except Exception:
                continue

    def _open_run(self, conn: sa.Connection) -> runs.Run:
        options = self.options
        existing = runs.latest_unfinished(conn, self.st, runs.BACKFILL)
        if existing is not None and options.new_run:
            runs.set_state(conn, self.st, existing.id, runs.ABANDONED, "superseded by --new-run")
            existing = None
        if existing is not None:
            if existing.options.get("scope") != options.scope():
                conn.rollback()
                flag = (
                    "with" if existing.options.get("scope", {}).get("include_shadow") else "without"
                )
                raise BadInput(
                    f"unfinished run {existing.id} was started {flag} --include-shadow: run again the same "
                    "way to resume it, or pass --new-run to start over"
                )
            self.result.run_id = existing.id
            self.result.resumed = True
            existing.state = runs.RUNNING
            runs.set_state(conn, self.st, existing.id, runs.RUNNING)
            conn.commit()
            return existing
        horizons = {t: self.max_id(conn, t) for t in options.tables()}
        run_id = runs.create(
            conn,
            self.st,
            runs.BACKFILL,
            {
                "scope": options.scope(),
                "batch_size": options.batch_size,
                "target_batch_seconds": options.target_batch_seconds,
            },
            horizons,
            runner=f"pid {os.getpid()}",
        )
        conn.commit()
        self.result.run_id = run_id
        run = runs.load(conn, self.st, run_id)
        conn.rollback()
        return run

    def _run_tables(self, conn: sa.Connection, run: runs.Run, lock: RunnerLock) -> None:
        snapshot = EvidenceSnapshot(conn, self.location, audit_available=True)
        self._take_snapshot(snapshot)
        checkpoints = {t: run.checkpoints[t] for t in self.options.tables()}
        total = sum(
            self.pending(conn, t, c.last_id, c.horizon)
            for t, c in checkpoints.items()
            if not c.done
        )
        conn.rollback()
        if self.backend == "sqlite":
            # Setup waited up to 30s for other writers; a batch waits lock_timeout, then retries.
            conn.exec_driver_sql(
                f"PRAGMA busy_timeout = {max(1, round(self.options.lock_timeout * 1000))}"
            )
        bar = self._bar(total, f"run {run.id}")
        try:
            while True:
                for table, checkpoint in checkpoints.items():
                    if checkpoint.done:
                        continue
                    self._run_table(conn, run.id, table, checkpoint, snapshot, lock, bar)
                    if self._stopping():
                        break
                if self._stopping():
                    break
                if not self.options.until_complete or not self._extend_horizons(
                    conn, run.id, checkpoints, snapshot
                ):
                    break
        finally:
            bar.close()
        remaining = sum(self.pending(conn, t, c.last_id, c.horizon) for t, c in checkpoints.items())
        conn.rollback()
        self.result.remaining = remaining
        if self._stopping() and remaining:
            self.result.outcome = "interrupted" if self.stop.is_set() else "partial"
            self._finish(
                conn,
                run.id,
                runs.INTERRUPTED,
                "stopped on request" if self.stop.is_set() else "--max-rows reached",
            )
            self.result.message = self._resume_hint(run.id)
        else:
            for table in checkpoints:
                runs.mark_table(conn, self.st, run.id, table, done=True)
            self._finish(conn, run.id, runs.COMPLETE, None)
        snapshot.drop()

    def _run_table(self, conn, run_id, table, checkpoint, snapshot, lock, bar) -> None:
        """Plan (decide every event, instance by instance), then apply in id order.

        Planning loads each instance's evidence once, however its events are
        spread over the id range, and keeps the decisions in a temporary
        table; nothing is written to the database while planning.  Applying
        walks the plan in id order, one short transaction per batch: lock the
        rows still NULL, write hosts, audit and checkpoint.  A stop during
        either phase leaves the checkpoint at the last applied batch; the
        resumed run plans the rest again from the same evidence.
        """
        after = checkpoint.last_id
        upper, _ = self._plan(conn, snapshot, table, after, checkpoint.horizon, lock=lock)
        if upper is None:  # stopped while planning
            return
        plan = snapshot.t_plan
        batch_no = checkpoint.batches
        while not self._stopping():
            lock.check()
            size = self._next_size()
            batch_started = time.monotonic()
            retries = 0
            while True:
                try:
                    rows = conn.execute(
                        sa.select(plan.c.event_id, plan.c.host, plan.c.rule)
                        .where(plan.c.event_id > after)
                        .order_by(plan.c.event_id)
                        .limit(size)
                    ).all()
                    if not rows:
                        conn.rollback()
                        if upper >= checkpoint.horizon:
                            checkpoint.done = True
                        return
                    decisions = [Decision(*r) for r in rows]
                    last_id = decisions[-1].event_id
                    counts = self.write(
                        conn, run_id, table, batch_no + 1, after, last_id, decisions
                    )
                    runs.advance(
                        conn,
                        self.st,
                        run_id,
                        table,
                        last_id=last_id,
                        examined=len(decisions),
                        seconds=time.monotonic() - batch_started,
                        retries=retries,
                    )
                    conn.commit()
                    break
                except (sa.exc.DBAPIError, _Retry) as exc:
                    retries = self._after_failure(conn, exc, table, after, retries)
                    if retries < 0:
                        return
            batch_no += 1
            checkpoint.last_id = after = last_id
            checkpoint.batches = batch_no
            self._tally(counts)
            self._after_batch(len(decisions), time.monotonic() - batch_started, bar)
            if self.options.sleep and pause(self.options.sleep, self.stop):
                return

    def _plan(self, conn, snapshot, table, after, horizon, *, lock=None, tally=False):
        """Decide the NULL-host events of ``(after, upper]`` into the plan.

        Returns ``(upper, decided)``: ``upper`` is the horizon, or with
        --max-rows the id of the last event in the budget (no point planning
        what will not be applied now), None when asked to stop; ``decided``
        counts the events decided.  ``tally`` (dry run) counts the decisions
        instead of keeping them.
        """
        started = time.monotonic()
        decided = 0
        try:
            upper = horizon
            if self.remaining_budget is not None:
                t = nova(table)
                cutoff = conn.execute(
                    sa.select(t.c.id)
                    .where(t.c.id > after, t.c.id <= horizon, _still_null(t))
                    .order_by(t.c.id)
                    .offset(max(0, self.remaining_budget - 1))
                    .limit(1)
                ).scalar()
                if cutoff is not None:
                    upper = cutoff
            conn.rollback()
            total = snapshot.prepare_plan(table, after, upper)
            bar = self._bar(total, f"plan {table}") if total else Silent()
            try:
                for uuids, events in snapshot.null_chunks(PLAN_INSTANCES):
                    if self.stop.is_set():
                        return None, decided
                    if lock is not None:
                        lock.check()
                    decisions = self.decide(snapshot, table, uuids, events)
                    if tally:
                        self._tally(
                            Counter(
                                ((FILLED if d.filled else LEFT_NULL), d.rule) for d in decisions
                            )
                        )
                    else:
                        bulk.insert_rows(
                            conn,
                            "ah_plan",
                            ("event_id", "host", "rule"),
                            [(d.event_id, d.host, d.rule) for d in decisions],
                        )
                    conn.commit()
                    decided += len(decisions)
                    bar.update(len(decisions))
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
        self.result.plan_seconds += time.monotonic() - started
        return upper, decided

    def _after_failure(self, conn, exc, table: str, after: int, retries: int) -> int:
        """Roll back; raise when the failure is final; else wait and return the retry count.

        Returns -1 when a stop was requested while waiting.
        """
        db.rollback_hard(conn)
        if isinstance(exc, sa.exc.DBAPIError) and db.is_connection_lost(exc):
            raise DatabaseUnavailable(
                f"lost the connection to {mask_url(self.url)} during a batch of {table} after id "
                f"{after} (the batch was rolled back; the checkpoint is safe): once the server is "
                "back, run the same command again to resume"
            ) from None
        retryable = isinstance(exc, _Retry) or db.is_retryable(exc)
        if not retryable or retries >= self.options.max_retries:
            if retryable:
                raise ActionHostError(
                    f"a batch of {table} after id {after} failed {retries + 1} times "
                    f"({db.translate_error(exc, self.url) if isinstance(exc, sa.exc.DBAPIError) else exc}): "
                    "find the blocking transaction, then run again to resume"
                ) from None
            raise exc
        retries += 1
        self.result.retries += 1
        log.info(
            "retrying batch after id %s (%s/%s): %s", after, retries, self.options.max_retries, exc
        )
        if pause(min(0.1 * 2**retries, 5.0), self.stop):
            return -1
        return retries

    def _extend_horizons(self, conn, run_id, checkpoints, snapshot) -> bool:
        """--until-complete: take in rows that appeared after the horizon."""
        extended = False
        for table, checkpoint in checkpoints.items():
            newest = self.max_id(conn, table)
            if newest > checkpoint.horizon and self.pending(
                conn, table, checkpoint.horizon, newest
            ):
                checkpoint.horizon = newest
                checkpoint.done = False
                runs.mark_table(conn, self.st, run_id, table, done=False, horizon=newest)
                extended = True
        conn.commit()
        if extended:
            self._take_snapshot(snapshot)
        return extended

    # -- helpers -----------------------------------------------------------

    def _take_snapshot(self, snapshot: EvidenceSnapshot) -> None:
        self.result.snapshot = snapshot.take()

    def _next_size(self) -> int:
        size = self.sizer.size
        if self.remaining_budget is not None:
            size = max(1, min(size, self.remaining_budget))
        return size

    def _after_batch(self, rows: int, seconds: float, bar: Progress) -> None:
        self.result.batches += 1
        self.result.examined += rows
        self.result.batch_seconds.append(seconds)
        self.sizer.observe(rows, seconds)
        if self.remaining_budget is not None:
            self.remaining_budget -= rows
        bar.update(rows)

    def _stopping(self) -> bool:
        return self.stop.is_set() or (
            self.remaining_budget is not None and self.remaining_budget <= 0
        )

    def _tally(self, counts: Counter) -> None:
        for (outcome, rule), rows in counts.items():
            if outcome == FILLED:
                self.result.filled_by_rule[rule] += rows
            elif outcome == LEFT_NULL:
                self.result.null_by_reason[rule] += rows
            else:
                self.result.skipped += rows

    def _finish(
        self, conn: sa.Connection, run_id: int, state_name: str, message: str | None
    ) -> None:
        runs.set_state(conn, self.st, run_id, state_name, message)
        conn.commit()

    def _bar(self, total: int | None, description: str) -> Progress:
        if self.progress_factory is None:
            return Silent()
        return self.progress_factory(total, description)

    def _resume_hint(self, run_id: int) -> str:
        return f"run {run_id} stopped at its checkpoint: run the same command again to resume it (--new-run starts over)"


AUDIT_COLUMNS = ("run_id", "event_table", "event_id", "host", "rule", "outcome", "batch")


def _still_null(t: sa.Table) -> sa.ColumnElement[bool]:
    """``host IS NULL`` in a form the host index cannot serve.

    Most of the table is NULL before a backfill, so a planner that reads the
    host index for ``host IS NULL`` walks most of it (MariaDB does, for the
    row locks of every batch; PostgreSQL does with stale statistics).  The
    toolkit always knows the ids it wants: the primary key must drive.
    """
    return sa.func.length(t.c.host).is_(None)


#: Instances whose events are decided together while planning.
PLAN_INSTANCES = 500


class _Retry(Exception):
    """A batch whose write did not add up: roll back and try again."""


def run_backfill(
    url: URL,
    options: BackfillOptions | None = None,
    *,
    state_schema: str | None = None,
    stop: threading.Event | None = None,
    progress: ProgressFactory | None = None,
) -> BackfillResult:
    """Backfill (or, with ``dry_run``, only report) the NULL hosts of ``url``."""
    options = options or BackfillOptions()
    options.validate()
    location = resolve_state_location(url, state_schema)
    return _Runner(url, location, options, stop=stop, progress=progress).run()
