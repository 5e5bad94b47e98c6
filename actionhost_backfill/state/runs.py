"""Runs and checkpoints in the state schema: what ran, where it stopped, what it did."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from actionhost_backfill import __version__, db, dialects
from actionhost_backfill.clock import utcnow
from actionhost_backfill.state.tables import StateTables

BACKFILL = "backfill"
REVERT = "revert"

RUNNING = "running"
"""In progress, or killed before it could say otherwise."""
INTERRUPTED = "interrupted"
"""Stopped on request (signal, --max-rows): resume by running again."""
FAILED = "failed"
"""Stopped by an error: resume by running again once it is fixed."""
COMPLETE = "complete"
ABANDONED = "abandoned"
"""Superseded by --new-run."""
REVERTED = "reverted"
"""A backfill run a revert run has undone."""
CRITICAL_LOAD = "critical-load"
"""Stopped by --critical-load (the server was overloaded, not broken): resume by
running again once it is calm."""
UNFINISHED = (RUNNING, INTERRUPTED, FAILED, CRITICAL_LOAD)


def now() -> datetime:
    """Naive UTC, to the second (the state tables' DateTime columns carry no zone)."""
    return utcnow().replace(microsecond=0)


@dataclass
class Checkpoint:
    event_table: str
    last_id: int
    horizon: int
    done: bool
    batches: int
    examined: int
    retries: int
    seconds: float


@dataclass
class Run:
    id: int
    kind: str
    state: str
    options: dict
    target_run_id: int | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    runner: str | None
    message: str | None
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    """(outcome, rule) -> rows."""

    def to_dict(self) -> dict:
        filled: Counter = Counter()
        left: Counter = Counter()
        skipped = 0
        for (outcome, rule), rows in self.counts.items():
            if outcome == "filled":
                filled[rule] += rows
            elif outcome == "left-null":
                left[rule] += rows
            else:
                skipped += rows
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "target_run_id": self.target_run_id,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "runner": self.runner,
            "message": self.message,
            "options": self.options,
            "checkpoints": {
                t: {
                    "last_id": c.last_id,
                    "horizon": c.horizon,
                    "done": c.done,
                    "batches": c.batches,
                    "examined": c.examined,
                    "retries": c.retries,
                    "seconds": round(c.seconds, 3),
                }
                for t, c in self.checkpoints.items()
            },
            "filled_by_rule": dict(sorted(filled.items())),
            "null_by_reason": dict(sorted(left.items())),
            "skipped_recorded_meanwhile": skipped,
        }


def create(
    conn: sa.Connection,
    st: StateTables,
    kind: str,
    options: dict,
    horizons: dict[str, int],
    *,
    runner: str,
    target_run_id: int | None = None,
) -> int:
    stamp = now()
    run_id = conn.execute(
        st.runs.insert().values(
            kind=kind,
            state=RUNNING,
            target_run_id=target_run_id,
            options=json.dumps(options, sort_keys=True),
            started_at=stamp,
            updated_at=stamp,
            runner=runner,
            toolkit_version=__version__,
        )
    ).inserted_primary_key[0]
    for table, horizon in horizons.items():
        conn.execute(
            st.checkpoints.insert().values(
                run_id=run_id,
                event_table=table,
                last_id=0,
                horizon=horizon,
                done=False,
                batches=0,
                examined=0,
                retries=0,
                seconds=0.0,
                updated_at=stamp,
            )
        )
    return run_id


def load(conn: sa.Connection, st: StateTables, run_id: int) -> Run | None:
    row = conn.execute(sa.select(st.runs).where(st.runs.c.id == run_id)).first()
    if row is None:
        return None
    run = Run(
        id=row.id,
        kind=row.kind,
        state=row.state,
        options=json.loads(row.options or "{}"),
        target_run_id=row.target_run_id,
        started_at=row.started_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        runner=row.runner,
        message=row.message,
    )
    for c in conn.execute(sa.select(st.checkpoints).where(st.checkpoints.c.run_id == run_id)):
        run.checkpoints[c.event_table] = Checkpoint(
            c.event_table,
            c.last_id,
            c.horizon,
            bool(c.done),
            c.batches,
            c.examined,
            c.retries,
            c.seconds,
        )
    for c in conn.execute(sa.select(st.run_counts).where(st.run_counts.c.run_id == run_id)):
        run.counts[(c.outcome, c.rule)] += c.row_count
    return run


def all_runs(conn: sa.Connection, st: StateTables, limit: int | None = None) -> list[Run]:
    query = sa.select(st.runs.c.id).order_by(st.runs.c.id.desc())
    if limit:
        query = query.limit(limit)
    return [r for r in (load(conn, st, row.id) for row in conn.execute(query)) if r is not None]


