"""Where each Nova instance action event ran, by its name (nova-facts section 5).

Nova names events ``<prefix>_<function>``: ``compute_*`` ran on a compute
host, ``conductor_*`` / ``api_*`` on control-plane nodes that are recorded
nowhere else.  Some conductor events use bare names (``EventReporter`` in
``nova/conductor/manager.py``).  Among compute events, the ones below run on
the *source* or *destination* of a move; every other ``compute_*`` event ran
on the instance's host at that moment.
"""

from __future__ import annotations

import enum


class Role(enum.Enum):
    SOURCE = "source"
    DEST = "dest"
    GENERIC = "generic"
    """A compute event that ran on the instance's host at the time."""
    BUILD = "build"
    """``compute__do_build_and_run_instance``: generic, but rescheduled builds repeat it."""
    CONTROL_PLANE = "control-plane"
    UNKNOWN = "unknown"


BUILD_EVENT = "compute__do_build_and_run_instance"

#: Destination events that *pick* the destination: a reschedule repeats them
#: on other candidates and overwrites the migration's dest columns, so only the
#: last successful one of its name in an action is the recorded destination.
DEST_SELECTION = frozenset(
    {
        "compute_prep_resize",
        "compute_check_can_live_migrate_destination",
        "compute_prep_snapshot_based_resize_at_dest",
    }
)
#: Destination events sent to the destination already chosen.
DEST_TARGETED = frozenset(
    {
        "compute_finish_resize",
        "compute_revert_resize",
        "compute_pre_live_migration",
        "compute_post_live_migration_at_destination",
        "compute_rollback_live_migration_at_destination",
        "compute_finish_snapshot_based_resize_at_dest",
        "compute_revert_snapshot_based_resize_at_dest",
    }
)
SOURCE_EVENTS = frozenset(
    {
        "compute_resize_instance",
        "compute_confirm_resize",
        "compute_finish_revert_resize",
        "compute_check_can_live_migrate_source",
        "compute_live_migration",
        "compute_live_migration_force_complete",
        "compute_live_migration_abort",
        "compute_prep_snapshot_based_resize_at_source",
        "compute_confirm_snapshot_based_resize_at_source",
        "compute_finish_revert_snapshot_based_resize_at_source",
    }
)
#: ``compute_rebuild_instance`` runs on the destination during an evacuation
#: (and is a selection: the rebuild claim happens there), on the current host
#: otherwise.
REBUILD_EVENT = "compute_rebuild_instance"
EVACUATE_ACTION = "evacuate"

#: Conductor events recorded under bare names by EventReporter.
CONDUCTOR_BARE = frozenset(
    {"cold_migrate", "schedule_instances", "rebuild_server", "get_image_info"}
)

#: Every event name whose repetitions inside one action matter (see
#: ``inference``): destination events and builds.
REPEAT_SENSITIVE = DEST_SELECTION | DEST_TARGETED | {BUILD_EVENT, REBUILD_EVENT}

# Instance action names (nova/compute/instance_actions.py).
CREATE = "create"
RESIZE = "resize"
MIGRATE = "migrate"
LIVE_MIGRATION = "live-migration"
CONFIRM_RESIZE = "confirmResize"
REVERT_RESIZE = "revertResize"
LIVE_MIGRATION_CANCEL = "live_migration_cancel"
LIVE_MIGRATION_FORCE_COMPLETE = "live_migration_force_complete"
SHELVE = "shelve"
SHELVE_OFFLOAD = "shelveOffload"
UNSHELVE = "unshelve"

COLD_TYPES = frozenset({"resize", "migration", None})
#: Which migration types a move action creates.
MOVE_ACTIONS = {
    RESIZE: COLD_TYPES,
    MIGRATE: COLD_TYPES,
    LIVE_MIGRATION: frozenset({"live-migration"}),
    EVACUATE_ACTION: frozenset({"evacuation"}),
}
#: Actions that act on a migration created by an earlier move action.
PARTNER_ACTIONS = {
    CONFIRM_RESIZE: COLD_TYPES,
    REVERT_RESIZE: COLD_TYPES,
    LIVE_MIGRATION_CANCEL: frozenset({"live-migration"}),
    LIVE_MIGRATION_FORCE_COMPLETE: frozenset({"live-migration"}),
}
#: Actions after which the instance may have no host (shelve offloads at once
#: when shelved_offload_time is 0, Nova's default).
OFFLOAD_ACTIONS = frozenset({SHELVE, SHELVE_OFFLOAD})


def role_of(event: str | None, action: str | None) -> Role:
    """The role of an event named ``event`` inside an action named ``action``."""
    if not event:
        return Role.UNKNOWN
    if event.startswith(("conductor_", "api_")) or event in CONDUCTOR_BARE:
        return Role.CONTROL_PLANE
    if not event.startswith("compute_"):
        return Role.UNKNOWN
    if event == REBUILD_EVENT:
        return Role.DEST if action == EVACUATE_ACTION else Role.GENERIC
    if event in DEST_SELECTION or event in DEST_TARGETED:
        return Role.DEST
    if event in SOURCE_EVENTS:
        return Role.SOURCE
    if event == BUILD_EVENT:
        return Role.BUILD
    return Role.GENERIC


def is_selection(event: str, action: str | None) -> bool:
    """Whether a destination event picks the destination (reschedule-prone)."""
    return event in DEST_SELECTION or (event == REBUILD_EVENT and action == EVACUATE_ACTION)


def migration_type(raw_type: str | None, old_flavor: int | None, new_flavor: int | None) -> str:
    """Nova's rule for old rows with no migration_type."""
    if raw_type:
        return raw_type
    if old_flavor is not None and new_flavor is not None and old_flavor != new_flavor:
        return "resize"
    return "migration"


# Migration outcomes: where the instance is once the migration stopped changing.
DEST = "dest"
SOURCE = "source"
UNKNOWN = "unknown"

_OUTCOMES = {
    "resize": {
        "confirmed": DEST,
        "finished": DEST,  # waiting for confirm: the instance runs on the destination
        "confirming": DEST,
        "reverted": SOURCE,
    },
    "migration": {
        "confirmed": DEST,
        "finished": DEST,
        "confirming": DEST,
        "reverted": SOURCE,
    },
    "live-migration": {
        "completed": DEST,
        "failed": SOURCE,  # rolled back before or during the move
        "cancelled": SOURCE,
    },
    "evacuation": {
        "done": DEST,
        "completed": DEST,  # the old source came back and cleaned up
    },
}


def outcome(kind: str, status: str | None) -> str:
    """``dest``, ``source`` or ``unknown`` (error and in-flight statuses)."""
    return _OUTCOMES.get(kind, {}).get(status or "", UNKNOWN)
