"""Where each Nova instance action event ran, by its name (Icehouse ... Queens).

Nova names events ``<prefix>_<function>``: ``compute_*`` ran on a compute
host (``wrap_instance_event``: ``'compute_{0}'.format(function.__name__)``,
the same names from Kilo to today), ``conductor_*`` (Newton+) and bare
``EventReporter`` names on a conductor, ``api_*`` (Queens+) on an API node;
control-plane hosts are recorded nowhere else.  Among compute events, the
ones below run on the *source* or *destination* of a move; every other
``compute_*`` event ran on the instance's host at that moment.  The release
details behind each set are in docs/accuracy.md.
"""

from __future__ import annotations

import enum
import functools


class Role(enum.Enum):
    SOURCE = "source"
    DEST = "dest"
    GENERIC = "generic"
    """A compute event that ran on the instance's host at the time."""
    BUILD = "build"
    """A build attempt: generic, but a rescheduled build repeats it on other hosts."""
    CONTROL_PLANE = "control-plane"
    UNKNOWN = "unknown"


#: One row per build attempt.  Kilo ... today: ``compute__do_build_and_run_instance``
#: (the double underscore is the method's name).  Icehouse/Juno histories carry
#: ``compute_build_and_run_instance``, and the legacy ``run_instance`` path
#: (served until Kilo) ``compute_run_instance``: same meaning, the building host.
BUILD_EVENT = "compute__do_build_and_run_instance"
BUILD_EVENTS = frozenset({BUILD_EVENT, "compute_build_and_run_instance", "compute_run_instance"})

#: Destination events that *pick* the destination: a reschedule repeats them on
#: other candidates.
PREP_RESIZE = "compute_prep_resize"
CHECK_DEST = "compute_check_can_live_migrate_destination"
DEST_SELECTION = frozenset({PREP_RESIZE, CHECK_DEST, "compute_prep_snapshot_based_resize_at_dest"})
FINISH_RESIZE = "compute_finish_resize"
REVERT_RESIZE_EVENT = "compute_revert_resize"
PRE_LIVE_MIGRATION = "compute_pre_live_migration"
POST_LIVE_MIGRATION_AT_DEST = "compute_post_live_migration_at_destination"
ROLLBACK_AT_DEST = "compute_rollback_live_migration_at_destination"
#: Destination events sent to the destination already chosen.
DEST_TARGETED = frozenset(
    {
        FINISH_RESIZE,
        REVERT_RESIZE_EVENT,
        PRE_LIVE_MIGRATION,
        POST_LIVE_MIGRATION_AT_DEST,
        ROLLBACK_AT_DEST,
        "compute_finish_snapshot_based_resize_at_dest",
        "compute_revert_snapshot_based_resize_at_dest",
    }
)
RESIZE_INSTANCE = "compute_resize_instance"
FINISH_REVERT_RESIZE = "compute_finish_revert_resize"
LIVE_MIGRATION_EVENT = "compute_live_migration"
SOURCE_EVENTS = frozenset(
    {
        RESIZE_INSTANCE,
        "compute_confirm_resize",
        FINISH_REVERT_RESIZE,
        "compute_check_can_live_migrate_source",
        LIVE_MIGRATION_EVENT,
        "compute_live_migration_force_complete",
        "compute_live_migration_abort",
        "compute_prep_snapshot_based_resize_at_source",
        "compute_confirm_snapshot_based_resize_at_source",
        "compute_finish_revert_snapshot_based_resize_at_source",
    }
)
#: ``compute_rebuild_instance`` runs on the destination during an evacuation,
#: on the instance's host otherwise.
REBUILD_EVENT = "compute_rebuild_instance"
#: The claim of an unshelve picks a new host (no migration row, any release).
UNSHELVE_EVENT = "compute_unshelve_instance"
SHELVE_EVENT = "compute_shelve_instance"

#: Conductor events recorded under bare names by EventReporter (every release).
CONDUCTOR_BARE = frozenset(
    {"cold_migrate", "schedule_instances", "rebuild_server", "get_image_info"}
)

# Instance action names (nova/compute/instance_actions.py).
CREATE = "create"
RESIZE = "resize"
MIGRATE = "migrate"
LIVE_MIGRATION = "live-migration"
EVACUATE = "evacuate"
REBUILD = "rebuild"
CONFIRM_RESIZE = "confirmResize"
REVERT_RESIZE = "revertResize"
LIVE_MIGRATION_CANCEL = "live_migration_cancel"
LIVE_MIGRATION_FORCE_COMPLETE = "live_migration_force_complete"
SHELVE = "shelve"
SHELVE_OFFLOAD = "shelveOffload"
UNSHELVE = "unshelve"

COLD_MOVES = frozenset({RESIZE, MIGRATE})
MOVE_ACTIONS = frozenset({RESIZE, MIGRATE, LIVE_MIGRATION, EVACUATE})
#: Actions acting on the migration an earlier move action created.
COLD_PARTNERS = frozenset({CONFIRM_RESIZE, REVERT_RESIZE})
LIVE_PARTNERS = frozenset({LIVE_MIGRATION_CANCEL, LIVE_MIGRATION_FORCE_COMPLETE})

# Migration families: which actions create rows of which migration_type.
COLD = "cold"
LIVE = "live"
EVACUATION = "evacuation"
FAMILY_OF_ACTION = {RESIZE: COLD, MIGRATE: COLD, LIVE_MIGRATION: LIVE, EVACUATE: EVACUATION}
#: Actions that may create rows of a family: a row created after one of them
#: started belongs to it, not to an earlier move.  A plain rebuild with a new
#: image leaves a stray ``evacuation`` row on Newton-Queens point releases.
ROW_CREATORS = {
    COLD: frozenset({RESIZE, MIGRATE}),
    LIVE: frozenset({LIVE_MIGRATION}),
    EVACUATION: frozenset({EVACUATE, REBUILD}),
}


def family_of_row(kind: str) -> str:
    if kind in ("resize", "migration"):
        return COLD
    if kind == "live-migration":
        return LIVE
    return EVACUATION if kind == "evacuation" else kind


@functools.lru_cache(maxsize=4096)
def role_of(event: str | None, action: str | None) -> Role:
    """The role of an event named ``event`` inside an action named ``action``."""
    if not event:
        return Role.UNKNOWN
    if event.startswith(("conductor_", "api_")) or event in CONDUCTOR_BARE:
        return Role.CONTROL_PLANE
    if not event.startswith("compute_"):
        return Role.UNKNOWN
    if event == REBUILD_EVENT:
        return Role.DEST if action == EVACUATE else Role.GENERIC
    if event in DEST_SELECTION or event in DEST_TARGETED:
        return Role.DEST
    if event in SOURCE_EVENTS:
        return Role.SOURCE
    if event in BUILD_EVENTS:
        return Role.BUILD
    return Role.GENERIC


def migration_type(raw_type: str | None, old_flavor: int | None, new_flavor: int | None) -> str:
    """Nova's rule for rows with no migration_type (every Kilo row: the column came in Liberty)."""
    if raw_type:
        return raw_type
    if old_flavor is not None and new_flavor is not None and old_flavor != new_flavor:
        return "resize"
    return "migration"
