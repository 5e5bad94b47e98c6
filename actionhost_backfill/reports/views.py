"""What operators read: the microversion 2.62 event view, and which hosts are failing.

``action_body`` / ``actions_body`` render exactly the bodies of Nova's
``GET /servers/{id}/os-instance-actions/{request_id}`` and
``GET /servers/{id}/os-instance-actions`` at microversion 2.62 (with 2.58's
``updated_at``), from rows of the cell database, for other tools to import.
Admins see ``host`` and ``traceback``; every caller sees ``hostId``
(``sha224(project_id + host)``, ``""`` when the host is unknown), the
action's project falling back to the instance's, as Nova does.

``failures`` ranks hosts by failed events in a time window; it reads through
the host index (``host`` leads it, so a ``--host`` filter is an index range
scan) and counts events whose host is still unknown on their own line.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db, dialects
from actionhost_backfill.dialects.bulk import chunks
from actionhost_backfill.errors import BadInput
from actionhost_backfill.inference.roles import Role as EventRole
from actionhost_backfill.inference.roles import role_of
from actionhost_backfill.nova import catalog
from actionhost_backfill.nova.tables import nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.reports.provenance import (
    CHANGED,
    INFERRED,
    RECORDED,
    UNKNOWN,
    Provenance,
    ProvenanceIndex,
)
from actionhost_backfill.state.location import resolve_state_location
from actionhost_backfill.state.tables import FILLED, state

Viewer = Literal["admin", "member"]
ROLES = ("admin", "member")
#: Nova's API time format (no zone).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
ACTION_KEYS = (
    "action",
    "instance_uuid",
    "request_id",
    "user_id",
    "project_id",
    "start_time",
    "message",
    "updated_at",
)
EVENT_KEYS = ("event", "start_time", "finish_time", "result", "traceback")
FAILED = "Error"


def host_id(host: str | None, project_id: str | None) -> str:
    """Nova's ``hostId``: sha224 of project id + host, ``""`` when the host is unknown."""
    if not host:
        return ""
    return hashlib.sha224(((project_id or "") + host).encode("utf-8")).hexdigest()


def api_time(value: datetime | None) -> str | None:
    return value.strftime(TIME_FORMAT) if value is not None else None


def event_body(event: dict, project_id: str | None, role: Viewer) -> dict:
    """One event as the 2.62 API shows it to ``role``."""
    if role not in ROLES:
        raise BadInput(f"--as must be admin or member (got {role!r})")
    body: dict = {}
    for key in EVENT_KEYS:
        if key == "traceback" and role != "admin":
            continue
        value = event.get(key)
        body[key] = api_time(value) if isinstance(value, datetime) else value
    if role == "admin":
        body["host"] = event.get("host")
    body["hostId"] = host_id(event.get("host"), project_id)
    return body


def _action_fields(action: dict) -> dict:
    return {
        key: api_time(action.get(key)) if isinstance(action.get(key), datetime) else action.get(key)
        for key in ACTION_KEYS
    }


def action_body(
    action: dict, events: list[dict], role: Viewer, instance_project_id: str | None = None
) -> dict:
    """``{"instanceAction": {...}}`` for one action and its events (newest first)."""
    project_id = action.get("project_id") or instance_project_id
    body = _action_fields(action)
    body["events"] = [event_body(e, project_id, role) for e in events]
    return {"instanceAction": body}


def actions_body(actions: list[dict]) -> dict:
    """``{"instanceActions": [...]}``: the list view (no events)."""
    return {"instanceActions": [_action_fields(a) for a in actions]}


def provenance_body(
    events: list[dict], provenance: dict[int, Provenance], role: Viewer
) -> list[dict] | None:
    """Where each event's host came from, in the body's event order (admins only).

    Kept apart from the API body so tools parsing the 2.62 keys see them
    untouched; members get None, as the source of a host they may not see
    would tell them about it.
    """
    if role != "admin":
        return None
    out = []
    for event in events:
        known = provenance.get(event["id"]) if event.get("host") else None
        out.append(
            {
                "event": event.get("event"),
                "start_time": api_time(event.get("start_time")),
                "host": event.get("host"),
                **(known.to_dict() if known else {"source": None}),
            }
        )
    return out


def host_sources(events: list[dict], provenance: dict[int, Provenance]) -> str:
    """``2 recorded, 3 inferred``: where an action's event hosts came from."""
    counts = Counter(
        provenance[e["id"]].source if e["id"] in provenance else UNKNOWN
        for e in events
        if e.get("host")
    )
    unset = sum(1 for e in events if not e.get("host"))
    parts = [f"{n} {source}" for source, n in sorted(counts.items())]
    if unset:
        parts.append(f"{unset} unknown host")
    return ", ".join(parts)


