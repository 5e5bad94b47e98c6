"""Cold moves (resize, migrate), their reverts and confirms."""

from __future__ import annotations

from datetime import datetime

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import (
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
    COLD_MOVE,
    PARTNER,
    REVERT,
    Step,
    compute_events,
    span,
)

#: Cold-move statuses written after the source started moving the instance
#: (``migrating``), i.e. only by an action that ran ``compute_resize_instance``.
_COLD_PROGRESSED = frozenset(
    {"migrating", "post-migrating", "finished", "confirming", "confirmed", "reverting", "reverted"}
)


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


def cold_move(
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
    step.zone = span(action, events, hosts)
    step.before = final.source if final is not None else None
    if moved_on and dest:
        step.after = dest
        step.note = "compute_resize_instance succeeded: on the destination"
    else:
        step.note = "the move may or may not have happened"
    return step


def revert(
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
    step.zone = span(action, events, hosts)
    step.before = dest
    if len(back) == 1 and back[0].result == SUCCESS and source:
        step.after = source
        step.note = "compute_finish_revert_resize succeeded: back on the source"
    else:
        step.note = "the revert may or may not have moved it back"
    return step


def confirm(history: InstanceHistory, action: ActionRow, move: Step | None) -> Step:
    step = Step(action, PARTNER, moves=False)
    migration = move.migration if move is not None else None
    for event in history.named(action.id, *roles.SOURCE_EVENTS):
        if migration is not None and migration.source:
            step.roles[event.id] = (migration.source, MIGRATION_ROLE)
    return step
