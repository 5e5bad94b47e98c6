"""What inference reads (one instance's rows) and what it decides.

Plain frozen rows, filled by ``evidence`` from the cell database (live and
``shadow_*`` tables alike) and by tests directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

# Rules: how a written value was obtained.
MIGRATION_ROLE = "migration-role"
FAULT_RECORD = "fault-record"
HOST_TIMELINE = "host-timeline"
CURRENT_HOST = "current-host"
SHELVED_HOST = "shelved-host"
LAUNCHED_ON = "launched-on"
VOLUME_CONNECTOR = "volume-connector"
RULES = (
    MIGRATION_ROLE,
    FAULT_RECORD,
    HOST_TIMELINE,
    CURRENT_HOST,
    SHELVED_HOST,
    LAUNCHED_ON,
    VOLUME_CONNECTOR,
)

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
CONTRADICTION = "contradiction"
EXCLUDED_RULE = "excluded-rule"
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
    CONTRADICTION,
    EXCLUDED_RULE,
)
#: Filled by someone else between our read and our write: never overwritten.
RECORDED_MEANWHILE = "recorded-meanwhile"

#: Clocks: event times and faults are stamped by the conductor that served the
#: compute's RPC, action starts by the API, migrations by API, conductor or
#: compute (through a conductor); NTP keeps them within a second or so and
#: MySQL keeps whole seconds.  A fault belongs to a failed event if stamped
#: within FAULT_SLACK of it; anything within BOUNDARY_SLACK of a host change is
#: treated as part of it.
FAULT_SLACK = timedelta(seconds=1)
BOUNDARY_SLACK = timedelta(seconds=2)
SUCCESS = "Success"
FAILED = "Error"


#: The rows the rules read and the decisions they return: values, built once
#: and never changed.  Not ``frozen=True``: a frozen dataclass sets each field
#: through ``object.__setattr__``, which made building one ``EventRow`` cost
#: 1.75 µs instead of 0.30 µs, and a run builds about two per event (the event
#: decided and the same event as evidence) and a decision.  Equality and the
#: hash stay by value, as a frozen dataclass's were.
_row = dataclass(slots=True, unsafe_hash=True)


@_row
class EventRow:
    id: int
    action_id: int | None
    name: str | None
    start: datetime | None
    finish: datetime | None
    result: str | None
    host: str | None = None
    """The host Nova recorded (Rocky+); None when NULL or written by this toolkit."""


@_row
class ActionRow:
    id: int
    instance_uuid: str | None
    name: str | None
    start: datetime | None
    request_id: str | None = None
    project_id: str | None = None


@_row
class MigrationRow:
    id: int
    instance_uuid: str
    source: str | None
    dest: str | None
    status: str | None
    kind: str
    """Effective migration_type (NULL on Kilo rows, resolved by flavor ids)."""
    created: datetime | None
    updated: datetime | None
    source_node: str | None = None
    dest_node: str | None = None
    typed: bool = True
    """Whether ``migration_type`` was written (Liberty+); Kilo rows have it NULL."""


@_row
class FaultRow:
    host: str | None
    created: datetime | None
    message: str | None = None


@_row
class InstanceRow:
    uuid: str
    host: str | None
    project_id: str | None = None
    launched_on: str | None = None
    launched_at: datetime | None = None


@_row
class ShelveRecord:
    """The ``shelved_host`` / ``shelved_at`` system metadata of one instance.

    Written together by the compute that ran an image-backed shelve; Kilo
    soft-deletes them at unshelve, Liberty+ hard-deletes them.  ``hosts`` and
    ``times`` hold every row found (any ``deleted`` value, live and archived).
    """

    hosts: tuple[str, ...]
    times: tuple[datetime, ...]


@_row
class VolumeRecord:
    """A volume attachment whose saved ``connection_info`` names a connector host."""

    connector_host: str
    created: datetime | None
    deleted_at: datetime | None


@dataclass
class InstanceHistory:
    """Everything Nova left about one instance (live and archived)."""

    uuid: str
    instance: InstanceRow | None
    actions: list[ActionRow] = field(default_factory=list)
    """Sorted by (start, id)."""
    events: dict[int, list[EventRow]] = field(default_factory=dict)
    """Every event of each action, NULL host or not, sorted by (start, id)."""
    migrations: list[MigrationRow] = field(default_factory=list)
    faults: list[FaultRow] = field(default_factory=list)
    shelve: ShelveRecord | None = None
    volumes: list[VolumeRecord] = field(default_factory=list)
    _compute: dict[int, list[EventRow]] = field(default_factory=dict, init=False, repr=False)
    _by_name: dict[int, dict[str, list[EventRow]]] = field(
        default_factory=dict, init=False, repr=False
    )

    def compute_events(self, action_id: int) -> list[EventRow]:
        """The action's ``compute_*`` events (read many times while deciding: kept)."""
        found = self._compute.get(action_id)
        if found is None:
            found = self._compute[action_id] = [
                e for e in self.events.get(action_id, ()) if (e.name or "").startswith("compute_")
            ]
        return found

    def named(self, action_id: int, *names: str) -> list[EventRow]:
        """The action's events of these names, in (start, id) order."""
        index = self._by_name.get(action_id)
        if index is None:
            index = self._by_name[action_id] = {}
            for event in self.events.get(action_id, ()):
                index.setdefault(event.name or "", []).append(event)
        if len(names) == 1:
            return index.get(names[0], [])
        found = [e for name in names for e in index.get(name, ())]
        if len(found) > 1:
            found.sort(key=lambda e: (e.start or datetime.min, e.id))
        return found


