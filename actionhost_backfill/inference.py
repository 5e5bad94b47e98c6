"""Infer the host of historical events, precision first (pure functions, no I/O).

Each decision names the rule that produced its host, or the reason it stays
NULL.  Rules, strongest first:

``migration-role``
    A source- or destination-side event (``event_roles``) takes
    ``source_compute`` / ``dest_compute`` of the migration its action belongs
    to.  A reschedule overwrites the destination columns, so a
    destination-picking event counts only if it is the last of its name in the
    action and succeeded; earlier candidates stay NULL
    (``rescheduled-candidate``) unless a fault names their host.
``fault-record``
    A failed event with exactly one fault recorded by a compute host during
    it (start to finish, small slack) takes that fault's host, unless other
    evidence for the same host-constant segment disagrees.
``host-timeline`` / ``current-host``
    Any other compute event takes the host of its *segment*: the instance's
    life split where the host can change (moves, shelve/offload, unshelve,
    rescheduled builds).  Evidence for a segment: the source of the move that
    ends it, the destination (or source, when rolled back) of the move that
    starts it, faults recorded by compute hosts inside it, events whose host
    Nova recorded inside it, and ``instances.host`` for the last one.  All
    evidence must agree (else ``ambiguous``).  ``current-host`` names the
    case of an instance that never moved and was never offloaded.

Moves in flight at an event's time (created before it, last changed after
it) settle nothing about it (``move-in-flight``).  ``conductor_*`` and
``api_*`` events ran on control-plane nodes recorded nowhere
(``control-plane``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import event_roles as roles
from .event_roles import Role

# Rules: how a written value was obtained.
MIGRATION_ROLE = "migration-role"
FAULT_RECORD = "fault-record"
HOST_TIMELINE = "host-timeline"
CURRENT_HOST = "current-host"
RULES = (MIGRATION_ROLE, FAULT_RECORD, HOST_TIMELINE, CURRENT_HOST)

# Reasons: why a value stays NULL.
CONTROL_PLANE = "control-plane"
UNKNOWN_EVENT = "unknown-event"
ACTION_MISSING = "action-missing"
INSTANCE_MISSING = "instance-missing"
NO_MIGRATION = "no-migration"
MIGRATION_INCOMPLETE = "migration-incomplete"
RESCHEDULED_CANDIDATE = "rescheduled-candidate"
MOVE_IN_FLIGHT = "move-in-flight"
AMBIGUOUS = "ambiguous"
NO_EVIDENCE = "no-evidence"
NO_TIME = "no-time"
REASONS = (
    CONTROL_PLANE,
    UNKNOWN_EVENT,
    ACTION_MISSING,
    INSTANCE_MISSING,
    NO_MIGRATION,
    MIGRATION_INCOMPLETE,
    RESCHEDULED_CANDIDATE,
    MOVE_IN_FLIGHT,
    AMBIGUOUS,
    NO_EVIDENCE,
    NO_TIME,
)
#: Filled by someone else between our read and our write: never overwritten.
RECORDED_MEANWHILE = "recorded-meanwhile"

#: Clocks: events and faults are stamped by conductors, migrations and actions
#: by API, conductor and compute services; NTP keeps them within a second or
#: so, and MySQL keeps whole seconds.  A fault belongs to a failed event if
#: stamped within FAULT_SLACK of it; anything within BOUNDARY_SLACK of a
#: host change is treated as part of it.
FAULT_SLACK = timedelta(seconds=1)
BOUNDARY_SLACK = timedelta(seconds=2)
FAILED = "Error"


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    action_id: int | None
    name: str | None
    start: datetime | None
    finish: datetime | None
    result: str | None


@dataclass(frozen=True, slots=True)
class ActionRow:
    id: int
    instance_uuid: str | None
    name: str | None
    start: datetime | None
    request_id: str | None = None
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class MigrationRow:
    id: int
    instance_uuid: str
    source: str | None
    dest: str | None
    status: str | None
    kind: str
    """Effective migration_type (NULL on old rows resolved by flavor ids)."""
    created: datetime | None
    updated: datetime | None


@dataclass(frozen=True, slots=True)
class FaultRow:
    host: str | None
    created: datetime | None


@dataclass(frozen=True, slots=True)
class InstanceRow:
    uuid: str
    host: str | None
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class NamedEvent:
    """An event of a repeat-sensitive name (destination or build), any host state."""

    id: int
    name: str
    start: datetime | None
    finish: datetime | None
    result: str | None


@dataclass(frozen=True, slots=True)
class RecordedPoint:
    """Nova recorded ``host`` on this action's generic compute events."""

    host: str
    time: datetime


