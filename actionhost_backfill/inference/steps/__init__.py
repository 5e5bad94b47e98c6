"""What each action did to an instance's host, as the releases that wrote it recorded it.

One :class:`Step` per action that can change the host (build, cold move and
its revert, live migration, evacuation, unshelve) or that acts on a move
(confirm, cancel, force-complete): *when* the host may have changed (its
zone), the host before and after when the rows prove them, and the host of
each of its source- and destination-side events.

Everything here follows what Nova Kilo ... Queens wrote, not today's Nova
(docs/accuracy.md lists each behaviour with the release tags it was read at):

* A host changes only inside a compute step: the end of
  ``compute_resize_instance`` (to the destination), the start of
  ``compute_finish_revert_resize`` (back), ``compute_post_live_migration_at_destination``,
  the evacuation's ``compute_rebuild_instance``, an unshelve's or a build's
  claim.  An action without that step moved nothing, whatever its migration
  row says (an evacuation row becomes ``completed`` when the old source
  restarts, rebuilt or not).
* A migration row has no request id: it belongs to the move action during
  which it was created.  Before Queens the destination created one row per
  candidate (Kilo only for candidates that passed the claim); Queens
  pre-creates one and each candidate overwrites its destination, and may
  reuse a stale ``pre-migrating`` row of an earlier move.  The last row is
  the move's; earlier ones are rejected candidates.
* When a step repeats in one action, ``action_event_finish`` writes every
  finish into the *first* row of that name: only start times and ids order
  the attempts, and a repeated row's result is not its own.
* Kilo live migrations have no events and no row; Kilo evacuations no row.
* Icehouse and Juno record no live migration at all (``untracked``): while the
  cell may have run them (``KnownHosts.untracked``), the host may change
  between any two actions of an instance that left it ACTIVE, so every such
  gap is a zone whose ends nothing but direct evidence settles.
* In Liberty's rolling window (Kilo computes left) a live-migration row
  stays ``pre-migrating`` and a Kilo end records no events: without an event
  of the destination, such a move is an open span, as in Kilo.
* An action's ``start_time`` is nova-api's clock, its events and rows the
  conductors' (``skew``): every match of a row to an action by time allows the
  skew measured in the cell (``KnownHosts.margin``), and a row two neighbouring
  actions could both own goes to neither unless the events decide.
* Rows that contradict a behaviour relied on here (``BEHAVIOURS``) make their
  action say nothing (``contradiction``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import (
    BOUNDARY_SLACK,
    CONTRADICTION,
    FAILED,
    FAULT_SLACK,
    MIGRATION_INCOMPLETE,
    MIGRATION_ROLE,
    RESCHEDULED_CANDIDATE,
    SUCCESS,
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

#: Actions whose API call requires a vm_state in which no live migration can
#: run (2014.1/2014.2 CA: live_migrate requires ACTIVE; start STOPPED, unpause
#: PAUSED, resume SUSPENDED, unrescue RESCUED, unshelve SHELVED(_OFFLOADED),
#: confirm/revert RESIZED, restore SOFT_DELETED).  Nothing but a recorded
#: action puts an instance back into those states (os-resetState sets only
#: active or error), so the gap before one of them held no silent move.
_NOT_ACTIVE_BEFORE = frozenset(
    {
        "start",
        "unpause",
        "resume",
        "unrescue",
        "unshelve",
        "confirmResize",
        "revertResize",
        "restore",
    }
)
#: After these, when nothing follows, the instance is gone: nothing moves it.
_FINAL = frozenset({"delete"})
_TICK = timedelta(microseconds=1)

#: Cold-move statuses written after the source started moving the instance
#: (``migrating``), i.e. only by an action that ran ``compute_resize_instance``.
_COLD_PROGRESSED = frozenset(
    {"migrating", "post-migrating", "finished", "confirming", "confirmed", "reverting", "reverted"}
)


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


def _span(
    action: ActionRow, events: list[EventRow], hosts: KnownHosts
) -> tuple[datetime, datetime] | None:
    if action.start is None:
        return None
    end = last_time(events) or action.start
    return (action.start - hosts.margin(action.start), max(end, action.start) + BOUNDARY_SLACK)


# --------------------------------------------------------------------------- contradictions

#: The Nova behaviours the rules rely on that rows can contradict (``explain``
#: names the one contradicted).  Key -> what Nova does, where it was read.
FIRST_ROW_FINISH = "first-row-finish"
BEHAVIOURS = {
    FIRST_ROW_FINISH: (
        "action_event_finish writes every finish of a step into one row of that name "
        "(filter_by(event=...).first(), nova/db/sqlalchemy/api.py, 2015.1.0 ... 18.0.0): "
        "a repeated step's other rows never carry a finish_time or a result"
    ),
}


def contradiction(history: InstanceHistory, action_id: int) -> str | None:
    """The behaviour (``BEHAVIOURS`` key) the action's rows contradict, if any.

    Two rows of one event name that both carry a finish or a result cannot
    come from Nova (a patched Nova, a hand repair, another writer): which
    attempt failed, and where, is then not what the rules read.
    """
    finished: dict[str, int] = {}
    for event in history.events.get(action_id, ()):
        if event.finish is not None or event.result is not None:
            name = event.name or ""
            finished[name] = finished.get(name, 0) + 1
            if finished[name] > 1:
                return FIRST_ROW_FINISH
    return None


def _contradicted(step: Step, history: InstanceHistory, hosts: KnownHosts, why: str) -> Step:
    """What a contradicted action still says: the host may have changed during it."""
    action = step.action
    safe = Step(action, step.kind, moves=step.moves)
    if step.zone is not None or step.kind in (BUILD, UNSHELVE):
        safe.zone = _span(action, compute_events(history, action), hosts)
    for event in history.events.get(action.id, ()):
        safe.roles[event.id] = (None, CONTRADICTION)
    safe.note = f"its rows contradict Nova ({why}): it settles nothing"
    safe.contradicted = why
    return safe


# --------------------------------------------------------------------------- linking


def link_rows(
    history: InstanceHistory, hosts: KnownHosts = KnownHosts()
) -> tuple[dict[int, list[MigrationRow]], set[int]]:
    """Each move action's migration rows: those created while it was the latest of its family,
    and the actions whose rows are uncertain.

    A row is created during its move (API, conductor or destination), never
    before the action's request and never after a later action that could
    create rows of the same family started.  The request time is nova-api's
    clock, the row's a conductor's (or the API's): a row created up to the
    margin (``KnownHosts.margin``) before a request may be that request's.
    Such a row, also inside the earlier action's window, is the later one's
    when the earlier action's events had all ended before it (rows are created
    during their move); else neither action's rows are certain.
    """
    by_family: dict[str, list[MigrationRow]] = {}
    for migration in sorted(
        (m for m in history.migrations if m.created is not None), key=lambda m: (m.created, m.id)
    ):
        by_family.setdefault(roles.family_of_row(migration.kind), []).append(migration)
    created = {family: [m.created for m in rows] for family, rows in by_family.items()}
    linked: dict[int, list[MigrationRow]] = {}
    uncertain: set[int] = set()
    actions = [a for a in history.actions if a.start is not None]
    # Walking backwards, the next creator of each family is known at each action.
    next_creator: dict[str, ActionRow] = {}
    for action in reversed(actions):
        family = roles.FAMILY_OF_ACTION.get(action.name or "")
        if family is not None:
            rows = by_family.get(family, [])
            times = created.get(family, [])
            low = bisect.bisect_left(times, action.start - hosts.margin(action.start))
            after = next_creator.get(family)
            high = len(times) if after is None else bisect.bisect_left(times, after.start)
            own = rows[low:high]
            if after is not None and own:
                # Rows the next creator may own too (its request stamped by a clock ahead).
                shared = after.start - hosts.margin(after.start)
                contested = [r for r in own if r.created >= shared]
                if contested:
                    ended = last_time(history.events.get(action.id, []))
                    if ended is not None and all(
                        r.created > ended + BOUNDARY_SLACK for r in contested
                    ):
                        own = [r for r in own if r.created < shared]
                    else:
                        uncertain.add(action.id)
                        if after.name in roles.FAMILY_OF_ACTION:
                            uncertain.add(after.id)
            linked[action.id] = own
        for family, creators in roles.ROW_CREATORS.items():
            if action.name in creators:
                next_creator[family] = action
    return linked, uncertain


def cold_dest(migration: MigrationRow, hosts: KnownHosts) -> str | None:
    """The real destination of a cold move.

    Kilo ... Newton ``finish_revert_resize`` rewrites ``dest_compute :=
    source_compute`` on revert (``dest_node`` keeps the real node; removed in
    Ocata), so a reverted row naming its source twice is resolved through
    ``compute_nodes``, or left unknown.
    """
    if not migration.dest:
        return None
    if migration.status != "reverted" or migration.dest != migration.source:
        return migration.dest
    if migration.dest_node and migration.source_node:
        if migration.dest_node == migration.source_node:
            return migration.dest  # a resize to the same host
        host = hosts.nodes.get(migration.dest_node)
        if host and host != migration.source:
            return host
    return None


# --------------------------------------------------------------------------- per action


def _build(
    history: InstanceHistory, action: ActionRow, next_start: datetime | None, hosts: KnownHosts
) -> Step:
    events = compute_events(history, action)
    attempts = sorted(
        history.named(action.id, *roles.BUILD_EVENTS), key=lambda e: (e.start or action.start, e.id)
    )
    step = Step(action, BUILD, moves=False)
    if not attempts or action.start is None:
        step.note = "no build attempt reached a compute"
        return step
    last = attempts[-1]
    start = last.start or action.start
    # A final failure always leaves a fault tied to the last attempt: the
    # compute's while it ran (no retry left, build aborted, Icehouse's re-raised
    # error), or the scheduler's/conductor's after it (no valid host, retries
    # exhausted).  Faults of operations that record no action before Queens
    # (attach, snapshot) and, in Icehouse, a rescheduled candidate's own fault
    # (2014.1 CM _reschedule_or_error ~1383) fall elsewhere and say nothing.
    # Without one, the last attempt built the instance and its claim stuck
    # (launched_on).  A fault on the boundary counts: failed is the safe side.
    low = start - BOUNDARY_SLACK if len(attempts) == 1 else start
    finishes = [e.finish for e in attempts if e.finish is not None]
    high = max(finishes) + FAULT_SLACK if finishes else next_start
    failed = any(
        f.created is not None
        and f.created >= low
        and (next_start is None or f.created < next_start)
        and (high is None or f.created <= high or scheduling_failure(f))
        for f in history.faults
    )
    if len(attempts) == 1 or not failed:
        step.zone = (action.start, start)
        step.members_after = True
        step.claim_host_known = not failed
        step.note = "built by its last attempt" if len(attempts) > 1 else "built at once"
    else:
        step.zone = _span(action, events, hosts)
        step.note = "the build failed after a reschedule: its attempts settle nothing"
    return step


def rowless_cold_moves(
    history: InstanceHistory, linked: dict[int, list[MigrationRow]]
) -> list[tuple[datetime, str]]:
    """(start, migration type) of cold moves that reached a compute but have no row of their own.

    Queens' conductor reuses *any* live ``pre-migrating`` row of the instance
    and migration type, however old, and rewrites its destination and
    status; such a move has no row of its own.
    """
    found = []
    for action in history.actions:
        if action.name not in roles.COLD_MOVES or linked.get(action.id) or action.start is None:
            continue
        if history.named(action.id, roles.PREP_RESIZE):
            found.append((action.start, "resize" if action.name == roles.RESIZE else "migration"))
    return found


def _reused_later(rows: list[MigrationRow], rowless: list[tuple[datetime, str]]) -> bool:
    """Whether a later rowless Queens move may have taken over one of these rows.

    A row its own move left ``pre-migrating`` (a rejected candidate, a move
    that died before the source started) is then no evidence for its own
    move.  Kilo rows (type NULL) never match Queens' filter.
    """
    return any(
        r.typed and r.created is not None and r.kind == kind and r.created < start
        for start, kind in rowless
        for r in rows
    )


def _cold_move(
    history: InstanceHistory,
    action: ActionRow,
    rows: list[MigrationRow],
    hosts: KnownHosts,
    rowless: list[tuple[datetime, str]],
) -> Step:
    events = compute_events(history, action)
    step = Step(action, COLD_MOVE)
    final = rows[-1] if rows else None
    step.migration = final
    resize = history.named(action.id, roles.RESIZE_INSTANCE)
    moved_on = len(resize) == 1 and resize[0].result == SUCCESS
    # A row whose status says the source moved the instance must belong to an
    # action that ran the source's step; and a row this action may have left
    # pre-migrating may since have been rewritten by a later Queens move.
    reused = _reused_later(rows, rowless)
    consistent = (
        final is not None
        and (final.status == "error" or (final.status in _COLD_PROGRESSED) == bool(resize))
        and not (reused and not moved_on)
    )
    dest = cold_dest(final, hosts) if final is not None and consistent else None
    for event in history.named(action.id, *roles.SOURCE_EVENTS):
        if final is not None and final.source:
            step.roles[event.id] = (final.source, MIGRATION_ROLE)
    preps = sorted(
        history.named(action.id, roles.PREP_RESIZE), key=lambda e: (e.start or action.start, e.id)
    )
    one_to_one = (
        consistent
        and not reused
        and len(rows) == len(preps)
        and all(r.dest for r in rows)
        and all(r.status == "pre-migrating" for r in rows[:-1])
    )
    for index, event in enumerate(preps):
        if index < len(preps) - 1:
            # A rejected candidate: before Queens its own row names it.
            if one_to_one:
                step.roles[event.id] = (rows[index].dest, MIGRATION_ROLE)
            else:
                step.roles[event.id] = (None, RESCHEDULED_CANDIDATE)
        elif dest and (one_to_one or resize):
            step.roles[event.id] = (dest, MIGRATION_ROLE)
        else:
            step.roles[event.id] = (None, MIGRATION_INCOMPLETE)
    for event in history.named(action.id, roles.FINISH_RESIZE):
        step.roles[event.id] = (dest, MIGRATION_ROLE) if dest else (None, MIGRATION_INCOMPLETE)
    if not resize:
        step.note = "the source never started moving it"
        return step
    step.zone = _span(action, events, hosts)
    step.before = final.source if final is not None else None
    if moved_on and dest:
        step.after = dest
        step.note = "compute_resize_instance succeeded: on the destination"
    else:
        step.note = "the move may or may not have happened"
    return step


def _revert(
    history: InstanceHistory, action: ActionRow, move: Step | None, hosts: KnownHosts
) -> Step:
    events = compute_events(history, action)
    step = Step(action, REVERT)
    migration = move.migration if move is not None else None
    usable = migration is not None and migration.status in ("reverting", "reverted", "error")
    dest = cold_dest(migration, hosts) if usable else None
    source = migration.source if usable else None
    step.migration = migration if usable else None
    for event in events:
        if event.name == roles.REVERT_RESIZE_EVENT:
            step.roles[event.id] = (dest, MIGRATION_ROLE) if dest else (None, MIGRATION_INCOMPLETE)
        elif event.name in roles.SOURCE_EVENTS:
            step.roles[event.id] = (
                (source, MIGRATION_ROLE) if source else (None, MIGRATION_INCOMPLETE)
            )
    back = history.named(action.id, roles.FINISH_REVERT_RESIZE)
    if not back:
        step.note = "the source never took it back"
        return step
    step.zone = _span(action, events, hosts)
    step.before = dest
    if len(back) == 1 and back[0].result == SUCCESS and source:
        step.after = source
        step.note = "compute_finish_revert_resize succeeded: back on the source"
    else:
        step.note = "the revert may or may not have moved it back"
    return step


def _confirm(history: InstanceHistory, action: ActionRow, move: Step | None) -> Step:
    step = Step(action, PARTNER, moves=False)
    migration = move.migration if move is not None else None
    for event in history.named(action.id, *roles.SOURCE_EVENTS):
        if migration is not None and migration.source:
            step.roles[event.id] = (migration.source, MIGRATION_ROLE)
    return step


def _live_migration(
    history: InstanceHistory,
    action: ActionRow,
    rows: list[MigrationRow],
    next_start: datetime | None,
    hosts: KnownHosts,
) -> Step:
    events = compute_events(history, action)
    step = Step(action, LIVE_MIGRATION)
    final = rows[-1] if rows else None
    step.migration = final
    if final is None:
        if not events and action.start is not None:
            # Kilo records a live migration with no events and no row, yet the
            # host may have changed: anywhere until the next request.
            end = next_start - timedelta(microseconds=1) if next_start is not None else None
            step.zone = (action.start - hosts.margin(action.start), end)
            step.note = "no migration row and no events (Kilo): the host may have changed"
        elif events:
            step.zone = _span(action, events, hosts)
            step.note = "no migration row: the host may have changed"
        return step
    for event in history.named(action.id, *roles.SOURCE_EVENTS):
        if final.source:
            step.roles[event.id] = (final.source, MIGRATION_ROLE)
    checks = sorted(
        history.named(action.id, roles.CHECK_DEST), key=lambda e: (e.start or action.start, e.id)
    )
    proceeded = bool(history.named(action.id, roles.LIVE_MIGRATION_EVENT, roles.PRE_LIVE_MIGRATION))
    # Liberty's rolling window: a Kilo compute records none of its live-migration
    # steps, so the last recorded check is the destination's only when the
    # destination itself recorded a later step.
    rolling = rolling_window_row(final)
    dest_recorded = bool(
        history.named(
            action.id,
            roles.PRE_LIVE_MIGRATION,
            roles.POST_LIVE_MIGRATION_AT_DEST,
            roles.ROLLBACK_AT_DEST,
        )
    )
    for index, event in enumerate(checks):
        if index < len(checks) - 1:
            step.roles[event.id] = (None, RESCHEDULED_CANDIDATE)
        elif final.dest and (dest_recorded if rolling else (len(checks) == 1 or proceeded)):
            step.roles[event.id] = (final.dest, MIGRATION_ROLE)
        else:
            step.roles[event.id] = (None, MIGRATION_INCOMPLETE)
    for event in history.named(
        action.id,
        roles.PRE_LIVE_MIGRATION,
        roles.POST_LIVE_MIGRATION_AT_DEST,
        roles.ROLLBACK_AT_DEST,
    ):
        step.roles[event.id] = (
            (final.dest, MIGRATION_ROLE) if final.dest else (None, MIGRATION_INCOMPLETE)
        )
    post = history.named(action.id, roles.POST_LIVE_MIGRATION_AT_DEST)
    if rolling and not dest_recorded and action.start is not None:
        # The destination may have run Kilo (no events) and no compute saw the
        # row: it may have taken the instance over, at any time until the next
        # request -- an open span, as for a Kilo live migration.
        end = next_start - timedelta(microseconds=1) if next_start is not None else None
        step.zone = (action.start - BOUNDARY_SLACK, end)
        step.before = final.source
        step.note = (
            "row left pre-migrating and no destination event (Liberty's rolling window: "
            "a Kilo compute records nothing): the host may have changed"
        )
        return step
    if not post:
        # The host changes only in post_live_migration_at_destination.
        step.note = "the destination never took it over (rolled back or failed before)"
        return step
    step.zone = _span(action, events, hosts)
    step.before = final.source
    if len(post) == 1 and post[0].result == SUCCESS and final.dest:
        step.after = final.dest
        step.note = "post_live_migration_at_destination succeeded: on the destination"
    else:
        step.note = "post_live_migration_at_destination failed: either host"
    return step


def rolling_window_row(row: MigrationRow | None) -> bool:
    """A live-migration row no compute ever updated, as in Liberty's rolling window.

    Only Liberty's conductor creates a live-migration row ``pre-migrating``
    (12.0.0 ``ComputeTaskManager._live_migrate``; ``accepted`` from 13.0.0).
    While any compute still runs Kilo, the compute RPC is pinned below 4.2
    (``[upgrade_levels] compute=kilo`` = 4.0 in 12.0.x; ``auto``, the oldest
    compute's version, from 13.0.0) and ``ComputeAPI.live_migration`` drops the
    ``migration`` argument (12.0.1 ``nova/compute/rpcapi.py``), so neither
    end ever moves the row on (``preparing`` ... ``completed``,
    ``ComputeManager.live_migration`` / ``_post_live_migration``): it stays
    ``pre-migrating`` whatever happened, and a Kilo end records no events.
    Nothing in the cell says which computes ran Kilo then (``services``
    holds today's versions only), so every such row is read this way.
    """
    return row is not None and row.status == "pre-migrating"


def _live_partner(history: InstanceHistory, action: ActionRow, lives: list[Step]) -> Step:
    """Force-complete or abort: cast to the source of the live migration in progress.

    The API names the migration, but the action records no id: it is the
    instance's live migration in flight when the request came.  Two in flight
    at once (the history contradicts itself) name no source.
    """
    step = Step(action, PARTNER, moves=False)
    in_flight = [
        live
        for live in lives
        if live.zone is not None
        and live.zone[0] <= action.start
        and (live.zone[1] is None or action.start <= live.zone[1])
    ]
    if len(in_flight) > 1:
        return step
    move = in_flight[0] if in_flight else (lives[-1] if lives else None)
    migration = move.migration if move is not None else None
    for event in history.named(action.id, *roles.SOURCE_EVENTS):
        if migration is not None and migration.source:
            step.roles[event.id] = (migration.source, MIGRATION_ROLE)
    return step


def evacuation_rows_taken_over(
    history: InstanceHistory, linked: dict[int, list[MigrationRow]]
) -> bool:
    """Whether an evacuation updated another evacuation's row.

    The conductor looks the row up with ``.first()`` among the instance's
    ``accepted`` rows, with no order and no time bound (Liberty+), so an
    evacuation can fill the row an earlier, failed one left ``accepted``,
    leaving its own ``accepted`` for a later one to fill.  It shows as a row
    that progressed (claimed, rebuilt) although its own action rebuilt
    nothing, or an action that rebuilt although its own row never moved.
    """
    evacuations = [a for a in history.actions if a.name == roles.EVACUATE and a.start]
    for index, action in enumerate(evacuations):
        rebuilt = bool(history.named(action.id, roles.REBUILD_EVENT))
        later = evacuations[index + 1].start if index + 1 < len(evacuations) else None
        for row in linked.get(action.id, []):
            claimed = row.status in ("pre-migrating", "done", "failed") or (
                row.status == "completed" and row.dest_node is not None
            )
            if claimed and not rebuilt:
                return True
            if rebuilt and row.status == "accepted":
                return True
            if claimed and later is not None and row.updated is not None and row.updated >= later:
                # Claimed, finished or completed after a later evacuation began:
                # the claim may be that one's (a row no compute updated in Liberty's
                # rolling window, 12.0.0 ComputeAPI.rebuild_instance dropping the
                # migration below 4.5, is found by the next evacuation's conductor).
                return True
    return False


def _evacuation(
    history: InstanceHistory,
    action: ActionRow,
    rows: list[MigrationRow],
    taken_over: bool,
    hosts: KnownHosts,
) -> Step:
    events = compute_events(history, action)
    step = Step(action, EVACUATION)
    final = rows[-1] if rows else None
    step.migration = final
    rebuilds = history.named(action.id, roles.REBUILD_EVENT)
    if taken_over:
        # Which evacuation filled which row is unknowable: only the sources,
        # written by the API at each request, still hold.
        for event in rebuilds:
            step.roles[event.id] = (None, MIGRATION_INCOMPLETE)
        if rebuilds:
            step.zone = _span(action, events, hosts)
            step.before = final.source if final is not None else None
            step.note = (
                "another evacuation updated a row of this instance: the destination is unknown"
            )
        else:
            step.note = "no destination rebuilt it"
        return step
    for event in rebuilds:
        if final is not None and final.dest:
            step.roles[event.id] = (final.dest, MIGRATION_ROLE)
        else:
            step.roles[event.id] = (None, MIGRATION_INCOMPLETE)
    if not rebuilds:
        # No compute rebuilt it: nothing moved, even if the old source later
        # marked the row completed.
        step.note = "no destination rebuilt it"
        return step
    step.zone = _span(action, events, hosts)
    if final is None:
        step.note = "no migration row (Kilo): the host may have changed"
        return step
    step.before = final.source
    rebuild = rebuilds[0] if len(rebuilds) == 1 else None
    if rebuild is None:
        step.note = "several rebuilds: either host"
    elif rebuild.result == SUCCESS and final.status in ("done", "completed") and final.dest:
        step.after = final.dest
        step.note = "rebuilt on the destination"
    elif rebuild.result == FAILED and final.status in ("failed", "error"):
        # Liberty+ moves the host only at the end of a successful rebuild.
        step.after = final.source
        step.note = "the rebuild failed: still on the source"
    else:
        step.note = (
            f"rebuild {rebuild.result or 'unfinished'} with status {final.status}: either host"
        )
    return step


def _unshelve(history: InstanceHistory, action: ActionRow, hosts: KnownHosts) -> Step:
    step = Step(action, UNSHELVE)
    claims = history.named(action.id, roles.UNSHELVE_EVENT)
    if not claims or action.start is None:
        # Not offloaded (compute_start_instance on its host) or never scheduled.
        step.moves = False
        step.note = "stayed where it was shelved"
        return step
    first = min(claims, key=lambda e: (e.start or action.start, e.id))
    claimed = first.start or action.start
    step.zone = (min(action.start - hosts.margin(action.start), claimed), claimed)
    step.members_after = True
    step.claim_host_known = len(claims) == 1 and claims[0].result == SUCCESS
    step.note = "unshelved onto a host chosen anew"
    return step


def untracked_gap(
    history: InstanceHistory,
    action: ActionRow,
    next_action: ActionRow | None,
    periods: tuple[tuple[datetime | None, datetime | None], ...],
) -> Step | None:
    """The stretch after ``action`` in which a silent (Icehouse/Juno) live migration may have run.

    CA live_migrate (2014.1 ~3008, 2014.2 ~3145) requires task_state None and
    vm_state ACTIVE: never during another operation, so the stretch starts
    after the action's last recorded time and ends just before the next
    request.  Only its part inside an untracked period counts.
    """
    if action.start is None or (action.name in _FINAL and next_action is None):
        return None  # a delete that worked: nothing moves the instance afterwards
    if next_action is not None and next_action.name in _NOT_ACTIVE_BEFORE:
        return None
    end = max(last_time(history.events.get(action.id, [])) or action.start, action.start)
    low = end + _TICK
    high = next_action.start - _TICK if next_action is not None and next_action.start else None
    overlaps = []
    for p0, p1 in periods:
        lo = low if p0 is None or p0 < low else p0
        hi = high if p1 is None or (high is not None and high < p1) else p1
        if hi is None or lo < hi:
            overlaps.append((lo, hi))
    if not overlaps:
        return None
    step = Step(action, UNTRACKED)
    ends = [hi for _, hi in overlaps]
    step.zone = (min(lo for lo, _ in overlaps), None if None in ends else max(ends))
    step.note = (
        "a release that records no live migration (Icehouse/Juno) may have run: "
        "the host may have changed with no record"
    )
    return step


def analyze(history: InstanceHistory, hosts: KnownHosts) -> list[Step]:
    """The steps of an instance's history, in action order."""
    linked, uncertain = link_rows(history, hosts)
    for action_id in uncertain:
        # Which of two neighbouring moves created a row is unknown: neither has rows.
        linked[action_id] = []
    rowless = rowless_cold_moves(history, linked)
    steps: list[Step] = []
    by_action: dict[int, Step] = {}
    taken_over: bool | None = None
    last_cold: Step | None = None
    lives: list[Step] = []
    actions = [a for a in history.actions if a.start is not None]
    for index, action in enumerate(actions):
        next_start = actions[index + 1].start if index + 1 < len(actions) else None
        name = action.name or ""
        step: Step | None
        if name == roles.CREATE:
            step = _build(history, action, next_start, hosts)
        elif name in roles.COLD_MOVES:
            step = last_cold = _cold_move(
                history, action, linked.get(action.id, []), hosts, rowless
            )
        elif name == roles.LIVE_MIGRATION:
            step = _live_migration(history, action, linked.get(action.id, []), next_start, hosts)
            lives.append(step)
        elif name == roles.EVACUATE:
            if taken_over is None:
                taken_over = evacuation_rows_taken_over(history, linked)
            step = _evacuation(history, action, linked.get(action.id, []), taken_over, hosts)
        elif name == roles.UNSHELVE:
            step = _unshelve(history, action, hosts)
        elif name == roles.REVERT_RESIZE:
            step = _revert(history, action, last_cold, hosts)
        elif name == roles.CONFIRM_RESIZE:
            step = _confirm(history, action, last_cold)
        elif name in roles.LIVE_PARTNERS:
            step = _live_partner(history, action, lives)
        elif history.named(action.id, "compute_confirm_resize"):
            # Deleting a resized instance confirms it first under the delete's
            # request id: Queens attaches that confirm to the ``delete`` action.
            step = _confirm(history, action, last_cold)
        else:
            step = None
        why = contradiction(history, action.id)
        if why is not None and step is not None:
            step = _contradicted(step, history, hosts, why)
        if step is not None and action.id in uncertain:
            step.uncertain_rows = True
            step.note += (
                "; a migration row it may have created may be its neighbour's (clocks "
                "disagree): no row is used"
            )
        if step is not None:
            steps.append(step)
            by_action[action.id] = step
        if hosts.untracked:
            gap = untracked_gap(
                history,
                action,
                actions[index + 1] if index + 1 < len(actions) else None,
                hosts.untracked,
            )
            if gap is not None:
                steps.append(gap)
    return steps
