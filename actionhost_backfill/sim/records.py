"""What one operation writes: actions, event and fault writes in time order, migrations, volumes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionhost_backfill.nova.releases import Behaviour
from actionhost_backfill.sim.clock import db_time

if TYPE_CHECKING:
    from actionhost_backfill.sim.life import Life


BUILD = "compute__do_build_and_run_instance"
PREP_RESIZE = "compute_prep_resize"
DEST_CHECK = "compute_check_can_live_migrate_destination"
SOURCE_CHECK = "compute_check_can_live_migrate_source"
TERMINATE = "compute_terminate_instance"
SHELVE_OFFLOAD = "compute_shelve_offload_instance"
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
NOT_ENOUGH_RESOURCES = "Insufficient compute resources: Free memory 1024.00 MB < requested 2048 MB."
FAILED = "Unexpected error while running command."


# -- one operation's writes ------------------------------------------------------------


class Action:
    __slots__ = ("error_at", "fallback", "id", "last", "shift", "start")

    def __init__(self, action_id: int, start: int, fallback: bool = False, shift: int = 0):
        self.id = action_id
        self.start = start
        self.shift = shift
        """Seconds nova-api's clock added to ``start_time`` (``--api-clock-skew``)."""
        self.error_at: int | None = None
        self.last = start
        self.fallback = fallback
        """An old action an admin-context event fell back to: Queens does not touch it."""


class Step:
    """The event and fault writes of one operation, applied in time order.

    Nova stamps them with the conductor's clock as they happen, so their ids,
    and which row of a repeated event name gets the last finish, follow time;
    ties keep the order the operation's code gave (cause before effect).
    """

    __slots__ = ("actions", "beh", "life", "writes")

    def __init__(self, life: Life, beh: Behaviour):
        self.life = life
        self.beh = beh
        self.writes: list[tuple] = []
        self.actions: list[Action] = []

    def action(
        self, name: str, t: int, *, user: bool = True, request_id: str | None = None
    ) -> Action:
        life = self.life
        shift = life.sim.api_shift()
        action_id = life.b.action(
            life.uuid,
            name,
            db_time(t + shift),
            request_id=request_id or life.request_id(),
            project_id=life.project if user else None,
            user_id=life.user,
            archived=life.archived,
        )
        life.last_action = action_id
        act = Action(action_id, t, shift=shift)
        life.sim.maybe_patched_finish(action_id)
        self.actions.append(act)
        return act

    def latest_action(self) -> Action:
        """The Liberty+ fallback for admin contexts: the instance's newest action."""
        act = Action(self.life.last_action, 0, fallback=True)
        self.actions.append(act)
        return act

    def start(self, t: int, act: Action, name: str, host: str) -> None:
        self.writes.append((t, len(self.writes), 0, act, name, host))

    def finish(self, t: int, act: Action, name: str, error: bool = False) -> None:
        self.writes.append((t, len(self.writes), 1, act, name, error))

    def fault(self, t: int, host: str, message: str) -> None:
        self.writes.append((t, len(self.writes), 2, None, message, host))

    def commit(self) -> None:
        life = self.life
        sim = life.sim
        b = life.b
        uuid, archived, table = life.uuid, life.archived, life.events_table
        append_truth = sim.truth.append
        event_start, event_finish, fault = b.event_start, b.event_finish, b.fault
        era = sim.era_at(self.writes[0][0]) if self.writes else None
        self.writes.sort()
        if self.writes and self.writes[-1][0] > life.busy_until:
            life.busy_until = self.writes[-1][0]
        for t, _, kind, act, name, extra in self.writes:
            moment = db_time(t)
            if kind == 0:
                if not era.start <= t < era.end:
                    era = sim.era_at(t)
                # A compute still on Queens calls EventReporter without a host (18.0.0
                # compute/utils.py EventReporter takes it; 17.0.0's does not).
                recorded = era is sim.rocky and (
                    sim.rolling is None or sim.compute_behaviour(extra, t).records_event_host
                )
                event_id = event_start(
                    uuid, act.id, name, moment, host=extra if recorded else None, archived=archived
                )
                append_truth((table, event_id, name, extra, recorded, era.release))
                if t > act.last:
                    act.last = t
            elif kind == 1:
                event_finish(act.id, name, moment, result="Error" if extra else "Success")
                if t > act.last:
                    act.last = t
                if extra and act.error_at is None:
                    act.error_at = t
            else:
                fault(uuid, extra, moment, message=name, archived=archived)
        follows = self.beh.action_updated_at_follows_events
        for act in self.actions:
            b.forget(act.id)
            if act.fallback:
                continue  # Queens: a fallback event does not bump updated_at (17.0.0 DB:action_event_start)
            if follows:
                values = {"updated_at": db_time(act.last)}
                if act.error_at is not None:
                    values["message"] = "Error"
                b.update_action(act.id, archived=archived, **values)
            elif act.error_at is not None:
                b.update_action(
                    act.id, archived=archived, message="Error", updated_at=db_time(act.error_at)
                )
        self.writes = []
        self.actions = []


class Migration:
    """A migrations row, written (``id`` taken at creation) once its op is over."""

    __slots__ = (
        "created",
        "dest",
        "dest_host",
        "dest_node",
        "id",
        "kind",
        "new_flavor",
        "old_flavor",
        "source",
        "source_node",
        "status",
        "updated",
        "written",
    )

    def __init__(self, row_id, kind, source, source_node, dest, status, created, flavors):
        self.id = row_id
        self.kind = kind
        self.source = source
        self.source_node = source_node
        self.dest = dest
        self.dest_node: str | None = None
        self.dest_host: str | None = None
        self.status = status
        self.old_flavor, self.new_flavor = flavors
        self.created = created
        self.updated: int | None = None
        self.written = False


class Volume:
    """A volume block_device_mapping row, written when detached or at the end."""

    __slots__ = (
        "attachment_id",
        "boot",
        "connected",
        "connector",
        "created",
        "deleted_at",
        "id",
        "updated",
    )

    def __init__(self, row_id: int, created: int, boot: bool = False):
        self.id = row_id
        self.created = created
        self.boot = boot
        self.connected = False
        self.connector: str | None = None
        self.attachment_id: str | None = None
        self.updated = created
        self.deleted_at: int | None = None
