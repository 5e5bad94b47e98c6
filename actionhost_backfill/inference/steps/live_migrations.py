"""Live migrations, and the force-complete or abort requests that act on one."""

from __future__ import annotations

from datetime import datetime, timedelta

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import (
    BOUNDARY_SLACK,
    MIGRATION_INCOMPLETE,
    MIGRATION_ROLE,
    RESCHEDULED_CANDIDATE,
    SUCCESS,
    ActionRow,
    InstanceHistory,
    KnownHosts,
    MigrationRow,
)
from actionhost_backfill.inference.steps.step import (
    LIVE_MIGRATION,
    PARTNER,
    Step,
    compute_events,
    span,
)


def live_migration(
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
            step.zone = span(action, events, hosts)
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
    step.zone = span(action, events, hosts)
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


def live_partner(history: InstanceHistory, action: ActionRow, lives: list[Step]) -> Step:
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
