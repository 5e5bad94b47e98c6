"""The revert flow: set back to NULL what a backfill run filled, where the host is still its value.

Driven by the run's audit, in id order, through the same
:class:`~actionhost_backfill.engine.applier.Applier` as the backfill (bounded
lock waits, retries, batch sizing, ``--sleep``, ``--max-rows``, lease and
checkpoint), under the same one-runner lock.  A host changed since the run
wrote it is left alone and counted; an event moved to its shadow table by
Nova's archiver keeps its id and is reverted there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db, preflight
from actionhost_backfill.dialects.bulk import chunks
from actionhost_backfill.engine.applier import (
    Applied,
    Applier,
    WriteOptions,
    batch_end,
    prepare_session,
)
from actionhost_backfill.engine.progress import Progress, show_reason, silent
from actionhost_backfill.engine.throttling import (
    CriticalLoad,
    Throttle,
    ThrottleStats,
    build_throttle,
    throttle_dict,
)
from actionhost_backfill.errors import ActionHostError, BadInput
from actionhost_backfill.nova import catalog
from actionhost_backfill.nova.tables import EVENT_TABLES, nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema.ready import require_state
from actionhost_backfill.state import runs
from actionhost_backfill.state.audit import hosts_now, other_table, written_by
from actionhost_backfill.state.lease import RunnerLock
from actionhost_backfill.state.tables import FILLED, StateTables, state

# What a revert batch counts (reported, not kept in run_counts).
REVERTED_ROWS, KEPT, ALREADY_NULL, MISSING = "reverted", "kept-changed", "already-null", "missing"


@dataclass
class RevertOptions(WriteOptions):
    dry_run: bool = False


@dataclass
class RevertResult:
    database: str
    target_run_id: int
    revert_run_id: int | None
    dry_run: bool
    outcome: str = "complete"
    reverted: int = 0
    kept_changed: int = 0
    """Rows whose host changed since the run wrote it: left alone."""
    already_null: int = 0
    """Rows NULL again although the audit has them written (a cell restored from a backup?)."""
    missing: int = 0
    """Rows no longer in either events table (purged)."""
    batches: int = 0
    retries: int = 0
    throttle: ThrottleStats | None = None
    """Time paused by throttle checks, how often, the worst replica lag seen."""
    elapsed: float = 0.0
    message: str | None = None
    nothing_to_revert: bool = False
    """No revert run was opened: nothing the target run wrote is left to undo."""
    notices: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> int | None:
        return self.revert_run_id

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "complete" else 1

    def to_dict(self) -> dict:
        payload = {k: v for k, v in asdict(self).items() if k != "throttle"}
        return {
            **payload,
            "throttled": throttle_dict(self.throttle),
            "elapsed": round(self.elapsed, 3),
            "exit_code": self.exit_code,
        }


class RevertWork:
    """The audit rows of ``target`` for one events table, batch by batch."""

    def __init__(
        self,
        st: StateTables,
        target: int,
        table: str,
        names: set[str],
        revert_run_id: int | None,
        *,
        write: bool,
    ):
        self.st = st
        self.target = target
        self.table = table
        self.names = names
        self.write = write
        self.revert_run_id = revert_run_id

    def _pending(self) -> list:
        """The audit rows of this table that the target run filled and nothing reverted yet."""
        return written_by(self.st, self.target, self.table)

    def bound(self, conn: sa.Connection, after: int, size: int) -> int | None:
        a = self.st.audit
        return batch_end(conn, a.c.event_id, self._pending(), after, size)

    def apply(self, conn: sa.Connection, after: int, upto: int, batch: int) -> Applied:
        a = self.st.audit
        written = dict(
            conn.execute(
                sa.select(a.c.event_id, a.c.host).where(
                    *self._pending(), a.c.event_id > after, a.c.event_id <= upto
                )
            ).all()
        )
        now = hosts_now(conn, self.table, list(written), self.names, lock=self.write)
        to_null: dict[str, list[int]] = {self.table: [], other_table(self.table): []}
        kept = null = missing = 0
        for event_id, host in written.items():
            if event_id not in now:
                missing += 1
                continue
            where, current = now[event_id]
            if current == host:
                to_null[where].append(event_id)
            elif current is None:
                null += 1
            else:
                kept += 1
        reverted = to_null[self.table] + to_null[other_table(self.table)]
        if self.write:
            for where, ids in to_null.items():
                t = nova(where)
                for chunk in chunks(ids):
                    conn.execute(
                        t.update().where(t.c.id.in_(chunk), t.c.host.is_not(None)).values(host=None)
                    )
            for chunk in chunks(reverted):
                conn.execute(
                    a.update()
                    .where(
                        a.c.run_id == self.target,
                        a.c.event_table == self.table,
                        a.c.event_id.in_(chunk),
                    )
                    .values(reverted_by=self.revert_run_id)
                )
        counts = Counter(
            {REVERTED_ROWS: len(reverted), KEPT: kept, ALREADY_NULL: null, MISSING: missing}
        )
        return Applied(len(written), counts, len(reverted))


def revert(
    url: URL,
    target_run_id: int,
    options: RevertOptions | None = None,
    *,
    state_schema: str | None = None,
    stop: threading.Event | None = None,
    progress=None,
    notify=None,
) -> RevertResult:
    """Set back to NULL what run ``target_run_id`` filled, where still its value.

    Nothing left to undo (already reverted, or it filled nothing): no revert run
    is recorded, the result says so (``nothing_to_revert``), exit 0."""
    options = options or RevertOptions()
    options.validate()
    stop = stop or threading.Event()
    started = time.monotonic()
    options.throttle.validate(url.get_backend_name())
    location, engine = db.open_engine(url, state_schema, writes=not options.dry_run)
    result = RevertResult(mask_url(url), target_run_id, None, options.dry_run)
    st = state(location.schema)
    try:
        with db.connect(engine) as conn:
            catalog.require_nova(conn, catalog.BACKFILL_TABLES)
            access = preflight.state_access(conn, location)
            if access != "absent":
                request = preflight.revert_request(
                    conn, url, location, dry_run=options.dry_run, throttle=options.throttle
                )
                command = "revert --dry-run" if options.dry_run else "revert"
                preflight.require(conn, url, request, command)
            require_state(conn, location)
            target = runs.load(conn, st, target_run_id)
            if target is None or target.kind != runs.BACKFILL:
                known = [r.id for r in runs.all_runs(conn, st) if r.kind == runs.BACKFILL]
                raise BadInput(
                    f"--run {target_run_id}: no backfill run with that id "
                    f"(backfill runs: {', '.join(map(str, sorted(known))) or 'none'}); nothing was changed"
                )
            unfinished = runs.latest_unfinished(conn, st, runs.REVERT, target_run_id)
            if unfinished is None and not _pending(conn, st, target_run_id):
                result.nothing_to_revert = True
                result.message = _nothing_message(conn, st, target)
                conn.rollback()
                return result
            conn.rollback()
        if options.dry_run:
            with db.connect(engine) as conn:
                _revert_tables(
                    conn, url, st, None, target_run_id, result, options, stop, silent(), None
                )
            return result

        def notice(text: str) -> None:
            result.notices.append(text)
            (notify or (lambda _t: None))(text)

        # Replicas, load and pause checks are set up (and refused) before anything is
        # written, the runner lease included.
        with db.connect(engine) as conn:
            throttle = build_throttle(options.throttle, url, conn, stop, notify=notice)
        lease = RunnerLock(engine, location)
        try:
            lease.acquire(None)
        except BaseException:
            throttle.close()
            raise
        try:
            with db.connect(engine) as conn:
                run_id = _open_run(conn, st, target_run_id, options, lease.holder)
                lease.set_run(run_id)
                result.revert_run_id = run_id
                bar = (
                    progress(_pending(conn, st, target_run_id), f"revert run {target_run_id}")
                    if progress
                    else silent()
                )
                conn.rollback()
                try:
                    throttle.on_change = show_reason(bar)
                    _revert_tables(
                        conn, url, st, lease, target_run_id, result, options, stop, bar, throttle
                    )
                except CriticalLoad as exc:
                    runs.record_failure(
                        conn, engine, st, run_id, str(exc), state=runs.CRITICAL_LOAD
                    )
                    raise
                except ActionHostError as exc:
                    runs.record_failure(conn, engine, st, run_id, str(exc))
                    raise
                except sa.exc.DBAPIError as exc:
                    error = db.translate_error(exc, url)
                    runs.record_failure(conn, engine, st, run_id, str(error))
                    raise error from None
                finally:
                    bar.close()
                if result.outcome == "complete":
                    runs.set_state(conn, st, run_id, runs.COMPLETE)
                    runs.finish(conn, st, target_run_id, runs.REVERTED, f"reverted by run {run_id}")
                else:
                    message = "stopped on request" if stop.is_set() else "--max-rows reached"
                    runs.finish(conn, st, run_id, runs.INTERRUPTED, message)
                    result.message = (
                        f"revert run {run_id} stopped at its checkpoint: run the same command "
                        "again to resume it"
                    )
        finally:
            lease.release()
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
        result.elapsed = time.monotonic() - started
    return result


def _nothing_message(conn: sa.Connection, st: StateTables, target: runs.Run) -> str:
    if target.state == runs.REVERTED:
        by = runs.reverted_by(conn, st, target.id)
        return (
            f"run {target.id} was already reverted"
            + (f" by revert run {by}" if by else "")
            + ": nothing to undo; no revert run recorded"
        )
    return (
        f"run {target.id} has no written host left to undo (it filled none, or every one "
        "was reverted already); no revert run recorded"
    )


def _open_run(
    conn: sa.Connection, st: StateTables, target: int, options: RevertOptions, runner: str
) -> int:
    existing = runs.latest_unfinished(conn, st, runs.REVERT, target)
    if existing is None:
        run_id = runs.create(
            conn,
            st,
            runs.REVERT,
            {
                "batch_size": options.batch_size,
                "target_batch_seconds": options.target_batch_seconds,
            },
            {t: 0 for t in EVENT_TABLES},
            runner=runner,
            target_run_id=target,
        )
    else:
        run_id = existing.id
        runs.set_state(conn, st, run_id, runs.RUNNING, runner=runner)
    conn.commit()
    return run_id


def _pending(conn: sa.Connection, st: StateTables, target_run_id: int) -> int:
    audit = st.audit
    return (
        conn.execute(
            sa.select(sa.func.count())
            .select_from(audit)
            .where(
                audit.c.run_id == target_run_id,
                audit.c.outcome == FILLED,
                audit.c.reverted_by.is_(None),
            )
        ).scalar()
        or 0
    )


def _revert_tables(
    conn: sa.Connection,
    url: URL,
    st: StateTables,
    lease: RunnerLock | None,
    target_run_id: int,
    result: RevertResult,
    options: RevertOptions,
    stop: threading.Event,
    bar: Progress,
    throttle: Throttle | None,
) -> None:
    write = lease is not None
    _, sizer = prepare_session(conn, options)
    names = catalog.list_tables(conn)
    run = runs.load(conn, st, result.revert_run_id) if write else None
    conn.commit()
    works = [
        RevertWork(st, target_run_id, table, names, result.revert_run_id, write=write)
        for table in EVENT_TABLES
    ]
    applier = Applier(
        conn,
        url=url,
        st=st,
        run_id=result.revert_run_id,
        sizer=sizer,
        options=options,
        stop=stop,
        lease=lease,
        progress=bar,
        what="revert",
        write=write,
        keep_counts=False,
        throttle=throttle,
    )
    try:
        for work in works:
            checkpoint = (
                run.checkpoints[work.table]
                if run is not None
                else runs.Checkpoint(work.table, 0, 0, False, 0, 0, 0, 0.0)
            )
            if checkpoint.done:
                continue
            if not applier.run(work, checkpoint):
                result.outcome = "partial"
                return
            if write:
                runs.mark_table(conn, st, result.revert_run_id, work.table, done=True)
                conn.commit()
    finally:
        if throttle is not None:
            throttle.close()
            result.throttle = throttle.stats
        stats = applier.stats
        result.batches += stats.batches
        result.retries += stats.retries
        result.reverted += stats.counts[REVERTED_ROWS]
        result.kept_changed += stats.counts[KEPT]
        result.already_null += stats.counts[ALREADY_NULL]
        result.missing += stats.counts[MISSING]
