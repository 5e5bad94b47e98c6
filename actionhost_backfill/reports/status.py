"""After a backfill: status and verify, read from the audit.

``status`` lists runs and what remains; ``verify`` checks that every value a
run wrote is still there (an archived row moved to its shadow table counts
as still there).  ``revert`` is in :mod:`actionhost_backfill.engine.revert`.
Both only read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.clock import utcnow
from actionhost_backfill.errors import BadInput
from actionhost_backfill.nova import catalog
from actionhost_backfill.nova.tables import EVENT_TABLES, nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema.ready import require_state, state_ready
from actionhost_backfill.state import runs
from actionhost_backfill.state.audit import hosts_now, written_by
from actionhost_backfill.state.lease import Holder, live_holder
from actionhost_backfill.state.tables import FILLED, LEFT_NULL, StateTables, state

# --------------------------------------------------------------------------- status


def latest_decisions(conn: sa.Connection, st: StateTables) -> Counter:
    """(outcome, rule) -> events, counting each event once: its latest decision by a
    backfill run that was not reverted (a rerun decides again only what changed)."""
    a, r = st.audit, st.runs
    b, rb = a.alias("later"), r.alias("later_run")
    kept = [r.c.kind == runs.BACKFILL, r.c.state != runs.REVERTED]
    later = (
        sa.exists()
        .where(
            b.c.event_table == a.c.event_table,
            b.c.event_id == a.c.event_id,
            b.c.run_id > a.c.run_id,
            b.c.reverted_by.is_(None),
            rb.c.id == b.c.run_id,
            rb.c.kind == runs.BACKFILL,
            rb.c.state != runs.REVERTED,
        )
        .correlate(a)
    )
    rows = conn.execute(
        sa.select(a.c.outcome, a.c.rule, sa.func.count())
        .select_from(a.join(r, r.c.id == a.c.run_id))
        .where(*kept, a.c.reverted_by.is_(None), ~later)
        .group_by(a.c.outcome, a.c.rule)
    )
    return Counter({(outcome, rule): n for outcome, rule, n in rows})


def _split(counts: Counter) -> tuple[dict[str, int], dict[str, int]]:
    filled: Counter = Counter()
    left: Counter = Counter()
    for (outcome, rule), n in counts.items():
        if outcome == FILLED:
            filled[rule] += n
        elif outcome == LEFT_NULL:
            left[rule] += n
    return dict(sorted(filled.items())), dict(sorted(left.items()))


@dataclass
class LiveRun:
    """The runner holding the lock now, and how far its run is (from its checkpoints)."""

    run_id: int | None
    kind: str | None
    holder: str | None
    hostname: str | None
    pid: int | None
    since: datetime | None
    heartbeat_at: datetime | None
    done: int = 0
    planned: int | None = None
    rows_per_second: float | None = None

    @property
    def eta_seconds(self) -> float | None:
        if self.planned is None or not self.rows_per_second:
            return None
        return max(0, self.planned - self.done) / self.rows_per_second

    def to_dict(self) -> dict:
        eta = self.eta_seconds
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "holder": self.holder,
            "hostname": self.hostname,
            "pid": self.pid,
            "since": self.since,
            "heartbeat_at": self.heartbeat_at,
            "done": self.done,
            "planned": self.planned,
            "rows_per_second": None
            if self.rows_per_second is None
            else round(self.rows_per_second, 1),
            "eta_seconds": None if eta is None else round(eta),
        }


@dataclass
class StatusReport:
    database: str
    state_location: str
    state_ready: bool
    null_hosts: dict[str, int]
    runs: list[dict]
    unfinished_run: int | None
    live: LiveRun | None = None
    """A runner holds the lock now (its run is unfinished because it is running)."""
    decided: dict | None = None
    """Each event counted once, by its latest decision: filled / left NULL by rule."""

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "state_location": self.state_location,
            "state_ready": self.state_ready,
            "null_hosts": self.null_hosts,
            "unfinished_run": self.unfinished_run,
            "live": None if self.live is None else self.live.to_dict(),
            "decided": self.decided,
            "runs": self.runs,
            "exit_code": self.exit_code,
        }

    @property
    def exit_code(self) -> int:
        """3 (busy) while a runner is alive: it is not for the operator to resume;
        1 when a run is unfinished and nobody runs it; else 0."""
        if self.live is not None:
            return 3
        return 1 if self.unfinished_run else 0


def _live_run(conn: sa.Connection, st: StateTables, holder: Holder) -> LiveRun:
    live = LiveRun(
        holder.run_id,
        None,
        holder.holder,
        holder.hostname,
        holder.pid,
        holder.acquired_at,
        holder.heartbeat_at,
    )
    run = runs.load(conn, st, holder.run_id) if holder.run_id else None
    if run is None:
        return live
    live.kind = run.kind
    live.done = sum(c.examined for c in run.checkpoints.values())
    left = 0
    a = st.audit
    for table, c in run.checkpoints.items():
        if c.done:
            continue
        if run.kind == runs.REVERT:
            left += (
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(a)
                    .where(*written_by(st, run.target_run_id, table), a.c.event_id > c.last_id)
                ).scalar()
                or 0
            )
        elif table in catalog.list_tables(conn):
            t = nova(table)
            left += (
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t)
                    .where(t.c.id > c.last_id, t.c.id <= c.horizon, t.c.host.is_(None))
                ).scalar()
                or 0
            )
    live.planned = live.done + left
    elapsed = (utcnow() - run.started_at).total_seconds()
    live.rows_per_second = live.done / elapsed if elapsed > 0 else None
    return live


def status(url: URL, *, state_schema: str | None = None, limit: int = 20) -> StatusReport:
    """Runs (newest first), their checkpoints and counts, and NULL-host events left;
    the live runner, if any, with its progress."""
    if limit < 1:
        raise BadInput(f"--limit must be at least 1 (got {limit}): how many runs to list")
    location, engine = db.open_engine(url, state_schema)
    try:
        with db.connect(engine) as conn:
            catalog.require_nova(conn, catalog.BACKFILL_TABLES)
            names = catalog.list_tables(conn)
            null_hosts = {}
            for table in EVENT_TABLES:
                if table in names:
                    t = nova(table)
                    null_hosts[table] = conn.execute(
                        sa.select(sa.func.count()).select_from(t).where(t.c.host.is_(None))
                    ).scalar()
            ready = state_ready(conn, location)
            listed: list[dict] = []
            unfinished = None
            live = None
            decided = None
            if ready:
                st = state(location.schema)
                for run in runs.all_runs(conn, st, limit):
                    listed.append(run.to_dict())
                    if run.state in runs.UNFINISHED and unfinished is None:
                        unfinished = run.id
                holder = live_holder(conn, location)
                if holder is not None:
                    live = _live_run(conn, st, holder)
                filled, left = _split(latest_decisions(conn, st))
                decided = {
                    "filled": sum(filled.values()),
                    "left_null": sum(left.values()),
                    "filled_by_rule": filled,
                    "null_by_reason": left,
                }
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
    return StatusReport(
        mask_url(url), location.describe(), ready, null_hosts, listed, unfinished, live, decided
    )


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
    reverted: dict[int, int | None] = field(default_factory=dict)
    """Runs given to check that a revert undid: run -> the revert run (nothing left to check)."""

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
            "reverted": [
                {"run_id": run_id, "reverted_by": by}
                for run_id, by in sorted(self.reverted.items())
            ],
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
    location, engine = db.open_engine(url, state_schema)
    try:
        with db.connect(engine) as conn:
            require_state(conn, location)
            st = state(location.schema)
            names = catalog.list_tables(conn)
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
            if run_id is not None:
                counts = runs.load(conn, st, run_id).counts
            else:
                # Each event once, by its latest decision (reruns decide again what changed).
                counts = latest_decisions(conn, st)
            filled, left = _split(counts)
            report.filled_by_rule.update(filled)
            report.null_by_reason.update(left)
            for rid in sorted(run_ids):
                run = runs.load(conn, st, rid)
                if run.state == runs.REVERTED and run_id is not None:
                    report.reverted[rid] = runs.reverted_by(conn, st, rid)
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
                *written_by(st, run_id, table),
                audit.c.event_id > after,
            )
            .order_by(audit.c.event_id)
            .limit(batch_size)
        ).fetchall()
        if not rows:
            return
        ids = [r.event_id for r in rows]
        now = hosts_now(conn, table, ids, names, lock=False)
        for r in rows:
            report.checked += 1
            if r.event_id not in now:
                report.missing += 1
                continue
            where, current = now[r.event_id]
            if current == r.host:
                report.matching += 1
                report.archived += where != table
            else:
                report.drift += 1
                if len(report.drift_examples) < examples:
                    report.drift_examples.append(
                        {
                            "run_id": run_id,
                            "table": where,
                            "event_id": r.event_id,
                            "written": r.host,
                            "now": current,
                            "rule": r.rule,
                        }
                    )
        after = ids[-1]
        conn.rollback()