# --------------------------------------------------------------------------- reading


@dataclass
class InstanceActions:
    instance_uuid: str
    project_id: str | None
    archived: bool
    actions: list[dict] = field(default_factory=list)
    events: dict[int, list[dict]] = field(default_factory=dict)
    provenance: dict[int, Provenance] = field(default_factory=dict)
    """Event id -> where its host came from (with ``provenance=True``)."""


def _find_instance(conn: sa.Connection, uuid: str) -> tuple[str | None, bool]:
    names = set(sa.inspect(conn).get_table_names())
    for table, archived in (("instances", False), ("shadow_instances", True)):
        if table not in names:
            continue
        t = nova(table)
        row = conn.execute(sa.select(t.c.project_id).where(t.c.uuid == uuid)).first()
        if row is not None:
            return row[0], archived
    raise BadInput(
        f"no instance {uuid} in this cell database (live or archived): check the UUID, "
        "or the --db of the cell it lives in"
    )


def load_actions(
    url: URL,
    instance_uuid: str,
    *,
    request_id: str | None = None,
    provenance: bool = False,
    state_schema: str | None = None,
    with_events: bool = False,
) -> InstanceActions:
    """An instance's actions (newest first) and, for ``request_id``, its events.

    ``provenance``: also where each event's host came from (the state schema's
    audit; ``unknown`` when there is none).
    """
    location = resolve_state_location(url, state_schema)
    engine = db.create_engine(url, location, attach="if-exists")
    try:
        with db.connect(engine) as conn:
            try:
                catalog.require_nova(conn, (catalog.INSTANCES, catalog.ACTIONS, catalog.EVENTS))
                project_id, archived = _find_instance(conn, instance_uuid)
                prefix = "shadow_" if archived else ""
                actions_t = nova(f"{prefix}instance_actions")
                events_t = nova(f"{prefix}instance_actions_events")
                query = sa.select(actions_t).where(actions_t.c.instance_uuid == instance_uuid)
                if request_id is not None:
                    query = query.where(actions_t.c.request_id == request_id)
                query = query.order_by(actions_t.c.start_time.desc(), actions_t.c.id.desc())
                result = InstanceActions(instance_uuid, project_id, archived)
                result.actions = [dict(r) for r in conn.execute(query).mappings()]
                if request_id is not None or with_events:
                    if not result.actions and request_id is not None:
                        raise BadInput(
                            f"instance {instance_uuid} has no action with request id "
                            f"{request_id}: list them with `events list {instance_uuid}`"
                        )
                    ids = [a["id"] for a in result.actions]
                    for chunk in chunks(ids):
                        events = conn.execute(
                            sa.select(events_t)
                            .where(events_t.c.action_id.in_(chunk))
                            .order_by(events_t.c.start_time.desc(), events_t.c.id.desc())
                        ).mappings()
                        for event in events:
                            result.events.setdefault(event["action_id"], []).append(dict(event))
                    if provenance:
                        index = ProvenanceIndex(conn, location)
                        result.provenance = index.lookup(
                            conn,
                            events_t.name,
                            [(e["id"], e["host"]) for evs in result.events.values() for e in evs],
                        )
                return result
            except sa.exc.DBAPIError as exc:
                raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- failures


@dataclass
class HostFailures:
    host: str | None
    failed: int = 0
    events: Counter = field(default_factory=Counter)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    request_ids: list[str] = field(default_factory=list)
    sources: Counter = field(default_factory=Counter)
    """Failed events by where their host came from (recorded, inferred, ...)."""
    inferred_by_rule: Counter = field(default_factory=Counter)
    attribution: Counter = field(default_factory=Counter)
    """Host unknown only: why (``NOT_ATTRIBUTABLE``, ``LEFT_NULL``, ``NOT_EXAMINED``)."""

    def to_dict(self) -> dict:
        body = {
            "host": self.host,
            "failed": self.failed,
            "events": dict(self.events.most_common()),
            "first_seen": api_time(self.first_seen),
            "last_seen": api_time(self.last_seen),
            "request_ids": self.request_ids,
        }
        if self.host is not None:
            body["provenance"] = {
                RECORDED: self.sources[RECORDED],
                INFERRED: self.sources[INFERRED],
                CHANGED: self.sources[CHANGED],
                UNKNOWN: self.sources[UNKNOWN],
                "inferred_by_rule": dict(sorted(self.inferred_by_rule.items())),
            }
        else:
            body["attribution"] = {key: self.attribution[key] for key in ATTRIBUTION}
        return body


