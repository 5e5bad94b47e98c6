"""Which NULL-host events an earlier run already decided, on evidence that has not changed.

A finished backfill leaves some events NULL on purpose (each with its reason
in the audit).  Running it again must not decide them again, audit them
again and count them twice (``nova-manage db online_data_migrations`` run
twice writes nothing the second time).  But Nova keeps writing: a new event,
action, migration or fault of an instance is new evidence, and may settle an
event that was left NULL.  The rule, conservative and simple:

An event is *settled* when an audit row of a **complete** backfill run (not
reverted, not abandoned, not unfinished) that decided on the **same basis**
left it NULL.  The basis is what can change a decision besides Nova's rows:
the rules' version (:data:`RULES_VERSION`, bumped with every change that can
change a decision), the operator's ``--releases`` and ``--exclude-rule``.  A
rerun with another basis (a newer toolkit, another upgrade history, a rule
excluded or no longer excluded) decides again every NULL event.  A NULL event is
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

#: The version of the inference rules.  Bump it with every change that can change
#: a decision: events older runs left NULL are then decided again by a rerun.
RULES_VERSION = "2026-12-06"


def decision_basis(releases: dict | None, exclude_rules) -> dict:
    """What besides Nova's rows decides an event (stored in a run's options)."""
    return {
        "rules": RULES_VERSION,
        "releases": releases or None,
        "exclude_rules": sorted(exclude_rules),
    }


@dataclass(frozen=True)
class Settling:
    """The complete backfill runs whose NULL decisions a rerun may keep."""

    st: StateTables
    runs: frozenset[int]
    seen: dict[int, datetime] = field(default_factory=dict, compare=False)
    """Per run, what it had seen of Nova's rows (:func:`seen_until`)."""


#: Where an instance's evidence lives, and the column naming its instance.
_EVIDENCE = (
    ("instances", "uuid"),
    ("instance_actions", "instance_uuid"),
    ("migrations", "instance_uuid"),
    ("instance_faults", "instance_uuid"),
)
_STAMPS = ("created_at", "updated_at", "deleted_at")


def _stamps_of(inspector, table: str) -> list[str]:
    """The ``_STAMPS`` columns ``table`` has, in ``_STAMPS`` order."""
    columns = {c["name"] for c in inspector.get_columns(table)}
    return [s for s in _STAMPS if s in columns]


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


def _complete_runs(conn: sa.Connection, st: StateTables) -> list[tuple[int, datetime, dict]]:
    r = st.runs
    return [
        (run_id, started_at, json.loads(options or "{}"))
        for run_id, started_at, options in conn.execute(
            sa.select(r.c.id, r.c.started_at, r.c.options).where(
                r.c.kind == runs.BACKFILL, r.c.state == runs.COMPLETE
            )
        )
    ]


def settling_runs(conn: sa.Connection, st: StateTables, basis: dict) -> Settling | None:
    """The complete backfill runs decided on ``basis`` that left an event NULL (None:
    nothing can be settled)."""
    complete = _complete_runs(conn, st)
    same = [run_id for run_id, _, options in complete if options.get("decisions") == basis]
    if not same:
        return None
    a = st.audit
    left = {
        row[0]
        for chunk in chunks(same)
        for row in conn.execute(
            sa.select(a.c.run_id).where(a.c.run_id.in_(chunk), a.c.outcome == LEFT_NULL).distinct()
        )
    }
    if not left:
        return None
    seen = {
        run_id: seen_until(started_at, options)
        for run_id, started_at, options in complete
        if run_id in left
    }
    return Settling(st, frozenset(left), seen)


def _settled_by(settling: Settling, event_id: sa.ColumnElement, event_table: str):
    """The audit rows of the settling runs that left ``event_id`` NULL."""
    a = settling.st.audit
    return sa.and_(
        a.c.event_id == event_id,
        a.c.event_table == event_table,
        a.c.outcome == LEFT_NULL,
        a.c.run_id.in_(sorted(settling.runs)),
    )


def drop_settled(
    conn: sa.Connection, null: sa.Table, event_table: str, settling: Settling, present: set[str]
) -> Settled:
    """Delete from ``null`` (the range's NULL-host events: id, instance_uuid, ...) the
    settled events of instances whose evidence has not changed; say how many."""
    a = settling.st.audit
    n = null
    # Per event: the latest complete run that left it NULL; per instance: the
    # least that any of those runs had seen (the oldest decision it rests on).
    latest = (
        sa.select(sa.func.max(a.c.run_id))
        .where(_settled_by(settling, n.c.id, event_table))
        .scalar_subquery()
    )
    # Counted per (instance, run) on the server: one row per NULL event would put
    # a rerun's millions of events through the client at once.
    per_event = sa.select(n.c.instance_uuid, latest.label("run_id")).subquery()
    rows = conn.execute(
        sa.select(per_event.c.instance_uuid, per_event.c.run_id, sa.func.count()).group_by(
            per_event.c.instance_uuid, per_event.c.run_id
        )
    ).all()
    thresholds = settling.seen
    conn.commit()
    decided: dict[str, datetime] = {}
    unsettled: set[str] = set()
    orphans = 0
    for uuid, run_id, events in rows:
        if uuid is None:
            orphans += events if run_id is not None else 0
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
                sa.exists().where(_settled_by(settling, n.c.id, event_table)),
            )
        ).rowcount
    conn.commit()
    if result.events:
        result.runs = {
            row[0]
            for row in conn.execute(
                sa.select(a.c.run_id)
                .where(
                    a.c.run_id.in_(sorted(settling.runs)),
                    a.c.event_table == event_table,
                    a.c.outcome == LEFT_NULL,
                )
                .distinct()
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
            stamps = _stamps_of(inspector, table)
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
        stamps = _stamps_of(inspector, table)
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