def latest_unfinished(
    conn: sa.Connection, st: StateTables, kind: str, target_run_id: int | None = None
) -> Run | None:
    query = (
        sa.select(st.runs.c.id)
        .where(st.runs.c.kind == kind, st.runs.c.state.in_(UNFINISHED))
        .order_by(st.runs.c.id.desc())
        .limit(1)
    )
    if target_run_id is not None:
        query = query.where(st.runs.c.target_run_id == target_run_id)
    row = conn.execute(query).first()
    return load(conn, st, row.id) if row else None


def set_state(
    conn: sa.Connection,
    st: StateTables,
    run_id: int,
    state: str,
    message: str | None = None,
    *,
    runner: str | None = None,
) -> None:
    stamp = now()
    values = {"state": state, "updated_at": stamp, "message": message}
    if runner is not None:
        values["runner"] = runner
    if state in (COMPLETE, ABANDONED):
        values["finished_at"] = stamp
    conn.execute(st.runs.update().where(st.runs.c.id == run_id).values(**values))


def add_counts(
    conn: sa.Connection, st: StateTables, run_id: int, table: str, counts: Counter
) -> None:
    """Add to the per-rule counters, in one statement (one runner per database: no race)."""
    rows = [
        {"run_id": run_id, "event_table": table, "outcome": outcome, "rule": rule, "row_count": n}
        for (outcome, rule), n in sorted(counts.items())
        if n
    ]
    if rows:
        dialects.for_connection(conn).add_counts(conn, st.run_counts, rows, "row_count")


def advance(
    conn: sa.Connection,
    st: StateTables,
    run_id: int,
    table: str,
    *,
    last_id: int,
    examined: int,
    seconds: float,
    retries: int,
    done: bool = False,
    horizon: int | None = None,
) -> None:
    cp = st.checkpoints
    values = {
        "last_id": last_id,
        "batches": cp.c.batches + 1,
        "examined": cp.c.examined + examined,
        "seconds": cp.c.seconds + seconds,
        "retries": cp.c.retries + retries,
        "done": done,
        "updated_at": now(),
    }
    if horizon is not None:
        values["horizon"] = horizon
    conn.execute(
        cp.update().where(cp.c.run_id == run_id, cp.c.event_table == table).values(**values)
    )
    conn.execute(st.runs.update().where(st.runs.c.id == run_id).values(updated_at=now()))


def mark_table(
    conn: sa.Connection,
    st: StateTables,
    run_id: int,
    table: str,
    *,
    done: bool,
    horizon: int | None = None,
    last_id: int | None = None,
) -> None:
    cp = st.checkpoints
    values: dict = {"done": done, "updated_at": now()}
    if horizon is not None:
        values["horizon"] = horizon
    if last_id is not None:
        values["last_id"] = last_id
    conn.execute(
        cp.update().where(cp.c.run_id == run_id, cp.c.event_table == table).values(**values)
    )


def finish(
    conn: sa.Connection, st: StateTables, run_id: int, state: str, message: str | None
) -> None:
    """Record the run's end state and commit."""
    set_state(conn, st, run_id, state, message)
    conn.commit()


def record_failure(
    conn: sa.Connection,
    engine: sa.Engine,
    st: StateTables,
    run_id: int,
    message: str,
    state: str = FAILED,
) -> None:
    """Mark the run ``state`` (failed, or critical-load) if the database still answers (best effort: on this
    connection, else on a fresh one; the error being reported matters more).

    A run left ``running`` resumes the same way as a ``failed`` one: when the
    state tables are locked by someone else (SQLite's single writer), the
    failure is not waited for.
    """
    for attempt in (conn, None):
        try:
            if attempt is None:
                with engine.begin() as fresh:
                    set_state(fresh, st, run_id, state, message)
            else:
                attempt.rollback()
                set_state(attempt, st, run_id, state, message)
                attempt.commit()
            return
        except Exception as exc:
            if attempt is not None:
                db.rollback_hard(attempt)
            if db.is_retryable(exc):
                return


def reverted_by(conn: sa.Connection, st: StateTables, target_run_id: int) -> int | None:
    """The revert run that completed the undoing of ``target_run_id`` (None if none)."""
    r = st.runs
    return conn.execute(
        sa.select(sa.func.max(r.c.id)).where(
            r.c.kind == REVERT,
            r.c.target_run_id == target_run_id,
            r.c.state == COMPLETE,
        )
    ).scalar()
