"""After a backfill: status, verify and revert, all driven by the audit.

``status`` lists runs and what remains; ``verify`` checks that every value a
run wrote is still there (an archived row moved to its shadow table counts
as still there); ``revert`` sets back to NULL the rows a run filled, only
where the host is still the value it wrote, in resumable batches under the
same one-runner lock as the backfill.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from . import db, novadb, runs, schema
from .batching import pause
from .bulk import chunks
from .errors import BadInput, SchemaNotReady
from .locking import RunnerLock
from .progress import Progress, Silent
from .redact import mask_url
from .state import StateLocation, resolve_state_location, state_schema_exists
from .tables import EVENT_TABLES, EVENTS, FILLED, SHADOW_EVENTS, StateTables, nova, state

REVERTED = "reverted"


def _other(table: str) -> str:
    return SHADOW_EVENTS if table == EVENTS else EVENTS


def _open(
    url: URL, state_schema: str | None, *, writes: bool = False
) -> tuple[StateLocation, sa.Engine]:
    location = resolve_state_location(url, state_schema)
    engine = db.create_engine(
        url, location, attach="if-exists", sqlite_begin="IMMEDIATE" if writes else "DEFERRED"
    )
    return location, engine


def _require_state(conn: sa.Connection, location: StateLocation) -> None:
    novadb.require_nova(conn, novadb.BACKFILL_TABLES)
    if (
        not state_schema_exists(conn, location)
        or schema.current_revision(conn, location) != schema.head_revision()
    ):
        raise SchemaNotReady(
            f"no backfill state in {location.describe()}: run `actionhost-backfill schema upgrade` "
            "and a backfill first (or pass the --state-schema the backfill used)"
        )


# --------------------------------------------------------------------------- status


@dataclass
class StatusReport:
    database: str
    state_location: str
    state_ready: bool
    null_hosts: dict[str, int]
    runs: list[dict]
    unfinished_run: int | None

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "state_location": self.state_location,
            "state_ready": self.state_ready,
            "null_hosts": self.null_hosts,
            "unfinished_run": self.unfinished_run,
            "runs": self.runs,
        }

    @property
    def exit_code(self) -> int:
        return 1 if self.unfinished_run else 0


def status(url: URL, *, state_schema: str | None = None, limit: int = 20) -> StatusReport:
    """Runs (newest first), their checkpoints and counts, and NULL-host events left."""
    location, engine = _open(url, state_schema)
    try:
        with db.connect(engine) as conn:
            novadb.require_nova(conn, novadb.BACKFILL_TABLES)
            names = novadb.list_tables(conn)
            null_hosts = {}
            for table in EVENT_TABLES:
                if table in names:
                    t = nova(table)
                    null_hosts[table] = conn.execute(
                        sa.select(sa.func.count()).select_from(t).where(t.c.host.is_(None))
                    ).scalar()
            ready = (
                state_schema_exists(conn, location)
                and schema.current_revision(conn, location) == schema.head_revision()
            )
            listed: list[dict] = []
            unfinished = None
            if ready:
                st = state(location.schema)
                for run in runs.all_runs(conn, st, limit):
                    listed.append(run.to_dict())
                    if run.state in runs.UNFINISHED and unfinished is None:
                        unfinished = run.id
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
    return StatusReport(mask_url(url), location.describe(), ready, null_hosts, listed, unfinished)


# --------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    database: str
    runs: list[int]
    checked: int = 0
    matching: int = 0
    archived: int = 0
    """Still equal, in the other table (archived since)."""
    drift: int = 0
    missing: int = 0
    """Gone from both tables (purged)."""
    drift_examples: list[dict] = field(default_factory=list)
    filled_by_rule: Counter = field(default_factory=Counter)
    null_by_reason: Counter = field(default_factory=Counter)

    @property
    def exit_code(self) -> int:
        return 4 if self.drift else 0

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "runs": self.runs,
            "checked": self.checked,
            "matching": self.matching,
            "archived_and_matching": self.archived,
            "drift": self.drift,
            "missing": self.missing,
            "drift_examples": self.drift_examples,
            "filled_by_rule": dict(sorted(self.filled_by_rule.items())),
            "null_by_reason": dict(sorted(self.null_by_reason.items())),
            "exit_code": self.exit_code,
        }


def verify(
    url: URL,
    *,
    state_schema: str | None = None,
    run_id: int | None = None,
    batch_size: int = 5000,
    examples: int = 10,
) -> VerifyReport:
    """Check every audited value still equals the table's; counts by rule and reason."""
    location, engine = _open(url, state_schema)
    try:
        with db.connect(engine) as conn:
            _require_state(conn, location)
            st = state(location.schema)
            names = novadb.list_tables(conn)
            if run_id is not None:
                run = runs.load(conn, st, run_id)
                if run is None or run.kind != runs.BACKFILL:
                    raise BadInput(
                        f"--run {run_id}: no backfill run with that id (see `actionhost-backfill status`)"
                    )
                run_ids = [run_id]
            else:
                run_ids = [r.id for r in runs.all_runs(conn, st) if r.kind == runs.BACKFILL]
            report = VerifyReport(mask_url(url), sorted(run_ids))
            for rid in sorted(run_ids):
                run = runs.load(conn, st, rid)
                for (outcome, rule), rows in run.counts.items():
                    if outcome == FILLED:
                        report.filled_by_rule[rule] += rows
                    elif outcome == "left-null":
                        report.null_by_reason[rule] += rows
                for table in EVENT_TABLES:
                    _verify_table(conn, st, rid, table, names, report, batch_size, examples)
            conn.rollback()
            return report
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()


