"""``explain``: why the rules decide what they decide for one event.

Shows the event, its action and instance, what each of the instance's actions
did to its host (the steps and zones), the host-constant segments with the
evidence for each and its provenance, the decision with its rule or reason,
and what the backfill runs wrote for it.  Reads only: the instance's evidence
is copied into temporary tables on the reading connection.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db, preflight
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.errors import BadInput
from actionhost_backfill.inference import EventRow, Timeline, decide, exclude
from actionhost_backfill.inference.eras import Eras, parse_releases
from actionhost_backfill.inference.rules import RELIES_ON
from actionhost_backfill.inference.steps import BEHAVIOURS
from actionhost_backfill.nova import catalog
from actionhost_backfill.nova.tables import EVENT_TABLES, EVENTS, SHADOW_EVENTS, nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema.ready import state_ready
from actionhost_backfill.state.location import resolve_state_location
from actionhost_backfill.state.tables import state


@dataclass
class Explanation:
    database: str
    event: dict
    action: dict | None = None
    instance: dict | None = None
    steps: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)
    event_segment: int | None = None
    decision: dict = field(default_factory=dict)
    audit: list[dict] = field(default_factory=list)
    compute_hosts: int = 0
    eras: Eras | None = None
    clock: dict = field(default_factory=dict)
    relies_on: str | None = None
    """What the decision's rule relies on Nova having done."""
    contradicts: str | None = None
    """The Nova behaviour the event's rows contradict (reason ``contradiction``)."""
    excluded: dict | None = None
    """What an excluded rule (``--exclude-rule``) would have written."""

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "event": self.event,
            "action": self.action,
            "instance": self.instance,
            "steps": self.steps,
            "segments": self.segments,
            "event_segment": self.event_segment,
            "decision": self.decision,
            "audit": self.audit,
            "compute_hosts": self.compute_hosts,
            "eras": self.eras.to_dict() if self.eras else None,
            "clock": self.clock,
            "relies_on": self.relies_on,
            "contradicts": self.contradicts,
            "excluded": self.excluded,
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(sep=" ") if moment is not None else None


def explain(
    url: URL,
    event_id: int,
    *,
    table: str | None = None,
    state_schema: str | None = None,
    releases: str | None = None,
    exclude_rules: frozenset[str] = frozenset(),
) -> Explanation:
    """Explain the decision for event ``event_id`` (live table first, then archived)."""
    declared = parse_releases(releases)
    if table is not None and table not in EVENT_TABLES:
        raise BadInput(f"--table must be one of {', '.join(EVENT_TABLES)} (got {table})")
    location = resolve_state_location(url, state_schema)
    engine = db.create_engine(url, location, attach="if-exists", sqlite_begin="DEFERRED")
    try:
        with db.connect(engine) as conn:
            try:
                catalog.require_nova(conn, catalog.BACKFILL_TABLES)
                request = preflight.read_request(conn, url, location)
                preflight.require(conn, url, request, "explain")
                names = catalog.list_tables(conn)
                candidates = (
                    [table] if table else [t for t in (EVENTS, SHADOW_EVENTS) if t in names]
                )
                found = None
                for name in candidates:
                    t = nova(name)
                    row = conn.execute(
                        sa.select(
                            t.c.id,
                            t.c.action_id,
                            t.c.event,
                            t.c.start_time,
                            t.c.finish_time,
                            t.c.result,
                            t.c.host,
                        ).where(t.c.id == event_id)
                    ).first()
                    if row is not None:
                        found = (name, row)
                        break
                if found is None:
                    raise BadInput(
                        f"no event with id {event_id} in {' or '.join(candidates)} of "
                        f"{mask_url(url)}: check the id (`events list INSTANCE` shows them)"
                    )
                audit_ready = state_ready(conn, location)
                return _explain(conn, url, location, audit_ready, declared, *found, exclude_rules)
            except sa.exc.DBAPIError as exc:
                raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()


