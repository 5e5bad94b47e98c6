"""Evacuations: rebuilt on another host, the migration row shared among them."""

from __future__ import annotations

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import (
    FAILED,
    MIGRATION_INCOMPLETE,
    MIGRATION_ROLE,
    SUCCESS,
    ActionRow,
    InstanceHistory,
    KnownHosts,
    MigrationRow,
)
from actionhost_backfill.inference.steps.step import (
    EVACUATION,
    Step,
    compute_events,
    span,
)


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


def evacuation(
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
            step.zone = span(action, events, hosts)
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
    step.zone = span(action, events, hosts)
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