#: A stretch of time, ``None`` for an open end (from the beginning, until now).
Period = tuple[datetime | None, datetime | None]


@dataclass(frozen=True)
class ClockSkew:
    """nova-api's clock against the conductors', measured per calendar month.

    ``ahead``: month (``YYYY-MM`` of the action's ``start_time``) -> the largest
    number of seconds an action's first event started *before* the action
    itself (events, faults and migration rows carry the conductor's clock;
    ``start_time`` is nova-api's ``context.timestamp``).  Months absent showed
    none.
    """

    ahead: dict[str, float] = field(default_factory=dict)

    def margin(self, when: datetime | None) -> timedelta:
        """BOUNDARY_SLACK, or the skew seen in ``when``'s month or either neighbour
        plus a second (whole-second timestamps), whichever is larger; for an
        unknown time, the largest skew seen anywhere."""
        if not self.ahead:
            return BOUNDARY_SLACK
        if when is None:
            seen = max(self.ahead.values())
        else:
            seen = max(self.ahead.get(month, 0.0) for month in _months_around(when))
        if seen <= 0:
            return BOUNDARY_SLACK
        return max(BOUNDARY_SLACK, timedelta(seconds=seen + 1))


def month_of(when: datetime) -> str:
    return f"{when.year:04d}-{when.month:02d}"


def _months_around(when: datetime) -> tuple[str, str, str]:
    year, month = when.year, when.month
    before = (year, month - 1) if month > 1 else (year - 1, 12)
    after = (year, month + 1) if month < 12 else (year + 1, 1)
    return (f"{before[0]:04d}-{before[1]:02d}", month_of(when), f"{after[0]:04d}-{after[1]:02d}")


@dataclass(frozen=True)
class KnownHosts:
    """What the cell knows about its hosts.

    ``compute``: hosts that ran nova-compute (the services table, instances,
    migrations, events Nova recorded).  ``control``: hosts that ran only
    control-plane services (conductor faults such as NoValidHost carry the
    conductor's name); their faults never settle anything.  ``nodes``: compute
    node name -> host (``compute_nodes``), for migrations whose host column
    Nova rewrote.
    """

    compute: frozenset[str] = frozenset()
    control: frozenset[str] = frozenset()
    nodes: dict[str, str] = field(default_factory=dict)
    untracked: tuple[Period, ...] = ()
    """Periods in which the cell may have run a release that moved instances with
    no record at all (Icehouse/Juno live migrations: ``inference.eras``); an
    instance's host may change between any two of its actions there."""
    skew: ClockSkew | None = None
    """How far nova-api's clock ran ahead of the conductors' (``inference.skew``);
    None: not measured, the default margins hold."""

    def margin(self, when: datetime | None) -> timedelta:
        """The margin a time-based match needs around an action's ``start_time``."""
        if self.skew is None:
            return BOUNDARY_SLACK
        return self.skew.margin(when)


@_row
class Decision:
    event_id: int
    host: str | None
    rule: str
    """The rule that produced ``host``, or the reason it stays NULL."""

    @property
    def filled(self) -> bool:
        return self.host is not None