#: Why a failed event's host is unknown.  Control-plane events (``conductor_*``,
#: ``api_*``, bare EventReporter names) and names that are not ``compute_*``
#: ran where Nova records no host at all: no backfill can attribute them.
NOT_ATTRIBUTABLE = "not_attributable"
#: A backfill examined the event and no rule could decide: running it again will not either.
LEFT_NULL = "left_null"
#: No backfill has examined the event yet (none run, or not this far): run one.
NOT_EXAMINED = "not_examined"
ATTRIBUTION = (NOT_ATTRIBUTABLE, LEFT_NULL, NOT_EXAMINED)


def attribution_of(event: str | None, examined: bool) -> str:
    """Why a failed event with no host has none (see :data:`ATTRIBUTION`)."""
    if role_of(event, None) in (EventRole.CONTROL_PLANE, EventRole.UNKNOWN):
        return NOT_ATTRIBUTABLE
    return LEFT_NULL if examined else NOT_EXAMINED


@dataclass
class FailuresReport:
    database: str
    since: datetime | None
    until: datetime | None
    hosts: list[HostFailures]
    unknown: HostFailures
    """Failed events whose host is still NULL (never hidden)."""
    total_hosts: int = 0
    provenance_available: bool = False
    recorded_only: bool = False

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "since": api_time(self.since),
            "until": api_time(self.until),
            "hosts": [h.to_dict() for h in self.hosts],
            "hosts_with_failures": self.total_hosts,
            "unknown_host": self.unknown.to_dict(),
            "provenance_available": self.provenance_available,
            "recorded_only": self.recorded_only,
        }


def _window(e: sa.Table, since, until, event) -> list[sa.ColumnElement[bool]]:
    """The report's time window (``[since, until)``, on start_time) and event-name filter."""
    conditions = []
    if since is not None:
        conditions.append(e.c.start_time >= since)
    if until is not None:
        conditions.append(e.c.start_time < until)
    if event is not None:
        conditions.append(e.c.event == event)
    return conditions


def failures_query(
    *,
    since: datetime | None,
    until: datetime | None,
    host: str | None,
    event: str | None,
    known: bool,
    provenance: ProvenanceIndex | None = None,
) -> sa.Select:
    """Failed events grouped by host and event name, for the live events table.

    With ``host`` the WHERE clause is ``host = :host`` first: an index range
    scan on ``actionhost_events_host_idx``.  With ``provenance`` each group is
    also split by what the audit says of the host (``written``: a run's value
    and rule, or none) and whether a backfill run examined the event.
    """
    e = nova("instance_actions_events")
    conditions = [e.c.result == FAILED]
    if host is not None:
        conditions.insert(0, e.c.host == host)
    elif known:
        conditions.insert(0, e.c.host.is_not(None))
    else:
        conditions.insert(0, e.c.host.is_(None))
    conditions += _window(e, since, until, event)
    columns = [
        e.c.host,
        e.c.event,
        sa.func.count().label("failed"),
        sa.func.min(e.c.start_time).label("first_seen"),
        sa.func.max(e.c.start_time).label("last_seen"),
    ]
    if provenance is None or not provenance.available:
        return sa.select(*columns).where(*conditions).group_by(e.c.host, e.c.event)
    audit = state(provenance.location.schema).audit
    written = sa.case(
        (audit.c.event_id.is_(None), sa.literal("none")),
        (audit.c.host == e.c.host, sa.literal(INFERRED)),
        else_=sa.literal(CHANGED),
    ).label("written")
    examined = sa.case((e.c.id <= provenance.examined.get(e.name, 0), 1), else_=0).label("examined")
    joined = e.outerjoin(
        audit,
        sa.and_(
            audit.c.event_id == e.c.id,
            audit.c.outcome == FILLED,
            audit.c.reverted_by.is_(None),
        ),
    )
    return (
        sa.select(*columns, written, audit.c.rule, examined)
        .select_from(joined)
        .where(*conditions)
        .group_by(e.c.host, e.c.event, written, audit.c.rule, examined)
    )


def _source(row, index: ProvenanceIndex | None) -> str:
    if index is None or not index.available:
        return UNKNOWN
    if row["written"] != "none":
        return row["written"]
    return RECORDED if index.complete or not row["examined"] else UNKNOWN


