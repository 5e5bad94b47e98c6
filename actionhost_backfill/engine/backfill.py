"""The backfill: decide every NULL-host event, and apply the decisions in batches.

A run is opened (or resumed) in the state schema under the runner lease.  Per
events table, :class:`~actionhost_backfill.engine.planner.Planner` decides the
events after the checkpoint into a temporary plan table (reads only), and the
:class:`~actionhost_backfill.engine.applier.Applier` writes it in short batches
(:class:`~actionhost_backfill.engine.fill.PlanFill`): hosts of the rows still
NULL, their audit rows, the per-rule counts and the checkpoint, in one
transaction each.  On the servers deciding and applying overlap
(:mod:`~actionhost_backfill.engine.pipeline`); the refusals before any write are
in :mod:`~actionhost_backfill.engine.backfill_checks`.  Killed at any instant, the batch in flight is rolled back by
the database and the run resumes from the last checkpoint, planning the rest
again from the same evidence, to the same final state.  A host Nova records
meanwhile is never overwritten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.dialects import Dialect
from actionhost_backfill.engine import backfill_checks as checks
from actionhost_backfill.engine import collector, pipeline
from actionhost_backfill.engine.applier import Applier, prepare_session
from actionhost_backfill.engine.backfill_options import (
    BackfillOptions,
    BackfillResult,
    workers_for,
)
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.engine.fill import PlanFill
from actionhost_backfill.engine.planner import Planner
from actionhost_backfill.engine.progress import Progress, show_reason, silent
from actionhost_backfill.engine.settled import Settled, settling_runs
from actionhost_backfill.engine.sizing import BatchSizer
from actionhost_backfill.engine.throttling import (
    CriticalLoad,
    build_throttle,
)
from actionhost_backfill.engine.workers import Shares
from actionhost_backfill.errors import (
    ActionHostError,
    BadInput,
)
from actionhost_backfill.inference.eras import parse_releases
from actionhost_backfill.nova.tables import nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.state import runs
from actionhost_backfill.state.lease import RunnerLock
from actionhost_backfill.state.location import (
    StateLocation,
    resolve_state_location,
)
from actionhost_backfill.state.tables import FILLED, LEFT_NULL, StateTables, state

log = logging.getLogger(__name__)

ProgressFactory = Callable[[int | None, str], Progress]


# --------------------------------------------------------------------------- runner


class _Runner:
    """Opens (or resumes) a run, then per table: plan, then apply through the Applier."""

    def __init__(
        self,
        url: URL,
        location: StateLocation,
        options: BackfillOptions,
        *,
        stop: threading.Event | None,
        progress: ProgressFactory | None,
        notify: Callable[[str], None] | None = None,
    ):
        self.url = url
        self.location = location
        self.options = options
        self.stop = stop or threading.Event()
        self.progress_factory = progress
        self.st: StateTables = state(location.schema)
        self.result = BackfillResult(
            database=mask_url(url),
            dry_run=options.dry_run,
            excluded_rules=frozenset(options.exclude_rules),
        )
        self.sizer: BatchSizer | None = None
        self.dialect: Dialect | None = None
        self.notify = notify
        self._evidence_until = None
        self._writer: sa.Connection | None = None
        """The applier's connection while deciding and applying overlap (engine/pipeline.py)."""
        self.shares: Shares | None = None
        """With ``--workers N``: N planners, each reading and deciding its own share of
        the instances (``engine/workers.py``); None: the runner's planner decides."""

    def _notice(self, text: str) -> None:
        """Tell the operator once, on stderr (through ``notify``), and keep it for --json."""
        self.result.notices.append(text)
        if self.notify is not None:
            self.notify(text)
        else:
            log.warning("%s", text)

    # -- connection ------------------------------------------------------

    def configure(self, conn: sa.Connection) -> None:
        self.dialect, self.sizer = prepare_session(conn, self.options)
        conn.commit()

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

    def planner(self, conn: sa.Connection, snapshot: EvidenceSnapshot) -> Planner:
        sample = self._sample if self.options.dry_run and self.options.sample else None
        # Events complete runs already decided are left alone (engine/settled.py).
        settled_by = (
            settling_runs(conn, self.st, self.options.decisions())
            if snapshot.audit_available
            else None
        )
        conn.rollback()
        return Planner(
            conn,
            snapshot,
            url=self.url,
            stop=self.stop,
            bar=self._bar,
            on_decided=sample,
            settled_by=settled_by,
            exclude=self.options.exclude_rules,
        )

    def _sample(self, table: str, rows: list[tuple[int, str | None, str]]) -> None:
        """Keep the first ``--sample`` decisions of each rule, with their event, instance
        and request (looked up for the few kept)."""
        seen = Counter(s["rule"] for s in self.result.samples)
        picked = []
        for event_id, host, rule in rows:
            if seen[rule] < self.options.sample:
                seen[rule] += 1
                picked.append((event_id, host, rule))
        if not picked:
            return
        snapshot = self._snapshot
        t = nova(table)
        joined, owner = snapshot.with_owner(t)
        events = {
            r.id: r
            for r in snapshot.conn.execute(
                sa.select(t.c.id, t.c.event, t.c.action_id, owner.label("instance_uuid"))
                .select_from(joined)
                .where(t.c.id.in_([event_id for event_id, _, _ in picked]))
            )
        }
        requests = snapshot.request_ids(
            sorted({e.action_id for e in events.values() if e.action_id is not None})
        )
        for event_id, host, rule in picked:
            event = events[event_id]
            self.result.samples.append(
                {
                    "table": table,
                    "event_id": event_id,
                    "event": event.event,
                    "instance_uuid": event.instance_uuid,
                    "request_id": requests.get(event.action_id),
                    "host": host,
                    "rule": rule,
                }
            )

    # -- flow --------------------------------------------------------------

    def run(self) -> BackfillResult:
        started = time.monotonic()
        # SQLite: a batch takes the write lock when it begins (see db.create_engine).
        begin = "DEFERRED" if self.options.dry_run else "IMMEDIATE"
        engine = db.create_engine(self.url, self.location, attach="if-exists", sqlite_begin=begin)
        try:
            with db.connect(engine) as conn:
                ready = checks.preflight_backfill(conn, self.url, self.location, self.options)
                conn.rollback()
            with collector.collect_between_batches():
                if self.options.dry_run:
                    self._dry_run(engine, audit_available=ready)
                else:
                    self._real_run(engine)
        except sa.exc.DBAPIError as exc:
            raise db.translate_error(exc, self.url) from None
        finally:
            if self.shares is not None:
                self.shares.close()
            engine.dispose()
            self.result.elapsed = time.monotonic() - started
        return self.result

    def _dry_run(self, engine: sa.Engine, *, audit_available: bool) -> None:
        with db.connect(engine) as conn:
            self.configure(conn)
            snapshot = self._snapshot = EvidenceSnapshot(
                conn,
                self.location,
                audit_available=audit_available,
                releases=parse_releases(self.options.releases),
            )
            horizons = {t: self.max_id(conn, t) for t in self.options.tables()}
            pending = sum(self.pending(conn, t, 0, h) for t, h in horizons.items())
            conn.rollback()
            self.shares = self._shares(pending, audit_available)
            self._take_snapshot(snapshot)
            planner = self.planner(conn, snapshot)
            budget = self.options.max_rows
            try:
                for table in self.options.tables():
                    after, horizon = 0, horizons[table]
                    while self.result.outcome == "complete":
                        upper = planner.upper_bound(table, after, horizon, budget)
                        tally: Counter = Counter()
                        decided = planner.plan_range(
                            table, after, upper, tally=tally, shares=self.shares
                        )
                        self._tally(tally)
                        if decided is None:
                            self.result.outcome = "interrupted"
                            break
                        self.result.examined += decided
                        if upper >= horizon:
                            break
                        after = upper
                        if budget is not None:
                            # --max-rows counts rows written: what this range would fill.
                            budget -= sum(
                                n for (outcome, _), n in tally.items() if outcome == FILLED
                            )
                            if budget <= 0:
                                self.result.remaining += self.pending(conn, table, after, horizon)
                                self.result.outcome = "partial"
                                conn.rollback()
                    if self.result.outcome != "complete":
                        break
            finally:
                self.result.plan_seconds = planner.seconds
                self.result.already_decided = planner.settled.events
                planner.drop()
                snapshot.drop()
            if (
                self.result.outcome == "complete"
                and not self.result.examined
                and not self.result.skipped
            ):
                self.result.nothing_to_decide = True
                self.result.message = self._nothing_message(planner.settled, dry_run=True)

    def _real_run(self, engine: sa.Engine) -> None:
        # Replicas, load and pause checks are set up (and refused) before anything is
        # written, the runner lease included.
        with db.connect(engine) as conn:
            self.throttle = build_throttle(
                self.options.throttle, self.url, conn, self.stop, notify=self._notice
            )
        lease = RunnerLock(engine, self.location)
        try:
            lease.acquire(None)
        except BaseException:
            self.throttle.close()
            raise
        try:
            with db.connect(engine) as conn:
                self.configure(conn)
                snapshot = self._snapshot = EvidenceSnapshot(
                    conn,
                    self.location,
                    audit_available=True,
                    releases=parse_releases(self.options.releases),
                )
                resuming = runs.latest_unfinished(conn, self.st, runs.BACKFILL)
                conn.rollback()
                planned = None
                if resuming is None or self.options.new_run:
                    planned = self._undecided(conn, snapshot)
                    if planned is None:
                        self.throttle.close()
                        return  # nothing new to decide: no run, no audit row
                run = self._open_run(conn, lease)
                lease.set_run(run.id)
                try:
                    self._run_tables(conn, run, lease, snapshot, planned)
                except KeyboardInterrupt:
                    conn.rollback()
                    runs.finish(
                        conn,
                        self.st,
                        run.id,
                        runs.INTERRUPTED,
                        "aborted during a batch (rolled back)",
                    )
                    self.result.outcome = "interrupted"
                    self.result.message = checks.resume_hint(run.id)
                except CriticalLoad as exc:
                    runs.record_failure(
                        conn, engine, self.st, run.id, str(exc), state=runs.CRITICAL_LOAD
                    )
                    raise
                except ActionHostError as exc:
                    runs.record_failure(conn, engine, self.st, run.id, str(exc))
                    raise
                except sa.exc.DBAPIError as exc:
                    error = db.translate_error(exc, self.url)
                    runs.record_failure(conn, engine, self.st, run.id, str(error))
                    raise error from None
        finally:
            lease.release()

    def _undecided(self, conn: sa.Connection, snapshot: EvidenceSnapshot) -> int | None:
        """How many NULL-host events a new run would decide; None (and the result says
        so) when none: every one is decided already, on unchanged evidence."""
        horizons = {t: self.max_id(conn, t) for t in self.options.tables()}
        pending = sum(self.pending(conn, t, 0, h) for t, h in horizons.items())
        conn.rollback()
        if not pending:
            total, settled = 0, Settled()
        else:
            planner = self.planner(conn, snapshot)
            if planner.settled_by is None:
                return pending
            total, settled = 0, Settled()
            for table, horizon in horizons.items():
                count, left_out = planner.undecided(table, 0, horizon)
                total += count
                settled.add(left_out)
        self._evidence_until = settled.evidence_until
        if total:
            return total
        self.result.nothing_to_decide = True
        self.result.already_decided = settled.events
        self.result.message = self._nothing_message(settled, dry_run=False)
        return None

    def _nothing_message(self, settled: Settled, *, dry_run: bool) -> str:
        done = "nothing to do" if dry_run else "no run recorded"
        if not settled.events:
            return f"nothing to decide: no NULL-host event left in {self.result.database}; {done}"
        by = ", ".join(map(str, sorted(settled.runs)))
        return (
            f"nothing new to decide: the {settled.events:,} NULL-host events left were decided "
            f"by run{'s' if len(settled.runs) > 1 else ''} {by} and their evidence has not "
            f"changed since; {done}"
        )

    def _open_run(self, conn: sa.Connection, lease: RunnerLock) -> runs.Run:
        options = self.options
        existing = runs.latest_unfinished(conn, self.st, runs.BACKFILL)
        if existing is not None and options.new_run:
            runs.set_state(conn, self.st, existing.id, runs.ABANDONED, "superseded by --new-run")
            existing = None
        if existing is not None:
            if existing.options.get("scope") != options.scope():
                conn.rollback()
                raise BadInput(
                    f"unfinished run {existing.id} was started with other options "
                    f"({checks.scope_words(existing.options.get('scope') or {})}; now "
                    f"{checks.scope_words(options.scope())}): run again the same way to resume it, "
                    "or pass --new-run to start over"
                )
            checks.refuse_foreign_checkpoints(conn, self.st, existing.id, options.tables())
            self.result.run_id = existing.id
            self.result.resumed = True
            existing.state = runs.RUNNING
            runs.set_state(conn, self.st, existing.id, runs.RUNNING, runner=lease.holder)
            conn.commit()
            return existing
        horizons = {t: self.max_id(conn, t) for t in options.tables()}
        run_id = runs.create(
            conn,
            self.st,
            runs.BACKFILL,
            {
                "scope": options.scope(),
                "decisions": options.decisions(),
                "batch_size": options.batch_size,
                "target_batch_seconds": self.sizer.target,
                "throttle": options.throttle.record(),
                # What this run has seen of Nova's rows (engine/settled.py).
                "evidence_until": self._evidence_until.isoformat()
                if self._evidence_until
                else None,
            },
            horizons,
            runner=lease.holder,
        )
        conn.commit()
        self.result.run_id = run_id
        run = runs.load(conn, self.st, run_id)
        conn.rollback()
        return run

    def _run_tables(
        self,
        conn: sa.Connection,
        run: runs.Run,
        lease: RunnerLock,
        snapshot: EvidenceSnapshot,
        planned: int | None,
    ) -> None:
        checkpoints = {t: run.checkpoints[t] for t in self.options.tables()}
        total = planned
        if total is None:
            total = sum(
                self.pending(conn, t, c.last_id, c.horizon)
                for t, c in checkpoints.items()
                if not c.done
            )
        conn.rollback()
        self.shares = self._shares(total, audit_available=True)
        self._take_snapshot(snapshot)
        planner = self.planner(conn, snapshot)
        bar = self._bar(total, f"run {run.id}")
        throttle = self.throttle
        throttle.on_change = show_reason(bar)
        self.result.throttle = throttle.stats
        # Planning reads on ``conn`` (the evidence snapshot's) while the applier
        # writes on its own connection (engine/pipeline.py); SQLite: one connection.
        self._writer = None
        if pipeline.pipelined(conn):
            self._writer = conn.engine.connect()
            self.dialect.configure_session(self._writer, self.options.lock_timeout)
            pipeline.create_plan(self._writer, planner.plan)
        applier = Applier(
            self._writer or conn,
            url=self.url,
            st=self.st,
            run_id=run.id,
            sizer=self.sizer,
            options=self.options,
            stop=self.stop,
            lease=lease,
            progress=bar,
            what="backfill",
            throttle=throttle,
        )
        # --max-rows with --until-complete caps each pass, not the run (nova-manage's
        # --max-count): plan whole ranges, let the applier refill the budget per pass.
        passes = self.options.until_complete and self.options.max_rows is not None
        try:
            while True:
                for table, checkpoint in checkpoints.items():
                    if not self._run_table(conn, run, table, checkpoint, planner, applier, lease):
                        break
                if applier.stopping or not self.options.until_complete:
                    break
                if not self._extend_horizons(conn, run.id, checkpoints, snapshot):
                    break
        finally:
            if self._writer is not None:
                pipeline.release_plan(self._writer, self.dialect, planner.plan)
            bar.close()
            throttle.close()
            self.result.plan_seconds = planner.seconds
            self.result.already_decided += planner.settled.events
            self._collect(applier)
            if passes:
                # Every pass but the last writes exactly --max-rows rows.
                self.result.passes = max(1, -(-self.result.filled // self.options.max_rows))
        remaining = sum(self.pending(conn, t, c.last_id, c.horizon) for t, c in checkpoints.items())
        conn.rollback()
        self.result.remaining = remaining
        if applier.stopping and remaining:
            self.result.outcome = "interrupted" if self.stop.is_set() else "partial"
            message = "stopped on request" if self.stop.is_set() else "--max-rows reached"
            runs.finish(conn, self.st, run.id, runs.INTERRUPTED, message)
            self.result.message = checks.resume_hint(run.id)
        else:
            for table in checkpoints:
                runs.mark_table(conn, self.st, run.id, table, done=True)
            runs.finish(conn, self.st, run.id, runs.COMPLETE, None)
        planner.drop()
        snapshot.drop()

    def _run_table(
        self,
        conn: sa.Connection,
        run: runs.Run,
        table: str,
        checkpoint: runs.Checkpoint,
        planner: Planner,
        applier: Applier,
        lease: RunnerLock,
    ) -> bool:
        """Plan and apply ``table`` range by range up to its horizon; False when stopped."""
        capped_run = not self.options.until_complete
        while not checkpoint.done:
            if applier.stopping:
                return False
            budget = applier.budget if capped_run else None
            upper = planner.upper_bound(table, checkpoint.last_id, checkpoint.horizon, budget)
            if self._writer is not None:
                work = PlanFill(self.dialect, planner.plan, table, self.st, run.id)
                if not pipeline.plan_and_apply(
                    planner,
                    applier,
                    work,
                    checkpoint,
                    after=checkpoint.last_id,
                    upper=upper,
                    lease=lease,
                    next_pass=lambda: self._next_pass(applier),
                    shares=self.shares,
                ):
                    return False
            else:
                decided = planner.plan_range(
                    table, checkpoint.last_id, upper, lease=lease, shares=self.shares
                )
                if decided is None:
                    return False  # stopped while planning
                work = PlanFill(self.dialect, planner.plan, table, self.st, run.id)
                while not applier.run(work, checkpoint):
                    if not self._next_pass(applier):
                        return False
            if upper >= checkpoint.horizon:
                checkpoint.done = True
            else:
                # Every planned event of the range is applied (or was settled): the next
                # range starts after it, so a resumed run does not plan it again.
                checkpoint.last_id = max(checkpoint.last_id, upper)
                runs.mark_table(conn, self.st, run.id, table, done=False, last_id=upper)
                conn.commit()
        return True

    def _next_pass(self, applier: Applier) -> bool:
        """--max-rows with --until-complete: a spent budget starts the next pass."""
        if (
            self.stop.is_set()
            or not self.options.until_complete
            or self.options.max_rows is None
            or applier.budget is None
            or applier.budget > 0
        ):
            return False
        applier.budget = self.options.max_rows
        log.info("next pass: up to %s more rows", self.options.max_rows)
        return True

    def _collect(self, applier: Applier) -> None:
        stats = applier.stats
        self.result.batches += stats.batches
        self.result.examined += stats.rows
        self.result.retries += stats.retries
        self.result.batch_seconds.extend(stats.batch_seconds)
        self._tally(stats.counts)

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

    def _shares(self, pending: int, audit_available: bool) -> Shares | None:
        """The planners for ``pending`` NULL-host events; None: the runner's planner."""
        workers = self.result.workers = workers_for(self.options.workers, pending)
        if workers == 1:
            return None
        return Shares(
            workers,
            self.url,
            self.location,
            lock_timeout=self.options.lock_timeout,
            basis=self.options.decisions(),
            exclude=self.options.exclude_rules,
            audit_available=audit_available,
        )

    def _take_snapshot(self, snapshot: EvidenceSnapshot) -> None:
        if self.shares is not None:
            self.result.snapshot = self.shares.take(snapshot)
        else:
            self.result.snapshot = snapshot.take()

    def _tally(self, counts: Counter) -> None:
        for (outcome, rule), rows in counts.items():
            if outcome == FILLED:
                self.result.filled_by_rule[rule] += rows
            elif outcome == LEFT_NULL:
                self.result.null_by_reason[rule] += rows
            else:
                self.result.skipped += rows

    def _bar(self, total: int | None, description: str) -> Progress:
        if self.progress_factory is None:
            return silent()
        return self.progress_factory(total, description)


def run_backfill(
    url: URL,
    options: BackfillOptions | None = None,
    *,
    state_schema: str | None = None,
    stop: threading.Event | None = None,
    progress: ProgressFactory | None = None,
    notify: Callable[[str], None] | None = None,
) -> BackfillResult:
    """Backfill (or, with ``dry_run``, only report) the NULL hosts of ``url``.

    ``notify`` receives the one-line notices an operator should see before the
    run (e.g. ``--max-lag`` found no replica); default: logged as warnings.
    """
    options = options or BackfillOptions()
    options.validate()
    location = resolve_state_location(url, state_schema)
    options.throttle.validate(location.backend)
    return _Runner(url, location, options, stop=stop, progress=progress, notify=notify).run()