def _verify_table(
    conn,
    st: StateTables,
    run_id: int,
    table: str,
    names: set[str],
    report: VerifyReport,
    batch_size: int,
    examples: int,
) -> None:
    audit = st.audit
    after = 0
    while True:
        rows = conn.execute(
            sa.select(audit.c.event_id, audit.c.host, audit.c.rule)
            .where(
                audit.c.run_id == run_id,
                audit.c.event_table == table,
                audit.c.outcome == FILLED,
                audit.c.reverted_by.is_(None),
                audit.c.event_id > after,
            )
            .order_by(audit.c.event_id)
            .limit(batch_size)
        ).fetchall()
        if not rows:
            return
        ids = [r.event_id for r in rows]
        here = _locked_hosts(conn, table, ids, names, lock=False)
        there = _locked_hosts(
            conn, _other(table), [i for i in ids if i not in here], names, lock=False
        )
        for r in rows:
            report.checked += 1
            if r.event_id in here:
                current, moved = here[r.event_id], False
            elif r.event_id in there:
                current, moved = there[r.event_id], True
            else:
                report.missing += 1
                continue
            if current == r.host:
                report.matching += 1
                report.archived += moved
            else:
                report.drift += 1
                if len(report.drift_examples) < examples:
                    report.drift_examples.append(
                        {
                            "run_id": run_id,
                            "table": _other(table) if moved else table,
                            "event_id": r.event_id,
                            "written": r.host,
                            "now": current,
                            "rule": r.rule,
                        }
                    )
        after = ids[-1]
        conn.rollback()


# --------------------------------------------------------------------------- revert


@dataclass
class RevertResult:
    database: str
    target_run_id: int
    run_id: int | None
    dry_run: bool
    outcome: str = "complete"
    reverted: int = 0
    kept_changed: int = 0
    """Rows whose host changed since the run wrote it: left alone."""
    missing: int = 0
    batches: int = 0
    elapsed: float = 0.0
    message: str | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "complete" else 1

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "target_run_id": self.target_run_id,
            "revert_run_id": self.run_id,
            "dry_run": self.dry_run,
            "outcome": self.outcome,
            "reverted": self.reverted,
            "kept_changed": self.kept_changed,
            "missing": self.missing,
            "batches": self.batches,
            "elapsed_seconds": round(self.elapsed, 3),
            "message": self.message,
            "exit_code": self.exit_code,
        }


def revert(
    url: URL,
    target_run_id: int,
    *,
    state_schema: str | None = None,
    dry_run: bool = False,
    batch_size: int = 1000,
    sleep: float = 0.0,
    max_rows: int | None = None,
    stop: threading.Event | None = None,
    progress=None,
) -> RevertResult:
    """Set back to NULL what run ``target_run_id`` filled, where still its value."""
    if not 1 <= batch_size <= 100_000:
        raise BadInput(f"--batch-size must be between 1 and 100000 (got {batch_size})")
    if sleep < 0:
        raise BadInput(f"--sleep must be at least 0 (got {sleep})")
    if max_rows is not None and max_rows < 1:
        raise BadInput(f"--max-rows must be at least 1 (got {max_rows})")
    stop = stop or threading.Event()
    started = time.monotonic()
    location, engine = _open(url, state_schema, writes=not dry_run)
    result = RevertResult(mask_url(url), target_run_id, None, dry_run)
    try:
        with db.connect(engine) as conn:
            _require_state(conn, location)
            st = state(location.schema)
            target = runs.load(conn, st, target_run_id)
            if target is None or target.kind != runs.BACKFILL:
                known = [r.id for r in runs.all_runs(conn, st) if r.kind == runs.BACKFILL]
                raise BadInput(
                    f"--run {target_run_id}: no backfill run with that id "
                    f"(backfill runs: {', '.join(map(str, sorted(known))) or 'none'}); nothing was changed"
                )
            conn.rollback()
        if dry_run:
            with db.connect(engine) as conn:
                _revert_tables(
                    conn,
                    st,
                    None,
                    target_run_id,
                    result,
                    batch_size,
                    0.0,
                    max_rows,
                    stop,
                    Silent(),
                    write=False,
                )
        else:
            lock = RunnerLock(engine, location)
            lock.acquire(None)
            try:
                with db.connect(engine) as conn:
                    existing = runs.latest_unfinished(conn, st, runs.REVERT, target_run_id)
                    if existing is None:
                        run_id = runs.create(
                            conn,
                            st,
                            runs.REVERT,
                            {"batch_size": batch_size},
                            {t: 0 for t in EVENT_TABLES},
                            runner=f"pid {os.getpid()}",
                            target_run_id=target_run_id,
                        )
                    else:
                        run_id = existing.id
                        runs.set_state(conn, st, run_id, runs.RUNNING)
                    conn.commit()
                    lock.set_run(run_id)
                    result.run_id = run_id
                    bar = (
                        progress(
                            _pending_revert(conn, st, target_run_id), f"revert run {target_run_id}"
                        )
                        if progress
                        else Silent()
                    )
                    conn.rollback()
                    try:
                        _revert_tables(
                            conn,
                            st,
                            run_id,
                            target_run_id,
                            result,
                            batch_size,
                            sleep,
                            max_rows,
                            stop,
                            bar,
                            write=True,
                        )
                    finally:
                        bar.close()
                    if result.outcome == "complete":
                        runs.set_state(conn, st, run_id, runs.COMPLETE)
                        runs.set_state(
                            conn, st, target_run_id, REVERTED, f"reverted by run {run_id}"
                        )
                    else:
                        runs.set_state(conn, st, run_id, runs.INTERRUPTED, "stopped on request")
                        result.message = f"revert run {run_id} stopped at its checkpoint: run the same command again to resume it"
                    conn.commit()
            finally:
                lock.release()
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
        result.elapsed = time.monotonic() - started
    return result