@dataclass
class InstanceHistory:
    uuid: str
    instance: InstanceRow | None
    actions: list[ActionRow] = field(default_factory=list)
    migrations: list[MigrationRow] = field(default_factory=list)
    faults: list[FaultRow] = field(default_factory=list)
    points: dict[int, RecordedPoint] = field(default_factory=dict)
    named: dict[int, list[NamedEvent]] = field(default_factory=dict)
    links: dict[int, MigrationRow | None] = field(default_factory=dict, repr=False)
    """Memo of :func:`_linked_migration` per action id (a history never changes)."""


@dataclass(frozen=True)
class KnownHosts:
    """What the cell knows about its hosts.

    ``compute``: hosts that ran nova-compute (the services table, instances,
    migrations, events Nova recorded); only their faults count as evidence for
    a segment.  ``control``: hosts that ran only control-plane services
    (conductor faults such as NoValidHost carry the conductor's name); their
    faults never settle anything.
    """

    compute: frozenset[str] = frozenset()
    control: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Decision:
    event_id: int
    host: str | None
    rule: str
    """The rule that produced ``host``, or the reason it stays NULL."""

    @property
    def filled(self) -> bool:
        return self.host is not None


# --------------------------------------------------------------------------- timeline


@dataclass
class _Zone:
    """A stretch of time during which the host may change (one or more boundaries)."""

    t0: datetime
    t1: datetime
    before: set[str] = field(default_factory=set)
    after: set[str] = field(default_factory=set)
    before_actions: set[int] = field(default_factory=set)
    after_actions: set[int] = field(default_factory=set)
    moves: bool = False
    """Whether a move or offload is part of it (not just the build)."""


@dataclass
class _Segment:
    evidence: set[str] = field(default_factory=set)
    has_instance_host: bool = False


