"""An instance's host-constant segments and the evidence for each.

The instance's life splits at the zones where its host may have changed
(``steps``).  Inside a segment every compute event that is not source- or
destination-specific ran on the same host, so any trustworthy evidence in the
segment settles all of it; evidence that disagrees settles nothing
(``ambiguous``).  Each piece of evidence keeps its provenance, which names the
rule of the values it settles:

``migration``        the move that ends the segment names its source, the one
                     that starts it its destination (only when the rows prove
                     the move happened: see ``steps``)
``recorded``         an event whose host Nova recorded (Rocky+)
``fault``            a fault recorded by a compute host while one of the
                     segment's generic events failed
``instance-host``    ``instances.host`` for the last segment
``shelved-host``     the ``shelved_host`` system metadata, for the segment of
                     the shelve that wrote it
``launched-on``      ``instances.launched_on``, for the segment that starts at
                     the last claim, when that claim is known to have stuck
``volume-connector`` the connector a volume attachment saved, when the
                     attachment lived inside the segment
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import (
    AMBIGUOUS,
    BOUNDARY_SLACK,
    CURRENT_HOST,
    FAILED,
    FAULT_SLACK,
    HOST_TIMELINE,
    INSTANCE_MISSING,
    LAUNCHED_ON,
    MOVE_IN_FLIGHT,
    NO_EVIDENCE,
    NO_TIME,
    SHELVED_HOST,
    VOLUME_CONNECTOR,
    ActionRow,
    EventRow,
    FaultRow,
    InstanceHistory,
    KnownHosts,
)
from actionhost_backfill.inference.steps import (
    BUILD,
    FIRST_ROW_FINISH,
    UNSHELVE,
    UNTRACKED,
    Step,
    analyze,
    compute_events,
    contradiction,
    last_time,
    scheduling_failure,
)

# Provenance of segment evidence.
MIGRATION = "migration"
RECORDED = "recorded"
FAULT = "fault"
INSTANCE_HOST = "instance-host"
SHELVED = "shelved-host"
LAUNCHED = "launched-on"
VOLUME = "volume-connector"
#: Evidence that names a host directly (migration rows, recorded event hosts,
#: faults, the instance's host), stronger than what older releases left by the side: when a segment has both, its values are ``host-timeline``.
_CLASSIC = frozenset({MIGRATION, RECORDED, FAULT, INSTANCE_HOST})

#: Actions during which a volume's connection may be rewritten on another host.
_CONNECTION_MOVES = frozenset(
    {
        roles.CREATE,
        roles.RESIZE,
        roles.MIGRATE,
        roles.LIVE_MIGRATION,
        roles.EVACUATE,
        roles.REVERT_RESIZE,
        roles.UNSHELVE,
    }
)


@dataclass
class Zone:
    """A stretch of time during which the host may change (one or more steps)."""

    t0: datetime
    t1: datetime | None
    """None: open-ended (a Kilo live migration with nothing after it)."""
    before: set[str] = field(default_factory=set)
    after: set[str] = field(default_factory=set)
    after_actions: set[int] = field(default_factory=set)
    moves: bool = False
    steps: list[Step] = field(default_factory=list)
    unknown_after: bool = False
    """Ends with an untracked gap: whatever moved before it, the host after is unknown."""

    def contains(self, when: datetime) -> bool:
        return self.t0 <= when and (self.t1 is None or when <= self.t1)


@dataclass
class Segment:
    evidence: dict[str, set[str]] = field(default_factory=dict)
    """Host -> provenance of the evidence naming it."""

    def add(self, host: str | None, kind: str) -> None:
        if host:
            self.evidence.setdefault(host, set()).add(kind)


def _after(a: datetime | None, b: datetime | None) -> bool:
    """Whether end ``a`` is later than end ``b`` (None is open-ended)."""
    if a is None:
        return b is not None
    return b is not None and a > b


def is_scheduling_failure(fault: FaultRow) -> bool:
    return scheduling_failure(fault)


class Timeline:
    """An instance's segments, the evidence for each, and its steps' decisions."""

    def __init__(self, history: InstanceHistory, hosts: KnownHosts):
        self.history = history
        self.hosts = hosts
        self.broken = any(m.created is None for m in history.migrations)
        """A migration we cannot place in time: trust nothing segment-based."""
        self.contradicted: dict[int, str] = {}
        """Action id -> the ``steps.BEHAVIOURS`` key its rows contradict."""
        for action in history.actions:
            why = contradiction(history, action.id)
            if why is not None:
                self.contradicted[action.id] = why
        self.steps = analyze(history, hosts, self.contradicted)
        self.roles: dict[int, tuple[str | None, str]] = {}
        for step in self.steps:
            self.roles.update(step.roles)
        self.actions = {a.id: a for a in history.actions}
        self.zones = self._merge([s for s in self.steps if s.zone is not None])
        self._starts = [z.t0 for z in self.zones]
        self._members = {
            action_id: index + 1
            for index, zone in enumerate(self.zones)
            for action_id in zone.after_actions
        }
        # An action followed by an untracked gap owns the segment just before it,
        # whatever its events' times (most are not even read: ``evidence_tables._needed``).
        own_zone = {s.action.id for s in self.steps if s.zone is not None and s.kind != UNTRACKED}
        for index, zone in enumerate(self.zones):
            for step in zone.steps:
                if step.kind == UNTRACKED and step.action.id not in own_zone:
                    self._members.setdefault(step.action.id, index)
        self.segments = [Segment() for _ in range(len(self.zones) + 1)]
        self.never_moved = not any(z.moves for z in self.zones)
        self._collect_evidence()

    # Zones ------------------------------------------------------------------

    @staticmethod
    def _merge(steps: list[Step]) -> list[Zone]:
        raw = []
        for step in steps:
            t0, t1 = step.zone
            raw.append(
                Zone(
                    t0,
                    t1,
                    before={step.before} if step.before else set(),
                    after={step.after} if step.after else set(),
                    after_actions={step.action.id} if step.members_after else set(),
                    moves=step.moves,
                    steps=[step],
                    unknown_after=step.kind == UNTRACKED,
                )
            )
        raw.sort(key=lambda z: (z.t0, z.t1 is None, z.t1 or z.t0))
        merged: list[Zone] = []
        for zone in raw:
            last = merged[-1] if merged else None
            if last is None or (last.t1 is not None and zone.t0 > last.t1):
                merged.append(zone)
                continue
            # Overlapping host changes: one zone.  The host before it is what
            # the earliest-starting change says; the host after, what the
            # latest-ending one says (both, if tied: then they must agree).
            # Two moves in flight at once (Nova's task_state forbids it, so the
            # history contradicts itself) cannot order their hosts: both count.
            if zone.t0 == last.t0:
                last.before |= zone.before
            if zone.unknown_after and not _after(last.t1, zone.t1):
                # An untracked gap ends it: nothing known survives (a move's
                # destination is no host for after the gap).
                last.after = set()
                last.unknown_after = True
                last.t1 = zone.t1
            elif last.unknown_after and not _after(zone.t1, last.t1):
                pass
            elif last.moves and zone.moves:
                if last.unknown_after:  # a later move ends it: its destination is known
                    last.unknown_after = False
                    last.after = set()
                last.after |= zone.after
                if _after(zone.t1, last.t1):
                    last.t1 = zone.t1
            elif _after(zone.t1, last.t1):
                last.after = set(zone.after)
                last.t1 = zone.t1
                last.unknown_after = False
            elif zone.t1 == last.t1:
                last.after |= zone.after
            last.after_actions |= zone.after_actions
            last.moves = last.moves or zone.moves
            last.steps += zone.steps
        return merged

    # Placement --------------------------------------------------------------

    def locate(self, action: ActionRow | None, when: datetime | None) -> int | None:
        """The segment index of an event (None when inside a zone)."""
        if action is not None and action.id in self._members:
            return self._members[action.id]
        if when is None:
            return None
        index = bisect.bisect_right(self._starts, when)  # zones starting at or before `when`
        if index > 0 and self.zones[index - 1].contains(when):
            return None
        return index

    def segment_before(self, action: ActionRow) -> int | None:
        """The segment the instance was in when ``action`` was requested.

        The one before the action's own zone if it has one; else the one its
        request time falls in (None inside another action's zone).
        """
        for index, zone in enumerate(self.zones):
            if any(step.action.id == action.id for step in zone.steps):
                # Merged with an earlier move still in flight (a Kilo live
                # migration open until the next request, clocks that disagree):
                # the host before this one is that move's unknown outcome.
                earlier = any(
                    step.moves
                    and step.action.id != action.id
                    and step.action.start is not None
                    and action.start is not None
                    and step.action.start < action.start
                    for step in zone.steps
                )
                return None if earlier else index
        return self.locate(None, action.start)

    def zone_of(self, step: Step) -> int | None:
        for index, zone in enumerate(self.zones):
            if step in zone.steps:
                return index
        return None

    # Evidence ---------------------------------------------------------------

    def contradiction_of(self, event: EventRow) -> str | None:
        """The ``steps.BEHAVIOURS`` key the event's action contradicts, if any.

        The event itself may not be among the rows read (a successful step of
        an ordinary action): it contradicts when it carries a finish or a
        result and another row of its name in its action does too.
        """
        if event.action_id is None:
            return None
        why = self.contradicted.get(event.action_id)
        if why is not None or (event.finish is None and event.result is None):
            return why
        for other in self.history.named(event.action_id, event.name or ""):
            if other.id != event.id and (other.finish is not None or other.result is not None):
                return FIRST_ROW_FINISH
        return None

    def repeated(self, event: EventRow) -> bool:
        """Whether the event's name repeats in its action (its finish and result are not its own)."""
        # Asked only of failed events: counted then, in the action's few rows,
        # rather than for every event of every instance up front.
        name = event.name
        found = 0
        for other in self.history.events.get(event.action_id, ()):  # type: ignore[arg-type]
            if other.name == name:
                found += 1
                if found > 1:
                    return True
        return False

    def fault_host(self, event: EventRow, *, finish: datetime | None = None) -> str | None:
        """The single compute host that recorded a fault while this event failed."""
        if event.start is None:
            return None
        if finish is None:
            if event.result != FAILED or self.repeated(event):
                return None
            finish = event.finish or event.start
        low, high = event.start - FAULT_SLACK, finish + FAULT_SLACK
        recorders = {
            f.host
            for f in self.history.faults
            if f.host
            and f.created is not None
            and low <= f.created <= high
            and not is_scheduling_failure(f)
        }
        if len(recorders) != 1:
            return None
        (host,) = recorders
        return None if host in self.hosts.control else host

    def move_role(self, event: EventRow) -> tuple[str | None, str] | None:
        """The host (or None) and rule the analysis of its move gave ``event``, or None
        when no step's migration row speaks for it."""
        return self.roles.get(event.id)

    def step_of(self, action: ActionRow) -> Step | None:
        """The step ``action`` made, if it made one."""
        return next((s for s in self.steps if s.action.id == action.id), None)

    def build_attempts(self, action: ActionRow) -> list[EventRow]:
        """The build attempts of ``action`` that have a start, in (start, id) order
        (a reschedule repeats the compute's build event)."""
        return sorted(
            (
                e
                for e in self.history.events.get(action.id, ())
                if e.name in roles.BUILD_EVENTS and e.start is not None
            ),
            key=lambda e: (e.start, e.id),
        )

    def attempt_fault(self, attempts: list[EventRow], k: int) -> str | None:
        """The single compute host that recorded a fault tied to build attempt ``k``.

        Attempts are in (start, id) order; every finish went to the first row.
        Attempt ``k`` owns the faults from its start to the next attempt's
        start (Icehouse records a rescheduled candidate's own fault, 2014.1 CM
        _reschedule_or_error ~1383; Kilo+ none), the last one up to the
        build's finish.  A fault stamped in the second an attempt started may
        be the previous candidate's: then nothing is tied.
        """
        event = attempts[k]
        if event.start is None:
            return None
        if k + 1 < len(attempts):
            high = attempts[k + 1].start
            if high is None:
                return None
            within = lambda t: t < high  # noqa: E731
        else:
            finishes = [e.finish for e in attempts if e.finish is not None]
            end = max(finishes) if finishes else event.start
            within = lambda t: t <= end + FAULT_SLACK  # noqa: E731
        low = event.start - FAULT_SLACK if k == 0 else event.start
        recorders = set()
        for f in self.history.faults:
            if not f.host or f.created is None or is_scheduling_failure(f):
                continue
            if k > 0 and f.created == event.start:
                return None
            if low <= f.created and within(f.created):
                recorders.add(f.host)
        if len(recorders) != 1:
            return None
        (host,) = recorders
        return None if host in self.hosts.control else host

    def _collect_evidence(self) -> None:
        history = self.history
        for index, zone in enumerate(self.zones):
            for host in zone.before:
                self.segments[index].add(host, MIGRATION)
            for host in zone.after:
                self.segments[index + 1].add(host, MIGRATION)
        for action in history.actions:
            for event in history.events.get(action.id, ()):
                if roles.role_of(event.name, action.name) is not roles.Role.GENERIC:
                    continue
                if event.host:
                    self._add(action, event.start, event.host, RECORDED)
                elif event.result == FAILED and action.id not in self.contradicted:
                    fault = self.fault_host(event)
                    if fault and fault in self.hosts.compute:
                        self._add(action, event.start, fault, FAULT)
        for step in self.steps:
            # A move that moved nothing still says where the instance was when
            # it was requested: its row's source is the instance's host then.
            if step.zone is None and step.migration is not None and step.migration.source:
                index = self.segment_before(step.action)
                if index is not None:
                    self.segments[index].add(step.migration.source, MIGRATION)
        instance = history.instance
        if instance is not None and instance.host:
            self.segments[-1].add(instance.host, INSTANCE_HOST)
        self._shelved_host()
        self._launched_on()
        self._volume_connectors()

    def _add(self, action: ActionRow | None, when: datetime | None, host: str, kind: str) -> None:
        segment = self.locate(action, when)
        if segment is not None:
            self.segments[segment].add(host, kind)

    def _shelved_host(self) -> None:
        """``shelved_host`` names the host of the shelve whose window holds ``shelved_at``."""
        record = self.history.shelve
        if record is None or len(set(record.hosts)) != 1 or len(record.times) != 1:
            return  # several shelves left rows (Kilo soft-deletes them): cannot pair them
        host, when = record.hosts[0], record.times[0]
        if host in self.hosts.control:
            return
        matches = [
            (action, event)
            for action in self.history.actions
            for event in self.history.events.get(action.id, ())
            if event.name == roles.SHELVE_EVENT
            and event.start is not None
            and event.start - BOUNDARY_SLACK
            <= when
            <= (event.finish or event.start) + BOUNDARY_SLACK
        ]
        if len(matches) == 1:
            action, event = matches[0]
            self._add(action, event.start, host, SHELVED)

    def _launched_on(self) -> None:
        """``launched_on`` is the host of the last claim that succeeded (build or unshelve)."""
        instance = self.history.instance
        if instance is None or not instance.launched_on:
            return
        claims = [s for s in self.steps if s.kind in (BUILD, UNSHELVE) and s.zone is not None]
        if not claims or not claims[-1].claim_host_known:
            return
        index = self.zone_of(claims[-1])
        if index is not None:
            self.segments[index + 1].add(instance.launched_on, LAUNCHED)

    def _volume_connectors(self) -> None:
        """A connector names the host where the attachment's connection was last made.

        Only an attachment that lived entirely inside one segment says so,
        clear of every action that could have reconnected it elsewhere (a
        rolled-back live migration keeps the destination's connector).
        """
        if not self.history.volumes:
            return
        spans: list[tuple[datetime, datetime | None]] = [(z.t0, z.t1) for z in self.zones]
        for action in self.history.actions:
            if action.name in _CONNECTION_MOVES and action.start is not None:
                end = last_time(compute_events(self.history, action)) or action.start
                spans.append(
                    (
                        action.start - self.hosts.margin(action.start),
                        max(end, action.start) + BOUNDARY_SLACK,
                    )
                )
        for volume in self.history.volumes:
            if volume.created is None or volume.connector_host not in self.hosts.compute:
                continue
            low, high = volume.created, volume.deleted_at
            if any(s0 <= (high or s0) and (s1 is None or low <= s1) for s0, s1 in spans):
                continue
            self._add(None, low, volume.connector_host, VOLUME)

    # Decisions --------------------------------------------------------------

    def host_of(self, index: int | None, *, when_missing: str) -> tuple[str | None, str]:
        """(host, rule) or (None, reason) for a segment."""
        if self.broken:
            return None, AMBIGUOUS
        if index is None:
            return None, when_missing
        segment = self.segments[index]
        if len(segment.evidence) > 1:
            return None, AMBIGUOUS
        if not segment.evidence:
            return None, INSTANCE_MISSING if self.history.instance is None else NO_EVIDENCE
        ((host, kinds),) = segment.evidence.items()
        if self.never_moved and index == len(self.segments) - 1 and INSTANCE_HOST in kinds:
            return host, CURRENT_HOST
        if kinds & _CLASSIC:
            return host, HOST_TIMELINE
        if SHELVED in kinds:
            return host, SHELVED_HOST
        if LAUNCHED in kinds:
            return host, LAUNCHED_ON
        return host, VOLUME_CONNECTOR

    def host_at(self, action: ActionRow | None, when: datetime | None) -> tuple[str | None, str]:
        """(host, rule) or (None, reason) for a generic compute event."""
        return self.host_of(
            self.locate(action, when), when_missing=MOVE_IN_FLIGHT if when is not None else NO_TIME
        )
