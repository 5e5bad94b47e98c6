"""The step an action is, the kinds of step, and what every kind reads alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from actionhost_backfill.inference.model import (
    BOUNDARY_SLACK,
    ActionRow,
    EventRow,
    FaultRow,
    InstanceHistory,
    KnownHosts,
    MigrationRow,
)

#: Faults the conductor or scheduler records when scheduling fails.  On an
#: all-in-one node the conductor's host name is a compute's too, so the message
#: tells them apart.
SCHEDULING_FAILURES = (
    "No valid host",
    "Exceeded max scheduling attempts",
    "Exhausted all hosts available",
)


def scheduling_failure(fault: FaultRow) -> bool:
    return bool(fault.message) and any(p in fault.message for p in SCHEDULING_FAILURES)


BUILD = "build"
COLD_MOVE = "cold-move"
REVERT = "revert"
LIVE_MIGRATION = "live-migration"
EVACUATION = "evacuation"
UNSHELVE = "unshelve"
PARTNER = "partner"
UNTRACKED = "untracked"


@dataclass
class Step:
    """What one action did to the instance's host."""

    action: ActionRow
    kind: str
    zone: tuple[datetime, datetime | None] | None = None
    """When the host may have changed (None: it did not change; open end: unknown end)."""
    before: str | None = None
    after: str | None = None
    """Host after the zone, when the rows prove it (None: unknown)."""
    note: str = ""
    """Why ``after`` is what it is, for ``explain``."""
    members_after: bool = False
    """This action's own events belong to the segment after the zone (build, unshelve)."""
    moves: bool = True
    """Whether the host can differ after the zone (False for a build)."""
    roles: dict[int, tuple[str | None, str]] = field(default_factory=dict)
    """Decisions for this action's source/destination-side events: id -> (host, rule)."""
    migration: MigrationRow | None = None
    claim_host_known: bool = False
    """A build or unshelve whose final claim is known to have succeeded (``launched_on``)."""
    contradicted: str | None = None
    """The ``BEHAVIOURS`` key its rows contradict (then it settles nothing)."""
    uncertain_rows: bool = False
    """A migration row it may own may also be a neighbouring action's (clock skew)."""


def compute_events(history: InstanceHistory, action: ActionRow) -> list[EventRow]:
    return history.compute_events(action.id)


def last_time(events: list[EventRow]) -> datetime | None:
    times = [t for e in events for t in (e.start, e.finish) if t is not None]
    return max(times) if times else None


def span(
    action: ActionRow, events: list[EventRow], hosts: KnownHosts
) -> tuple[datetime, datetime] | None:
    if action.start is None:
        return None
    end = last_time(events) or action.start
    return (action.start - hosts.margin(action.start), max(end, action.start) + BOUNDARY_SLACK)
