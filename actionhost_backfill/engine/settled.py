"""Which NULL-host events an earlier run already decided, on evidence that has not changed.

A finished backfill leaves some events NULL on purpose (each with its reason
in the audit).  Running it again must not decide them again, audit them
again and count them twice (``nova-manage db online_data_migrations`` run
twice writes nothing the second time).  But Nova keeps writing: a new event,
action, migration or fault of an instance is new evidence, and may settle an
event that was left NULL.  The rule, conservative and simple:

An event is *settled* when an audit row of a **complete** backfill run (not
reverted, not abandoned, not unfinished) left it NULL.  A NULL event is
decided again when it is not settled, or when its **instance** has an event
that is not settled, or when any row of that instance (instance, action,
event, migration, fault) was created, updated or deleted after what the
latest run that settled one of its events had seen.  Everything else is left
alone: no plan row, no audit row.

"What a run had seen" is measured in Nova's own timestamps where possible:
a run that looked for changed rows records the newest timestamp it found
(``evidence_until`` in its options); rows stamped after it are new to it.
Otherwise it is the run's start minus :data:`CLOCK_MARGIN` (Nova's hosts and
this one may disagree on the time), so a row Nova wrote just before a run is
decided once more by the next one, which then records what it saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from actionhost_backfill.dialects.bulk import chunks
from actionhost_backfill.state import runs
from actionhost_backfill.state.tables import LEFT_NULL, StateTables

#: Nova's timestamps come from Nova's hosts' clocks, the runs' from this one's.
CLOCK_MARGIN = timedelta(minutes=10)

#: Where an instance's evidence lives, and the column naming its instance.
_EVIDENCE = (
    ("instances", "uuid"),
    ("instance_actions", "instance_uuid"),
    ("migrations", "instance_uuid"),
    ("instance_faults", "instance_uuid"),
)
_STAMPS = ("created_at", "updated_at", "deleted_at")


@dataclass
class Settled:
    """What :func:`drop_settled` left out of a plan range."""

    events: int = 0
    """NULL-host events left alone: already decided, evidence unchanged."""
    runs: set[int] = field(default_factory=set)
    """The complete runs that decided them."""
    evidence_until: datetime | None = None
    """The newest Nova timestamp seen among the rows looked at (what a run has seen)."""

    def add(self, other: Settled) -> None:
        self.events += other.events
        self.runs |= other.runs
        if other.evidence_until is not None and (
            self.evidence_until is None or other.evidence_until > self.evidence_until
        ):
            self.evidence_until = other.evidence_until


def seen_until(started_at: datetime, options: dict) -> datetime:
    """Rows stamped after this are new to the run (see the module docstring)."""
    floor = started_at - CLOCK_MARGIN
    recorded = options.get("evidence_until")
    if not recorded:
        return floor
    return max(floor, min(datetime.fromisoformat(recorded), started_at))


def _thresholds(conn: sa.Connection, st: StateTables) -> dict[int, datetime]:
    r = st.runs
    return {
        run_id: seen_until(started_at, json.loads(options or "{}"))
        for run_id, started_at, options in conn.execute(
            sa.select(r.c.id, r.c.started_at, r.c.options).where(
                r.c.kind == runs.BACKFILL, r.c.state == runs.COMPLETE
            )
        )
    }


def settling_runs(conn: sa.Connection, st: StateTables) -> bool:
    """Whether any complete backfill run left an event NULL (else nothing can be settled)."""
    r, a = st.runs, st.audit
    found = conn.execute(
        sa.select(r.c.id)
        .where(
            r.c.kind == runs.BACKFILL,
            r.c.state == runs.COMPLETE,
            sa.exists().where(a.c.run_id == r.c.id, a.c.outcome == LEFT_NULL),
        )
        .limit(1)
    ).first()
    return found is not None


def _settled_by(st: StateTables, event_id: sa.ColumnElement, event_table: str):
    """The (audit, run) join of complete backfill runs that left ``event_id`` NULL."""
    a, r = st.audit, st.runs
    return sa.and_(
        a.c.event_id == event_id,
        a.c.event_table == event_table,
        a.c.outcome == LEFT_NULL,
        r.c.id == a.c.run_id,
        r.c.kind == runs.BACKFILL,
        r.c.state == runs.COMPLETE,
    )


def drop_settled(
    conn: sa.Connection, null: sa.Table, event_table: str, st: StateTables, present: set[str]
) -> Settled:
    """Delete from ``null`` (the range's NULL-host events: id, instance_uuid, ...) the
    settled events of instances whose evidence has not changed; say how many."""
    a, r = st.audit, st.runs
    n = null
    # Per event: the latest complete run that left it NULL; per instance: the
    # least that any of those runs had seen (the oldest decision it rests on).
    latest = (
        sa.select(sa.func.max(a.c.run_id))
        .where(_settled_by(st, n.c.id, event_table))
        .scalar_subquery()
    )
    rows = conn.execute(sa.select(n.c.id, n.c.instance_uuid, latest.label("run_id"))).all()
    thresholds = _thresholds(conn, st)
    conn.commit()
    decided: dict[str, datetime] = {}
    unsettled: set[str] = set()
    orphans = 0
    for _id, uuid, run_id in rows:
        if uuid is None:
            orphans += run_id is not None
            continue
        if run_id is None:
            unsettled.add(uuid)
        else:
            seen = thresholds[run_id]
            previous = decided.get(uuid)
            decided[uuid] = seen if previous is None else min(previous, seen)
    candidates = {u: t for u, t in decided.items() if u not in unsettled}
    if not candidates and not orphans:
        return Settled()
    changed, newest = _changed_since(conn, candidates, present)
    skip = sorted(u for u in candidates if u not in changed)
    result = Settled(evidence_until=newest)
    for chunk in chunks(skip):
        result.events += conn.execute(n.delete().where(n.c.instance_uuid.in_(chunk))).rowcount
    if orphans:
        # Events whose action is gone: no instance, no evidence that could change.
        result.events += conn.execute(
            n.delete().where(
                n.c.instance_uuid.is_(None),
                sa.exists().where(_settled_by(st, n.c.id, event_table)),
            )
        ).rowcount
    conn.commit()
    if result.events:
        result.runs = {
            row[0]
            for row in conn.execute(
                sa.select(r.c.id)
                .where(r.c.kind == runs.BACKFILL, r.c.state == runs.COMPLETE)
                .where(
                    sa.exists().where(
                        a.c.run_id == r.c.id,
                        a.c.event_table == event_table,
                        a.c.outcome == LEFT_NULL,
                    )
                )
            )
        }
        conn.commit()
    return result


def _changed_since(
    conn: sa.Connection, decided: dict[str, datetime], present: set[str]
) -> tuple[set[str], datetime | None]:
    """The instances of ``decided`` with a row created/updated/deleted after what their
    deciding run had seen, and the newest timestamp among the rows looked at."""
    if not decided:
        return set(), None
    cutoff = min(decided.values())
    latest: dict[str, datetime] = {}
    newest: list[datetime] = []

    def note(uuid: str | None, stamps) -> None:
        when = max((s for s in stamps if s is not None), default=None)
        if when is not None and (not newest or when > newest[0]):
            newest[:] = [when]
        if uuid is None or when is None:
            return
        if uuid not in latest or when > latest[uuid]:
            latest[uuid] = when

    inspector = sa.inspect(conn)
    for name, key in _EVIDENCE:
        for table in (name, f"shadow_{name}"):
            if table not in present:
                continue
            columns = {c["name"] for c in inspector.get_columns(table)}
            stamps = [s for s in _STAMPS if s in columns]
            if not stamps:
                continue
            t = sa.table(table, sa.column(key), *(sa.column(s, sa.DateTime) for s in stamps))
            for row in conn.execute(
                sa.select(t.c[key], *(t.c[s] for s in stamps)).where(
                    sa.or_(*(t.c[s] >= cutoff for s in stamps))
                )
            ):
                note(row[0], row[1:])
    # Events belong to their instance through their action (live or archived).
    for table in ("instance_actions_events", "shadow_instance_actions_events"):
        if table not in present:
            continue
        columns = {c["name"] for c in inspector.get_columns(table)}
        stamps = [s for s in _STAMPS if s in columns]
        if not stamps:
            continue
        e = sa.table(table, sa.column("action_id"), *(sa.column(s, sa.DateTime) for s in stamps))
        owners = []
        for actions in ("instance_actions", "shadow_instance_actions"):
            if actions in present:
                act = sa.table(actions, sa.column("id"), sa.column("instance_uuid"))
                owners.append(
                    sa.select(act.c.instance_uuid, *(e.c[s] for s in stamps))
                    .select_from(e.join(act, act.c.id == e.c.action_id))
                    .where(sa.or_(*(e.c[s] >= cutoff for s in stamps)))
                )
        for owner in owners:
            for row in conn.execute(owner):
                note(row[0], row[1:])
    conn.commit()
    changed = {u for u, when in latest.items() if u in decided and when > decided[u]}
    return changed, (newest[0] if newest else None)