class Timeline:
    """An instance's host-constant segments and the evidence for each."""

    def __init__(self, history: InstanceHistory, hosts: KnownHosts):
        self.history = history
        self.hosts = hosts
        self.broken = False
        self.zones = self._zones()
        self._starts = [z.t0 for z in self.zones]
        self.segments = [_Segment() for _ in range(len(self.zones) + 1)]
        self.never_moved = not any(z.moves for z in self.zones)
        self._collect_evidence()

    # Zones ------------------------------------------------------------------

    def _zones(self) -> list[_Zone]:
        raw: list[_Zone] = []
        history = self.history
        for migration in history.migrations:
            if migration.created is None:
                self.broken = True  # a move we cannot place: trust nothing generic
                continue
            end = max(self._move_end(migration), migration.created)
            zone = _Zone(migration.created - BOUNDARY_SLACK, end + BOUNDARY_SLACK, moves=True)
            if migration.source:
                zone.before.add(migration.source)
            result = roles.outcome(migration.kind, migration.status)
            if result == roles.DEST and migration.dest:
                zone.after.add(migration.dest)
            elif result == roles.SOURCE and migration.source:
                zone.after.add(migration.source)
            raw.append(zone)
        for action in history.actions:
            if action.start is None:
                continue
            if action.name in roles.OFFLOAD_ACTIONS:
                # The shelve's own events ran on the old host; afterwards the
                # instance may have no host at all until an unshelve.
                raw.append(
                    _Zone(action.start, action.start, before_actions={action.id}, moves=True)
                )
            elif action.name == roles.UNSHELVE:
                # Unshelve picks a new host without a migration row.
                raw.append(_Zone(action.start, action.start, after_actions={action.id}, moves=True))
            elif action.name == roles.CREATE:
                builds = [
                    e
                    for e in history.named.get(action.id, ())
                    if e.name == roles.BUILD_EVENT and e.start
                ]
                last = max(builds, key=lambda e: (e.start, e.id)) if builds else None
                # Rescheduled attempts (and their faults) belong to the build,
                # not to the first segment, which starts with the last attempt.
                end = last.start if last is not None else action.start
                raw.append(_Zone(action.start, max(end, action.start), after_actions={action.id}))
        raw.sort(key=lambda z: (z.t0, z.t1))
        merged: list[_Zone] = []
        for zone in raw:
            if not merged or zone.t0 > merged[-1].t1:
                merged.append(zone)
                continue
            # Overlapping host changes: one zone.  The host before it is what
            # the earliest-starting change says; the host after, what the
            # latest-ending one says (both, if tied: then they must agree).
            last = merged[-1]
            if zone.t0 == last.t0:
                last.before |= zone.before
            if zone.t1 > last.t1:
                last.after = set(zone.after)
                last.t1 = zone.t1
            elif zone.t1 == last.t1:
                last.after |= zone.after
            last.before_actions |= zone.before_actions
            last.after_actions |= zone.after_actions
            last.moves = last.moves or zone.moves
        return merged

    def _move_end(self, migration: MigrationRow) -> datetime:
        """When the move stopped changing the host.

        ``updated_at`` is the last status change, except that an evacuation's
        source marks it ``completed`` whenever it comes back, maybe days later:
        the rebuild on the destination is what ended that move.
        """
        end = migration.updated or migration.created
        if migration.kind == "evacuation" and migration.status in ("done", "completed"):
            finishes = [
                e.finish
                for action in self.history.actions
                if action.name == roles.EVACUATE_ACTION
                and _linked_migration(action, self.history) is migration
                for e in self.history.named.get(action.id, ())
                if e.name == roles.REBUILD_EVENT and e.finish is not None
            ]
            if finishes:
                return min(end, max(finishes))
        return end

    # Placement --------------------------------------------------------------

    def locate(self, action: ActionRow | None, when: datetime | None) -> int | None:
        """The segment index of an event (None when inside a zone)."""
        if action is not None:
            for index, zone in enumerate(self.zones):
                if action.id in zone.before_actions:
                    return index
                if action.id in zone.after_actions:
                    return index + 1
        if when is None:
            return None
        index = bisect.bisect_right(self._starts, when)  # zones starting at or before `when`
        if index > 0 and when <= self.zones[index - 1].t1:
            return None
        return index

    # Evidence ---------------------------------------------------------------

    def _collect_evidence(self) -> None:
        history = self.history
        for index, zone in enumerate(self.zones):
            self.segments[index].evidence |= zone.before
            self.segments[index + 1].evidence |= zone.after
        actions = {a.id: a for a in history.actions}
        for action_id, point in history.points.items():
            segment = self.locate(actions.get(action_id), point.time)
            if segment is not None:
                self.segments[segment].evidence.add(point.host)
        for fault in history.faults:
            if fault.host and fault.host in self.hosts.compute and fault.created is not None:
                segment = self.locate(None, fault.created)
                if segment is not None:
                    self.segments[segment].evidence.add(fault.host)
        instance = history.instance
        if instance is not None and instance.host:
            self.segments[-1].evidence.add(instance.host)
            self.segments[-1].has_instance_host = True

    def host_at(self, action: ActionRow | None, when: datetime | None) -> tuple[str | None, str]:
        """(host, rule) or (None, reason) for a generic compute event."""
        if self.broken:
            return None, AMBIGUOUS
        segment_index = self.locate(action, when)
        if segment_index is None:
            return None, MOVE_IN_FLIGHT if when is not None else NO_TIME
        segment = self.segments[segment_index]
        if len(segment.evidence) > 1:
            return None, AMBIGUOUS
        if not segment.evidence:
            return None, INSTANCE_MISSING if self.history.instance is None else NO_EVIDENCE
        (host,) = segment.evidence
        is_last = segment_index == len(self.segments) - 1
        if self.never_moved and is_last and segment.has_instance_host:
            return host, CURRENT_HOST
        return host, HOST_TIMELINE


# --------------------------------------------------------------------------- rules


def _fault_host(event: EventRow, history: InstanceHistory, hosts: KnownHosts) -> str | None:
    """The single host that recorded a fault while this compute event failed.

    The timing ties the fault to the event, so the host need not be known as
    a compute host; a host known to run only control-plane services is refused.
    """
    if event.result != FAILED or event.start is None:
        return None
    low = event.start - FAULT_SLACK
    high = (event.finish or event.start) + FAULT_SLACK
    recorders = {
        f.host
        for f in history.faults
        if f.host and f.created is not None and low <= f.created <= high
    }
    if len(recorders) != 1:
        return None
    (host,) = recorders
    return None if host in hosts.control else host


def _is_last_of_name(event: EventRow, history: InstanceHistory) -> bool:
    same = [e for e in history.named.get(event.action_id, ()) if e.name == event.name]
    if not same:
        return True
    last = max(same, key=lambda e: (e.start or datetime.min, e.id))
    return last.id == event.id


def _linked_migration(action: ActionRow, history: InstanceHistory) -> MigrationRow | None:
    """The migration an action's move events belong to (same instance, by time)."""
    if action.id not in history.links:
        history.links[action.id] = _find_linked_migration(action, history)
    return history.links[action.id]