def failures(
    url: URL,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    host: str | None = None,
    event: str | None = None,
    top: int = 10,
    requests: int = 3,
    recorded_only: bool = False,
    state_schema: str | None = None,
) -> FailuresReport:
    """Hosts ranked by failed events in ``[since, until)``, and the unknown-host count.

    Each host's failed events are split by where the host came from (the
    audit in the state schema); ``recorded_only`` ranks hosts Nova recorded
    only.
    """
    if top < 1:
        raise BadInput(f"--top must be at least 1 (got {top})")
    location = resolve_state_location(url, state_schema)
    engine = db.create_engine(url, location, attach="if-exists")
    try:
        with db.connect(engine) as conn:
            try:
                catalog.require_nova(conn, (catalog.ACTIONS, catalog.EVENTS))
                index = ProvenanceIndex(conn, location)
                if recorded_only and not index.available:
                    raise BadInput(
                        f"--recorded-only needs the backfill's audit, but {location.describe()} "
                        "has none: without it no host can be told recorded from inferred (pass "
                        "the --state-schema the backfill used, or drop --recorded-only)"
                    )
                by_host: dict[str | None, HostFailures] = {}
                passes = [False] if host is not None else [True, False]
                for known in passes:
                    query = failures_query(
                        since=since,
                        until=until,
                        host=host,
                        event=event,
                        known=known,
                        provenance=index,
                    )
                    for row in conn.execute(query).mappings():
                        key = row["host"]
                        source = _source(row, index) if key is not None else None
                        if key is None:
                            examined = bool(index.available and row["examined"])
                            by_host.setdefault(None, HostFailures(None)).attribution[
                                attribution_of(row["event"], examined)
                            ] += row["failed"]
                        if recorded_only and key is not None and source != RECORDED:
                            continue
                        entry = by_host.setdefault(key, HostFailures(key))
                        if source is not None:
                            entry.sources[source] += row["failed"]
                            if source == INFERRED:
                                entry.inferred_by_rule[row["rule"]] += row["failed"]
                        entry.failed += row["failed"]
                        entry.events[row["event"]] += row["failed"]
                        entry.first_seen = min(
                            filter(None, (entry.first_seen, row["first_seen"])), default=None
                        )
                        entry.last_seen = max(
                            filter(None, (entry.last_seen, row["last_seen"])), default=None
                        )
                unknown = by_host.pop(None, HostFailures(None))
                ranked = sorted(by_host.values(), key=lambda h: (-h.failed, h.host or ""))
                shown = ranked[:top]
                _attach_requests(
                    conn,
                    [*shown, unknown],
                    requests,
                    since=since,
                    until=until,
                    event=event,
                    recorded_only=index if recorded_only else None,
                )
                return FailuresReport(
                    database=mask_url(url),
                    since=since,
                    until=until,
                    hosts=shown,
                    unknown=unknown,
                    total_hosts=len(ranked),
                    provenance_available=index.available,
                    recorded_only=recorded_only,
                )
            except sa.exc.DBAPIError as exc:
                raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()


def _attach_requests(
    conn,
    entries: list[HostFailures],
    limit: int,
    *,
    since,
    until,
    event,
    recorded_only: ProvenanceIndex | None = None,
) -> None:
    """A few request ids per host (its latest failed actions) to look up with `events show`."""
    e, a = nova("instance_actions_events"), nova("instance_actions")
    for entry in entries:
        conditions = [e.c.host == entry.host if entry.host is not None else e.c.host.is_(None)]
        conditions.append(e.c.result == FAILED)
        conditions += _window(e, since, until, event)
        if recorded_only is not None and entry.host is not None:
            audit = state(recorded_only.location.schema).audit
            conditions.append(
                ~sa.exists().where(
                    audit.c.event_id == e.c.id,
                    audit.c.outcome == FILLED,
                    audit.c.reverted_by.is_(None),
                )
            )
        latest = (
            sa.select(e.c.action_id, e.c.start_time, e.c.id)
            .where(*conditions)
            .order_by(e.c.start_time.desc(), e.c.id.desc())
            .limit(limit * 4)
            .subquery()
        )
        seen: list[str] = []
        for (request_id,) in conn.execute(
            sa.select(a.c.request_id)
            .join_from(latest, a, a.c.id == latest.c.action_id)
            .order_by(latest.c.start_time.desc(), latest.c.id.desc())
        ):
            if request_id and request_id not in seen:
                seen.append(request_id)
            if len(seen) >= limit:
                break
        entry.request_ids = seen


def query_plan(conn: sa.Connection, query: sa.Select) -> str:
    """The server's plan for ``query`` (PostgreSQL and MySQL/MariaDB), as text."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    return dialects.for_connection(conn).query_plan(conn, str(compiled))