def _locked_hosts(
    conn, table: str, ids: list[int], names: set[str], *, lock: bool
) -> dict[int, str | None]:
    if not ids or table not in names:
        return {}
    t = nova(table)
    found: dict[int, str | None] = {}
    for chunk in chunks(ids):
        query = sa.select(t.c.id, t.c.host).where(t.c.id.in_(chunk))
        if lock and conn.dialect.name != "sqlite":
            query = query.with_for_update()
        found.update((r[0], r[1]) for r in conn.execute(query))
    return found


def _pending_revert(conn, st: StateTables, target_run_id: int) -> int:
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
    conn,
    st,
    run_id,
    target_run_id,
    result: RevertResult,
    batch_size,
    sleep,
    max_rows,
    stop,
    bar: Progress,
    *,
    write: bool,
) -> None:
    names = novadb.list_tables(conn)
    budget = max_rows
    checkpoints = runs.load(conn, st, run_id).checkpoints if run_id else {}
    conn.rollback()
    audit = st.audit
    for table in EVENT_TABLES:
        checkpoint = checkpoints.get(table)
        if checkpoint is not None and checkpoint.done:
            continue
        after = checkpoint.last_id if checkpoint else 0
        while True:
            if stop.is_set() or (budget is not None and budget <= 0):
                result.outcome = "partial"
                return
            size = batch_size if budget is None else min(batch_size, budget)
            batch_started = time.monotonic()
            rows = conn.execute(
                sa.select(audit.c.event_id, audit.c.host)
                .where(
                    audit.c.run_id == target_run_id,
                    audit.c.event_table == table,
                    audit.c.outcome == FILLED,
                    audit.c.reverted_by.is_(None),
                    audit.c.event_id > after,
                )
                .order_by(audit.c.event_id)
                .limit(size)
            ).fetchall()
            if not rows:
                if write:
                    runs.mark_table(conn, st, run_id, table, done=True)
                    conn.commit()
                else:
                    conn.rollback()
                break
            written = {r.event_id: r.host for r in rows}
            # An archived row moved to the shadow table keeps its id: look there too.
            here = _locked_hosts(conn, table, list(written), names, lock=write)
            there = _locked_hosts(
                conn, _other(table), [i for i in written if i not in here], names, lock=write
            )
            to_null: dict[str, list[int]] = {table: [], _other(table): []}
            for event_id, host in written.items():
                if event_id in here:
                    where, current = table, here[event_id]
                elif event_id in there:
                    where, current = _other(table), there[event_id]
                else:
                    result.missing += 1
                    continue
                if current == host:
                    to_null[where].append(event_id)
                else:
                    result.kept_changed += 1
            reverted = to_null[table] + to_null[_other(table)]
            if write:
                for where, ids in to_null.items():
                    t = nova(where)
                    for chunk in chunks(ids):
                        conn.execute(
                            t.update()
                            .where(t.c.id.in_(chunk), t.c.host.is_not(None))
                            .values(host=None)
                        )
            result.reverted += len(reverted)
            if write:
                for chunk in chunks(reverted):
                    conn.execute(
                        audit.update()
                        .where(
                            audit.c.run_id == target_run_id,
                            audit.c.event_table == table,
                            audit.c.event_id.in_(chunk),
                        )
                        .values(reverted_by=run_id)
                    )
                runs.advance(
                    conn,
                    st,
                    run_id,
                    table,
                    last_id=rows[-1].event_id,
                    examined=len(rows),
                    seconds=time.monotonic() - batch_started,
                    retries=0,
                )
                conn.commit()
            else:
                conn.rollback()
            after = rows[-1].event_id
            result.batches += 1
            bar.update(len(rows))
            if budget is not None:
                budget -= len(rows)
            if sleep and pause(sleep, stop):
                result.outcome = "partial"
                return