def _find_linked_migration(action: ActionRow, history: InstanceHistory) -> MigrationRow | None:
    if action.start is None:
        return None
    if action.name in roles.MOVE_ACTIONS:
        kinds = roles.MOVE_ACTIONS[action.name]
        later = [
            a.start
            for a in history.actions
            if a.name in roles.MOVE_ACTIONS
            and a.start is not None
            and (a.start, a.id) > (action.start, action.id)
        ]
        window_end = min(later) if later else None
        candidates = [
            m
            for m in history.migrations
            if m.created is not None
            and (m.kind in kinds or (None in kinds and m.kind in ("resize", "migration")))
            and m.created >= action.start - BOUNDARY_SLACK
            and (window_end is None or m.created < window_end)
        ]
        return min(candidates, key=lambda m: (m.created, m.id)) if candidates else None
    if action.name in roles.PARTNER_ACTIONS:
        kinds = roles.PARTNER_ACTIONS[action.name]
        candidates = [
            m
            for m in history.migrations
            if m.created is not None
            and (m.kind in kinds or (None in kinds and m.kind in ("resize", "migration")))
            and m.created <= action.start + BOUNDARY_SLACK
        ]
        return max(candidates, key=lambda m: (m.created, m.id)) if candidates else None
    return None


def _role_decision(
    event: EventRow, role: Role, action: ActionRow, history: InstanceHistory, hosts: KnownHosts
) -> tuple[str | None, str]:
    fault = _fault_host(event, history, hosts)
    migration = _linked_migration(action, history)
    if migration is None:
        return (fault, FAULT_RECORD) if fault else (None, NO_MIGRATION)
    if role is Role.SOURCE:
        host = migration.source
    else:
        if roles.is_selection(event.name or "", action.name):
            # Only the winning candidate's host survives in dest_compute.
            if not _is_last_of_name(event, history) or event.result == FAILED:
                return (fault, FAULT_RECORD) if fault else (None, RESCHEDULED_CANDIDATE)
        elif not _is_last_of_name(event, history):
            return (fault, FAULT_RECORD) if fault else (None, RESCHEDULED_CANDIDATE)
        host = migration.dest
    if not host:
        return (fault, FAULT_RECORD) if fault else (None, MIGRATION_INCOMPLETE)
    if fault and fault != host:
        return None, AMBIGUOUS
    return host, MIGRATION_ROLE


def decide(
    event: EventRow,
    action: ActionRow | None,
    history: InstanceHistory | None,
    timeline: Timeline | None,
    hosts: KnownHosts,
) -> Decision:
    """The decision for one event, given its instance's history."""
    role = roles.role_of(event.name, action.name if action else None)
    if role is Role.CONTROL_PLANE:
        return Decision(event.id, None, CONTROL_PLANE)
    if role is Role.UNKNOWN:
        return Decision(event.id, None, UNKNOWN_EVENT)
    if action is None or history is None or timeline is None:
        return Decision(event.id, None, ACTION_MISSING)
    if role in (Role.SOURCE, Role.DEST):
        host, rule = _role_decision(event, role, action, history, hosts)
        return Decision(event.id, host, rule)
    if role is Role.BUILD and not _is_last_of_name(event, history):
        fault = _fault_host(event, history, hosts)
        return (
            Decision(event.id, fault, FAULT_RECORD)
            if fault
            else Decision(event.id, None, RESCHEDULED_CANDIDATE)
        )
    # Generic compute event (or the build that stuck).
    fault = _fault_host(event, history, hosts)
    host, rule = timeline.host_at(action, event.start)
    if fault:
        if host is None and rule in (MOVE_IN_FLIGHT, NO_EVIDENCE, INSTANCE_MISSING, NO_TIME):
            return Decision(event.id, fault, FAULT_RECORD)
        if host == fault:
            return Decision(event.id, fault, FAULT_RECORD)
        return Decision(event.id, None, AMBIGUOUS)
    return Decision(event.id, host, rule)


def infer(
    events: Iterable[EventRow],
    actions: dict[int, ActionRow],
    histories: dict[str, InstanceHistory],
    hosts: KnownHosts,
) -> list[Decision]:
    """Decisions for a batch of NULL-host events (one timeline per instance)."""
    timelines: dict[str, Timeline] = {}
    decisions = []
    for event in events:
        action = actions.get(event.action_id) if event.action_id is not None else None
        history = histories.get(action.instance_uuid) if action and action.instance_uuid else None
        timeline = None
        if history is not None:
            timeline = timelines.get(history.uuid)
            if timeline is None:
                timeline = timelines[history.uuid] = Timeline(history, hosts)
        decisions.append(decide(event, action, history, timeline, hosts))
    return decisions