def _explain(
    conn, url, location, audit_ready, declared, table_name, row, exclude_rules=frozenset()
) -> Explanation:
    event = EventRow(*row)
    report = Explanation(
        database=mask_url(url),
        event={
            "table": table_name,
            "id": event.id,
            "event": event.name,
            "start_time": _iso(event.start),
            "finish_time": _iso(event.finish),
            "result": event.result,
            "host": event.host,
        },
    )
    action_row = None
    for name in ("instance_actions", "shadow_instance_actions"):
        if name in catalog.list_tables(conn) and event.action_id is not None:
            t = nova(name)
            action_row = conn.execute(
                sa.select(
                    t.c.id, t.c.instance_uuid, t.c.action, t.c.start_time, t.c.request_id
                ).where(t.c.id == event.action_id)
            ).first()
            if action_row is not None:
                break
    audit_rows = []
    if audit_ready:
        audit = state(location.schema).audit
        audit_rows = [
            {
                "run_id": r.run_id,
                "host": r.host,
                "rule": r.rule,
                "outcome": r.outcome,
                "reverted_by": r.reverted_by,
            }
            for r in conn.execute(
                sa.select(audit)
                .where(audit.c.event_table == table_name, audit.c.event_id == event.id)
                .order_by(audit.c.run_id)
            )
        ]
    report.audit = audit_rows
    written = any(a["outcome"] == "filled" and a["reverted_by"] is None for a in audit_rows)
    report.event["host_source"] = (
        None if event.host is None else ("inferred" if written else "recorded")
    )
    conn.rollback()
    if action_row is None or not action_row.instance_uuid:
        report.decision = {"host": None, "rule": "action-missing"}
        return report
    uuid = action_row.instance_uuid
    report.action = {
        "id": action_row.id,
        "action": action_row.action,
        "request_id": action_row.request_id,
        "start_time": _iso(action_row.start_time),
    }
    snapshot = EvidenceSnapshot(conn, location, audit_available=audit_ready, releases=declared)
    try:
        report.clock = snapshot.take(instances=[uuid]).clock
        report.eras = snapshot.eras
        history = snapshot.histories([uuid])[uuid]
    finally:
        snapshot.drop()
    report.compute_hosts = len(snapshot.hosts.compute)
    instance = history.instance
    report.instance = {
        "uuid": uuid,
        "host": instance.host if instance else None,
        "launched_on": instance.launched_on if instance else None,
        "launched_at": _iso(instance.launched_at) if instance else None,
        "found": instance is not None,
    }
    if event.host is not None:
        # What the rules would decide if Nova had not recorded it: its own host
        # must not be its evidence.
        history = dataclasses.replace(
            history,
            events={
                a: [dataclasses.replace(e, host=None) if e.id == event.id else e for e in evs]
                for a, evs in history.events.items()
            },
        )
    timeline = Timeline(history, snapshot.hosts)
    actions = {a.id: a for a in history.actions}
    action = actions.get(action_row.id)
    for step in timeline.steps:
        migration = step.migration
        report.steps.append(
            {
                "action_id": step.action.id,
                "action": step.action.name,
                "kind": step.kind,
                "from": _iso(step.zone[0]) if step.zone else None,
                "to": _iso(step.zone[1]) if step.zone else None,
                "changes_host": step.zone is not None,
                "before": step.before,
                "after": step.after,
                "note": step.note,
                "migration": None
                if migration is None
                else {
                    "id": migration.id,
                    "type": migration.kind,
                    "source": migration.source,
                    "dest": migration.dest,
                    "status": migration.status,
                },
            }
        )
    for index, segment in enumerate(timeline.segments):
        start = timeline.zones[index - 1].t1 if index > 0 else None
        end = timeline.zones[index].t0 if index < len(timeline.zones) else None
        report.segments.append(
            {
                "index": index,
                "from": _iso(start),
                "to": _iso(end),
                "open_start": index > 0 and start is None,
                "evidence": {h: sorted(k) for h, k in sorted(segment.evidence.items())},
            }
        )
    as_null = EventRow(
        event.id, event.action_id, event.name, event.start, event.finish, event.result
    )
    report.event_segment = timeline.locate(action, event.start)
    decision = decide(as_null, action, history, timeline)
    report.decision = {"host": decision.host, "rule": decision.rule}
    report.relies_on = RELIES_ON.get(decision.rule)
    contradicted = timeline.contradiction_of(as_null)
    if contradicted is not None:
        report.contradicts = BEHAVIOURS[contradicted]
    kept = exclude(decision, exclude_rules)
    if kept is not decision:
        report.decision = {"host": None, "rule": kept.rule}
        report.excluded = {"host": decision.host, "rule": decision.rule}
        report.relies_on = None
    return report
