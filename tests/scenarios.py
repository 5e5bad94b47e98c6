"""Hand-built Nova histories, each event annotated with the decision expected.

Every builder writes one instance's life into a ``HistoryBuilder`` the way
the Nova release in its name recorded it (docs/accuracy.md lists the
behaviours and where each was read in Nova's source) and returns the expected
``(host, rule)`` for each event id; ``host`` None means the event must stay
NULL, ``rule`` then being the reason.  Builders whose name starts with
``case_`` reproduce release behaviours that a reading based on today's Nova
gets wrong (each docstring says how).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from actionhost_backfill.inference import REASONS
from actionhost_backfill.sim.history import HistoryBuilder

S = timedelta(seconds=1)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
Expect = dict[int, tuple[str | None, str]]
CONDUCTOR = "ctl-1"


def node(host: str | None) -> str | None:
    """Compute node names are hypervisor host names, not the service's host."""
    return f"{host}.nova.local" if host else None


class Life:
    """One instance's history, built step by step with expectations."""

    def __init__(
        self,
        h: HistoryBuilder,
        start: datetime,
        *,
        deleted=False,
        archived=False,
        create_instance=True,
    ):
        self.h = h
        self.t = start
        self.expect: Expect = {}
        self.uuid = (
            h.instance(
                host=None, launched_on=None, created_at=start, deleted=deleted, archived=archived
            )
            if create_instance
            else None
        )

    def at(self, delta: timedelta) -> datetime:
        self.t = self.t + delta
        return self.t

    def action(self, name: str, gap: timedelta = DAY, **kw) -> int:
        return self.h.action(self.uuid, name, self.at(gap), **kw)

    def _expect(self, event_id: int, truth: str | None, rule: str) -> None:
        self.expect[event_id] = (None, rule) if rule in REASONS else (truth, rule)

    def event(
        self,
        action_id,
        name,
        truth,
        rule,
        *,
        took=10 * S,
        result="Success",
        fault=None,
        recorded=False,
        message="Operation failed",
    ):
        """A step that started and finished before the next one; ``fault``: a host recorded one."""
        start = self.at(2 * S)
        event_id = self.h.event_start(
            self.uuid, action_id, name, start, host=truth if recorded else None
        )
        finish = self.at(took)
        if fault:
            self.h.fault(self.uuid, fault, finish - S, message=message)
        self.h.event_finish(action_id, name, finish, result=result)
        if not recorded:
            self._expect(event_id, truth, rule)
        return event_id

    def start(self, action_id, name, truth, rule, *, gap=2 * S) -> int:
        """A step that starts now and finishes later (``finish``)."""
        event_id = self.h.event_start(self.uuid, action_id, name, self.at(gap))
        self._expect(event_id, truth, rule)
        return event_id

    def finish(self, action_id, name, *, result="Success", gap=2 * S) -> None:
        self.h.event_finish(action_id, name, self.at(gap), result=result)

    def migration(self, kind, source, dest, status, *, created, updated=None, **kw) -> int:
        return self.h.migration(
            self.uuid,
            kind=kind,
            source=source,
            dest=dest,
            status=status,
            created=created,
            updated=updated or self.t,
            **{"source_node": node(source), "dest_node": node(dest), **kw},
        )

    def build(self, host, rule, *, rescheduled=()) -> int:
        """A build: rescheduled attempts end Success with no fault (all releases)."""
        a = self.action("create", gap=S)
        for candidate in rescheduled:
            self.event(a, "compute__do_build_and_run_instance", candidate, "rescheduled-candidate")
        self.event(a, "compute__do_build_and_run_instance", host, rule, took=40 * S)
        self.launched_at = self.t - S
        return a

    def generic(self, name, host, rule="host-timeline", gap=DAY, **kw) -> int:
        a = self.action(name.removeprefix("compute_").split("_")[0], gap=gap)
        self.event(a, name, host, rule, **kw)
        return a

    def done(self, *, host, launched_on, **values) -> Expect:
        """The instance row as Nova left it."""
        self.h.update_instance(
            self.uuid,
            host=host,
            node=node(host),
            launched_on=launched_on,
            launched_at=values.pop("launched_at", getattr(self, "launched_at", None)),
            **values,
        )
        return self.expect


# --------------------------------------------------------------------------- any release


def never_moved(h, t0) -> Expect:
    life = Life(h, t0)
    life.build("cmp-a", "current-host")
    life.generic("compute_stop_instance", "cmp-a", "current-host")
    life.generic("compute_start_instance", "cmp-a", "current-host")
    life.generic("compute_reboot_instance", "cmp-a", "fault-record", result="Error", fault="cmp-a")
    return life.done(host="cmp-a", launched_on="cmp-a")


def rescheduled_build(h, t0) -> Expect:
    """Liberty+: the rejected attempt ends Success, writes no fault; its row keeps NULL finish."""
    life = Life(h, t0)
    life.build("cmp-a", "current-host", rescheduled=["cmp-x"])
    life.generic("compute_reboot_instance", "cmp-a", "current-host")
    return life.done(host="cmp-a", launched_on="cmp-a")


def resize_confirmed(h, t0) -> Expect:
    """Liberty-Pike: the destination creates the row in its prep_resize."""
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    life.generic("compute_stop_instance", "cmp-s")
    a = life.action("resize")
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    prep = life.start(a, "compute_prep_resize", "cmp-d", "migration-role")
    m = life.migration("resize", "cmp-s", "cmp-d", "pre-migrating", created=life.at(S))
    life.finish(a, "compute_prep_resize")
    life.event(a, "compute_resize_instance", "cmp-s", "migration-role")
    life.event(a, "compute_finish_resize", "cmp-d", "migration-role")
    c = life.action("confirmResize", gap=10 * MIN)
    life.event(c, "compute_confirm_resize", "cmp-s", "migration-role")
    h.update_migration(m, status="confirmed", updated_at=life.t)
    life.generic("compute_start_instance", "cmp-d")
    assert prep
    return life.done(host="cmp-d", launched_on="cmp-s")


def resize_reverted_kilo_to_newton(h, t0) -> Expect:
    """Kilo-Newton finish_revert_resize rewrites dest_compute := source_compute."""
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("resize")
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d", "migration-role")
    created = life.at(S)
    life.finish(a, "compute_prep_resize")
    life.event(a, "compute_resize_instance", "cmp-s", "migration-role")
    life.event(a, "compute_finish_resize", "cmp-d", "migration-role")
    r = life.action("revertResize", gap=MIN)
    life.event(r, "compute_revert_resize", "cmp-d", "migration-role")
    life.event(r, "compute_finish_revert_resize", "cmp-s", "migration-role")
    h.migration(
        life.uuid,
        kind="resize",
        source="cmp-s",
        dest="cmp-s",  # rewritten by the revert
        status="reverted",
        created=created,
        updated=life.t,
        source_node=node("cmp-s"),
        dest_node=node("cmp-d"),
        old_flavor=1,
        new_flavor=2,
    )
    life.generic("compute_reboot_instance", "cmp-s")
    return life.done(host="cmp-s", launched_on="cmp-s")


def live_migration_completed(h, t0) -> Expect:
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("live-migration")
    life.event(a, "conductor_live_migrate_instance", CONDUCTOR, "control-plane")
    created = life.t
    life.event(a, "compute_check_can_live_migrate_destination", "cmp-d", "migration-role")
    life.event(a, "compute_check_can_live_migrate_source", "cmp-s", "migration-role")
    life.event(a, "compute_live_migration", "cmp-s", "migration-role", took=S)
    life.event(a, "compute_pre_live_migration", "cmp-d", "migration-role")
    life.event(a, "compute_post_live_migration_at_destination", "cmp-d", "migration-role")
    life.migration(
        "live-migration",
        "cmp-s",
        "cmp-d",
        "completed",
        created=created,
        source_node=None,
        dest_node=None,
    )
    life.generic("compute_reboot_instance", "cmp-d")
    return life.done(host="cmp-d", launched_on="cmp-s")


def live_migration_rolled_back(h, t0) -> Expect:
    """Newton-Queens: a rollback leaves status ``error``; no post_live_migration_at_destination."""
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("live-migration")
    created = life.t
    life.event(a, "compute_check_can_live_migrate_destination", "cmp-d", "migration-role")
    life.event(a, "compute_check_can_live_migrate_source", "cmp-s", "migration-role")
    life.event(a, "compute_live_migration", "cmp-s", "migration-role", took=S)
    life.event(a, "compute_pre_live_migration", "cmp-d", "migration-role")
    life.event(a, "compute_rollback_live_migration_at_destination", "cmp-d", "migration-role")
    life.migration(
        "live-migration",
        "cmp-s",
        "cmp-d",
        "error",
        created=created,
        source_node=None,
        dest_node=None,
    )
    life.generic("compute_reboot_instance", "cmp-s")
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", "cmp-s", "host-timeline", took=60 * S)
    return life.done(host=None, launched_on="cmp-s", vm_state="shelved_offloaded")


def evacuation_done(h, t0) -> Expect:
    """Liberty+: the API creates the row; the destination's rebuild moves the host, then ``done``."""
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("evacuate")
    m = life.migration("evacuation", "cmp-s", None, "accepted", created=life.at(S))
    life.event(a, "rebuild_server", CONDUCTOR, "control-plane")
    life.event(a, "compute_rebuild_instance", "cmp-d", "migration-role", took=2 * MIN)
    h.update_migration(
        m, dest_compute="cmp-d", dest_node=node("cmp-d"), status="done", updated_at=life.t
    )
    life.generic("compute_reboot_instance", "cmp-d", gap=2 * MIN)
    # the old source came back days later and marked the migration completed
    h.update_migration(m, status="completed", updated_at=life.t + 3 * DAY)
    life.generic("compute_stop_instance", "cmp-d", gap=5 * DAY)
    return life.done(host="cmp-d", launched_on="cmp-s")


def evacuation_rows_taken_over(h, t0) -> Expect:
    """Liberty+: the conductor fills the oldest ``accepted`` row of the instance, not its own.

    The first evacuation found no host and left its row accepted; the second
    rebuilt on cmp-b through that row, leaving its own accepted; the third
    rebuilt on cmp-c through the second's row.  Which row says which
    destination is unknowable: the rebuilds stay NULL, the sources still hold.
    """
    life = Life(h, t0)
    life.build("cmp-a", "host-timeline")
    a = life.action("evacuate")
    first = life.migration("evacuation", "cmp-a", None, "accepted", created=life.at(S))
    life.event(
        a,
        "rebuild_server",
        CONDUCTOR,
        "control-plane",
        result="Error",
        fault=CONDUCTOR,
        message="No valid host was found. ",
    )
    b = life.action("evacuate", gap=2 * DAY)
    second = life.migration("evacuation", "cmp-a", None, "accepted", created=life.at(S))
    life.event(b, "rebuild_server", CONDUCTOR, "control-plane")
    life.event(b, "compute_rebuild_instance", "cmp-b", "migration-incomplete", took=2 * MIN)
    h.update_migration(
        first, dest_compute="cmp-b", dest_node=node("cmp-b"), status="done", updated_at=life.t
    )
    life.generic("compute_reboot_instance", "cmp-b")
    c = life.action("evacuate", gap=2 * DAY)
    third = life.migration("evacuation", "cmp-b", None, "accepted", created=life.at(S))
    life.event(c, "rebuild_server", CONDUCTOR, "control-plane")
    life.event(c, "compute_rebuild_instance", "cmp-c", "migration-incomplete", took=2 * MIN)
    h.update_migration(
        second, dest_compute="cmp-c", dest_node=node("cmp-c"), status="done", updated_at=life.t
    )
    h.update_migration(third, status="completed", updated_at=life.t + DAY)
    life.generic("compute_stop_instance", "cmp-c", gap=3 * DAY)
    return life.done(host="cmp-c", launched_on="cmp-a")


def shelve_still_shelved(h, t0) -> Expect:
    """Liberty+: ``shelved_host`` survives for an instance still shelved."""
    life = Life(h, t0)
    life.build("cmp-a", "host-timeline")
    a = life.action("live-migration")
    created = life.t
    life.event(a, "compute_check_can_live_migrate_destination", "cmp-b", "migration-role")
    life.event(a, "compute_check_can_live_migrate_source", "cmp-a", "migration-role")
    life.event(a, "compute_live_migration", "cmp-a", "migration-role", took=S)
    life.event(a, "compute_pre_live_migration", "cmp-b", "migration-role")
    life.event(a, "compute_post_live_migration_at_destination", "cmp-b", "migration-role")
    life.migration(
        "live-migration",
        "cmp-a",
        "cmp-b",
        "completed",
        created=created,
        source_node=None,
        dest_node=None,
    )
    # The move's "completed" never reached the next move's source: say a later
    # move recorded nothing about this segment but the shelve did.
    life.generic("compute_reboot_instance", "cmp-b")
    s = life.action("shelve")
    start = life.t + 2 * S
    life.event(s, "compute_shelve_instance", "cmp-b", "host-timeline", took=90 * S)
    h.system_metadata(life.uuid, "shelved_host", "cmp-b", start + 80 * S)
    h.system_metadata(life.uuid, "shelved_at", (start + 80 * S).isoformat(), start + 80 * S)
    return life.done(host=None, launched_on="cmp-a", vm_state="shelved_offloaded")


def unshelve_settled_by_new_evidence(h, t0) -> Expect:
    """A volume-backed shelve leaves no keys; the next segment is settled by launched_on and shelved_host."""
    life = Life(h, t0)
    life.build("cmp-a", "no-evidence")
    life.generic("compute_reboot_instance", "cmp-a", "no-evidence")
    life.action("shelve")  # volume-backed, pre-Queens: offloaded without an event
    u = life.action("unshelve", gap=3 * DAY)
    life.event(u, "schedule_instances", CONDUCTOR, "control-plane")
    life.event(u, "compute_unshelve_instance", "cmp-c", "shelved-host", took=60 * S)
    unshelved = life.t
    life.generic("compute_stop_instance", "cmp-c", "shelved-host")
    s = life.action("shelve")
    start = life.t + 2 * S
    life.event(s, "compute_shelve_instance", "cmp-c", "shelved-host", took=90 * S)
    h.system_metadata(life.uuid, "shelved_host", "cmp-c", start + 80 * S)
    h.system_metadata(life.uuid, "shelved_at", (start + 80 * S).isoformat(), start + 80 * S)
    return life.done(
        host=None, launched_on="cmp-c", launched_at=unshelved, vm_state="shelved_offloaded"
    )


def shelve_cycle_in_kilo(h, t0) -> Expect:
    """Kilo soft-deletes the shelved_* keys at unshelve: the row still names the shelving host."""
    life = Life(h, t0)
    life.build("cmp-a", "shelved-host")
    s = life.action("shelve")
    start = life.t + 2 * S
    life.event(s, "compute_shelve_instance", "cmp-a", "shelved-host", took=90 * S)
    u = life.action("unshelve", gap=2 * DAY)
    life.event(u, "get_image_info", CONDUCTOR, "control-plane")
    life.event(u, "schedule_instances", CONDUCTOR, "control-plane")
    removed = life.t
    h.system_metadata(life.uuid, "shelved_host", "cmp-a", start + 80 * S, deleted_at=removed)
    h.system_metadata(
        life.uuid,
        "shelved_at",
        (start + 80 * S).strftime("%Y-%m-%dT%H:%M:%S.%f"),
        start + 80 * S,
        deleted_at=removed,
    )
    life.event(u, "compute_unshelve_instance", "cmp-b", "host-timeline", took=60 * S)
    life.generic("compute_reboot_instance", "cmp-b")
    return life.done(host="cmp-b", launched_on="cmp-b")


def volume_connector_settles_a_segment(h, t0) -> Expect:
    """Mitaka-Pike: a volume attached and detached (no events before Queens) while on cmp-c."""
    life = Life(h, t0)
    life.build("cmp-a", "no-evidence")
    life.action("shelve")  # volume-backed: no event
    u = life.action("unshelve", gap=DAY)
    life.event(u, "compute_unshelve_instance", "cmp-c", "volume-connector", took=60 * S)
    attached = life.at(HOUR)
    life.generic("compute_reboot_instance", "cmp-c", "volume-connector")
    detached = life.at(HOUR)
    h.volume_attachment(life.uuid, attached, connector_host="cmp-c", deleted_at=detached)
    life.action("shelve")
    u2 = life.action("unshelve", gap=DAY)
    life.event(u2, "compute_unshelve_instance", "cmp-d", "host-timeline", took=60 * S)
    life.generic("compute_stop_instance", "cmp-d")
    return life.done(host="cmp-d", launched_on="cmp-d")


def rolled_back_live_migration_keeps_the_destination_connector(h, t0) -> Expect:
    """pre_live_migration rewrote the connector; the rollback (before Train) left it."""
    life = Life(h, t0)
    life.build("cmp-s", "current-host")
    h.volume_attachment(life.uuid, life.at(MIN), connector_host="cmp-d")
    a = life.action("live-migration")
    created = life.t
    life.event(a, "compute_check_can_live_migrate_destination", "cmp-d", "migration-role")
    life.event(a, "compute_check_can_live_migrate_source", "cmp-s", "migration-role")
    life.event(a, "compute_live_migration", "cmp-s", "migration-role", took=S)
    life.event(a, "compute_pre_live_migration", "cmp-d", "migration-role")
    life.event(a, "compute_rollback_live_migration_at_destination", "cmp-d", "migration-role")
    life.migration(
        "live-migration",
        "cmp-s",
        "cmp-d",
        "error",
        created=created,
        source_node=None,
        dest_node=None,
    )
    life.generic("compute_reboot_instance", "cmp-s", "current-host")
    return life.done(host="cmp-s", launched_on="cmp-s")


def recorded_half_settles_the_segment(h, t0) -> Expect:
    """A segment spanning the Rocky upgrade: Nova recorded its later events."""
    life = Life(h, t0)
    life.build("cmp-r", "host-timeline")
    life.generic("compute_stop_instance", "cmp-r")
    life.generic("compute_start_instance", "cmp-r", recorded=True)
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", "cmp-r", "host-timeline")
    life.action("unshelve", gap=DAY)  # never scheduled: no compute event
    return life.done(host=None, launched_on="cmp-r", vm_state="shelved_offloaded")


def deleted_instance_with_soft_deleted_migration(h, t0) -> Expect:
    """Newton+ soft-deletes the migrations with the instance."""
    life = Life(h, t0, deleted=True)
    life.build("cmp-s", "host-timeline")
    a = life.action("migrate")
    life.start(a, "compute_prep_resize", "cmp-d", "migration-role")
    created = life.at(S)
    life.finish(a, "compute_prep_resize")
    life.event(a, "compute_resize_instance", "cmp-s", "migration-role")
    life.event(a, "compute_finish_resize", "cmp-d", "migration-role")
    c = life.action("confirmResize", gap=MIN)
    life.event(c, "compute_confirm_resize", "cmp-s", "migration-role")
    life.migration("migration", "cmp-s", "cmp-d", "confirmed", created=created, deleted=True)
    d = life.action("delete")
    life.event(d, "compute_terminate_instance", "cmp-d", "host-timeline")
    return life.done(host="cmp-d", launched_on="cmp-s")


def missing_instance(h, t0) -> Expect:
    """Archived actions whose archived instance was purged (shadow tables have no FKs)."""
    life = Life(h, t0, create_instance=False)
    life.uuid = "00000000-dead-beef-0000-000000000001"
    h.archived.add(life.uuid)
    a = life.action("create", gap=S)
    life.event(a, "compute__do_build_and_run_instance", None, "instance-missing")
    life.generic("compute_reboot_instance", None, "instance-missing")
    return life.expect


def unknown_and_control_plane_events(h, t0) -> Expect:
    life = Life(h, t0)
    a = life.build("cmp-a", "current-host")
    life.event(a, "schedule_instances", CONDUCTOR, "control-plane")
    life.event(a, "api_lock", "api-1", "control-plane")
    life.event(a, "frobnicate_instance", "cmp-a", "unknown-event")
    return life.done(host="cmp-a", launched_on="cmp-a")


def conflicting_evidence_is_ambiguous(h, t0) -> Expect:
    life = Life(h, t0)
    life.build("cmp-x", "ambiguous")
    life.generic("compute_reboot_instance", "cmp-x", "ambiguous")
    # Nova recorded another host inside the same segment: the evidence disagrees.
    life.generic("compute_stop_instance", "cmp-y", recorded=True)
    return life.done(host="cmp-now", launched_on="cmp-x")


def event_while_resized_ran_on_the_destination(h, t0) -> Expect:
    """Queens: attach_volume is allowed while RESIZED; the instance already lives on the destination."""
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("resize")
    m = life.migration("resize", "cmp-s", None, "pre-migrating", created=life.at(S))
    life.event(a, "conductor_migrate_server", CONDUCTOR, "control-plane")
    life.event(a, "compute_prep_resize", "cmp-d", "migration-role")
    life.event(a, "compute_resize_instance", "cmp-s", "migration-role")
    life.event(a, "compute_finish_resize", "cmp-d", "migration-role")
    life.generic("compute_attach_volume", "cmp-d", gap=MIN)
    c = life.action("confirmResize", gap=DAY)
    life.event(c, "compute_confirm_resize", "cmp-s", "migration-role")
    h.update_migration(
        m,
        dest_compute="cmp-d",
        dest_node=node("cmp-d"),
        status="confirmed",
        updated_at=life.t,
        old_instance_type_id=1,
        new_instance_type_id=2,
    )
    return life.done(host="cmp-d", launched_on="cmp-s")


def archived_history(h, t0) -> Expect:
    """Newton+ archives deleted instances with their actions and events."""
    life = Life(h, t0, deleted=True, archived=True)
    life.build("cmp-s", "host-timeline")
    a = life.action("live-migration")
    created = life.t
    life.event(a, "compute_live_migration", "cmp-s", "migration-role")
    life.event(a, "compute_post_live_migration_at_destination", "cmp-d", "migration-role")
    life.migration("live-migration", "cmp-s", "cmp-d", "completed", created=created, deleted=True)
    d = life.action("delete")
    life.event(d, "compute_terminate_instance", "cmp-d", "host-timeline")
    return life.done(host="cmp-d", launched_on="cmp-s")


def conductor_fault_settles_nothing(h, t0) -> Expect:
    """NoValidHost is recorded by the conductor, under the conductor's host name."""
    life = Life(h, t0)
    life.build("cmp-old", "no-evidence")
    a = life.action("rebuild")
    life.event(
        a,
        "rebuild_server",
        CONDUCTOR,
        "control-plane",
        result="Error",
        fault=CONDUCTOR,
        message="No valid host was found. ",
    )
    life.generic("compute_reboot_instance", "cmp-old", "no-evidence")
    life.action("shelve")  # volume-backed, before Queens: no event
    u = life.action("unshelve", gap=DAY)
    life.event(u, "compute_unshelve_instance", "cmp-new", "host-timeline")
    return life.done(host="cmp-new", launched_on="cmp-new")


# --------------------------------------------------------------------------- release traps


def case1_rescheduled_resize_liberty_to_pike(h, t0) -> Expect:
    """Each candidate's prep_resize creates its own row; the rejected one stays pre-migrating.

    Linking the move to the earliest row would take the rejected candidate
    and write its host on the destination's events.
    """
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("migrate")
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d1", "migration-role")
    life.migration("migration", "cmp-s", "cmp-d1", "pre-migrating", created=life.at(S))
    # The reschedule is a synchronous call: the next candidate starts before
    # the rejected one records its fault and finishes (Success).
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d2", "migration-role")
    m = life.migration("migration", "cmp-s", "cmp-d2", "pre-migrating", created=life.at(S))
    h.fault(life.uuid, "cmp-d1", life.at(S), message="ComputeResourcesUnavailable")
    life.finish(a, "compute_prep_resize")
    life.finish(a, "compute_prep_resize")
    life.event(a, "compute_resize_instance", "cmp-s", "migration-role")
    life.event(a, "compute_finish_resize", "cmp-d2", "migration-role")
    c = life.action("confirmResize", gap=MIN)
    life.event(c, "compute_confirm_resize", "cmp-s", "migration-role")
    h.update_migration(m, status="confirmed", updated_at=life.t)
    life.generic("compute_stop_instance", "cmp-d2")
    return life.done(host="cmp-d2", launched_on="cmp-s")


def case1_rescheduled_resize_kilo(h, t0) -> Expect:
    """Kilo creates the row after the claim test: a claim-rejected candidate leaves none."""
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("resize")
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d1", "rescheduled-candidate")
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d2", "migration-role")
    h.fault(life.uuid, "cmp-d1", life.at(S), message="ComputeResourcesUnavailable")
    life.finish(a, "compute_prep_resize")
    created = life.at(S)
    life.finish(a, "compute_prep_resize")
    life.event(a, "compute_resize_instance", "cmp-s", "migration-role")
    life.event(a, "compute_finish_resize", "cmp-d2", "migration-role")
    c = life.action("confirmResize", gap=MIN)
    life.event(c, "compute_confirm_resize", "cmp-s", "migration-role")
    life.migration(
        None, "cmp-s", "cmp-d2", "confirmed", created=created, old_flavor=1, new_flavor=2
    )
    life.generic("compute_stop_instance", "cmp-d2")
    return life.done(host="cmp-d2", launched_on="cmp-s")


def case1_queens_reuses_a_stale_row(h, t0) -> Expect:
    """Queens' conductor reuses any pre-migrating row of the instance: a Pike leftover here.

    The leftover's action must not read the rewritten row as its own move,
    and the Queens move, whose row was created long before it, has none.
    """
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("migrate")  # Pike: the only candidate fails for good
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d1", "fault-record")
    stale = life.migration("migration", "cmp-s", "cmp-d1", "pre-migrating", created=life.at(S))
    h.fault(life.uuid, "cmp-d1", life.at(S), message="ComputeResourcesUnavailable")
    life.finish(a, "compute_prep_resize", result="Error")
    life.generic("compute_reboot_instance", "cmp-s")
    b = life.action("migrate", gap=30 * DAY)  # Queens reuses the leftover row
    life.event(b, "conductor_migrate_server", CONDUCTOR, "control-plane")
    life.event(b, "compute_prep_resize", "cmp-d2", "migration-incomplete")
    life.event(b, "compute_resize_instance", "cmp-s", "host-timeline")
    life.event(b, "compute_finish_resize", "cmp-d2", "migration-incomplete")
    c = life.action("confirmResize", gap=MIN)
    life.event(c, "compute_confirm_resize", "cmp-s", "no-migration")
    h.update_migration(
        stale,
        dest_compute="cmp-d2",
        dest_node=node("cmp-d2"),
        status="confirmed",
        updated_at=life.t,
    )
    life.generic("compute_start_instance", "cmp-d2")
    return life.done(host="cmp-d2", launched_on="cmp-s")


def case2_kilo_live_migration_has_no_row_and_no_events(h, t0) -> Expect:
    """No event and no row mark the move: without a boundary the later host is carried back across it."""
    life = Life(h, t0)
    life.build("cmp-a", "launched-on")
    life.generic("compute_stop_instance", "cmp-a", "launched-on")
    life.action("live-migration")  # Kilo: the action alone
    life.generic("compute_start_instance", "cmp-b")
    return life.done(host="cmp-b", launched_on="cmp-a")


def case2_kilo_evacuation_has_no_row(h, t0) -> Expect:
    life = Life(h, t0)
    life.build("cmp-a", "launched-on")
    life.generic("compute_stop_instance", "cmp-a", "launched-on")
    a = life.action("evacuate")
    life.event(a, "rebuild_server", CONDUCTOR, "control-plane")
    life.event(a, "compute_rebuild_instance", "cmp-b", "migration-incomplete", took=2 * MIN)
    life.generic("compute_start_instance", "cmp-b")
    return life.done(host="cmp-b", launched_on="cmp-a")


def case3_old_build_event_names(h, t0) -> Expect:
    """Icehouse/Juno build names (served until Kilo): compute_run_instance per attempt.

    Here a Kilo compute serving an older conductor's run_instance: the operator
    declares Kilo (``releases``), else nothing in this one-instance cell excludes
    Icehouse/Juno and the reboot is settled across an untracked gap."""
    life = Life(h, t0)
    a = life.action("create", gap=S)
    life.event(a, "compute_run_instance", "cmp-x", "rescheduled-candidate")
    life.event(a, "compute_run_instance", "cmp-a", "current-host", took=40 * S)
    life.launched_at = life.t - S
    life.generic("compute_reboot_instance", "cmp-a", "current-host")
    return life.done(host="cmp-a", launched_on="cmp-a")


case3_old_build_event_names.releases = "kilo=2015-04-30"


def case4_evacuation_completed_without_a_rebuild(h, t0) -> Expect:
    """Newton: no valid host for the named destination; the row stays accepted, then the
    source's restart marks it completed.  Nothing moved."""
    life = Life(h, t0)
    life.build("cmp-a", "host-timeline")
    a = life.action("evacuate")
    m = life.migration("evacuation", "cmp-a", "cmp-b", "accepted", created=life.at(S))
    life.event(
        a,
        "rebuild_server",
        CONDUCTOR,
        "control-plane",
        result="Error",
        fault=CONDUCTOR,
        message="No valid host was found. ",
    )
    h.update_migration(m, status="completed", updated_at=life.t + 2 * DAY)
    life.generic("compute_stop_instance", "cmp-a", "host-timeline", gap=3 * DAY)
    s = life.action("shelve")
    start = life.t + 2 * S
    life.event(s, "compute_shelve_instance", "cmp-a", "host-timeline", took=90 * S)
    h.system_metadata(life.uuid, "shelved_host", "cmp-a", start + 80 * S)
    h.system_metadata(life.uuid, "shelved_at", (start + 80 * S).isoformat(), start + 80 * S)
    return life.done(host=None, launched_on="cmp-a", vm_state="shelved_offloaded")


def case5_kilo_build_fails_after_a_reschedule(h, t0) -> Expect:
    """Rescheduled attempts end Success with no fault; Kilo keeps the first candidate's host.

    The last attempt's claim failed and the conductor ran out of hosts: the
    instance row still names the first candidate, which must not be written
    on the last attempt.
    """
    life = Life(h, t0)
    a = life.action("create", gap=S)
    life.event(
        a, "compute__do_build_and_run_instance", "cmp-x", "rescheduled-candidate", took=30 * S
    )
    life.event(a, "compute__do_build_and_run_instance", "cmp-y", "no-evidence", took=3 * S)
    h.fault(
        life.uuid,
        CONDUCTOR,
        life.at(2 * S),
        message="Exceeded max scheduling attempts 2 for instance",
    )
    d = life.action("delete")
    life.event(d, "compute_terminate_instance", "cmp-x", "current-host")
    return life.done(host="cmp-x", launched_on="cmp-x", vm_state="error")


def case5_rescheduled_prep_resize_ends_success_with_a_fault(h, t0) -> Expect:
    """Queens: one row whose destination each candidate overwrites; the rejected candidate's
    prep_resize ends Success and records a fault with its host."""
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("resize")
    m = life.migration(
        "resize", "cmp-s", None, "pre-migrating", created=life.at(S), old_flavor=1, new_flavor=2
    )
    life.event(a, "conductor_migrate_server", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d1", "rescheduled-candidate")
    life.start(a, "compute_prep_resize", "cmp-d2", "migration-role")
    h.fault(life.uuid, "cmp-d1", life.at(S), message="ComputeResourcesUnavailable")
    life.finish(a, "compute_prep_resize")
    life.finish(a, "compute_prep_resize")
    life.event(a, "compute_resize_instance", "cmp-s", "migration-role")
    life.event(a, "compute_finish_resize", "cmp-d2", "migration-role")
    c = life.action("confirmResize", gap=MIN)
    life.event(c, "compute_confirm_resize", "cmp-s", "migration-role")
    h.update_migration(
        m, dest_compute="cmp-d2", dest_node=node("cmp-d2"), status="confirmed", updated_at=life.t
    )
    life.generic("compute_reboot_instance", "cmp-d2")
    return life.done(host="cmp-d2", launched_on="cmp-s")


def case6_live_migration_fails_after_the_host_moved(h, t0) -> Expect:
    """Mitaka: post_live_migration_at_destination moved the host, then the source's cleanup
    failed: status ``failed``, the instance on the destination."""
    life = Life(h, t0)
    life.build("cmp-s", "host-timeline")
    a = life.action("live-migration")
    created = life.t
    life.event(a, "compute_check_can_live_migrate_destination", "cmp-d", "migration-role")
    life.event(a, "compute_check_can_live_migrate_source", "cmp-s", "migration-role")
    life.event(a, "compute_live_migration", "cmp-s", "migration-role", took=S)
    life.event(a, "compute_pre_live_migration", "cmp-d", "migration-role")
    life.event(a, "compute_post_live_migration_at_destination", "cmp-d", "migration-role")
    life.migration(
        "live-migration",
        "cmp-s",
        "cmp-d",
        "failed",
        created=created,
        source_node=None,
        dest_node=None,
    )
    life.generic("compute_reboot_instance", "cmp-d")
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", "cmp-d", "host-timeline", took=60 * S)
    return life.done(host=None, launched_on="cmp-s", vm_state="shelved_offloaded")


def case7_repeated_step_carries_the_last_attempts_result(h, t0) -> Expect:
    """Liberty-Pike: the second candidate fails for good.  action_event_finish wrote both
    finishes into the first prep_resize row (which now says Error), the second keeps
    NULL; each candidate's own row names it."""
    life = Life(h, t0)
    life.build("cmp-s", "current-host")
    a = life.action("resize")
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d1", "migration-role")
    life.migration(
        "resize", "cmp-s", "cmp-d1", "pre-migrating", created=life.at(S), old_flavor=1, new_flavor=2
    )
    life.event(a, "cold_migrate", CONDUCTOR, "control-plane")
    life.start(a, "compute_prep_resize", "cmp-d2", "migration-role")
    life.migration(
        "resize", "cmp-s", "cmp-d2", "pre-migrating", created=life.at(S), old_flavor=1, new_flavor=2
    )
    h.fault(life.uuid, "cmp-d1", life.at(S), message="ComputeResourcesUnavailable")
    life.finish(a, "compute_prep_resize")
    h.fault(life.uuid, "cmp-d2", life.at(S), message="ComputeResourcesUnavailable")
    life.finish(a, "compute_prep_resize", result="Error")
    life.generic("compute_reboot_instance", "cmp-s", "current-host")
    return life.done(host="cmp-s", launched_on="cmp-s")


# --------------------------------------------------------------------------- Icehouse / Juno
# Each runs in a cell of its own that nothing proves Kilo or later: era
# detection assumes Icehouse/Juno throughout, so the host may change between
# any two actions of an ACTIVE instance (inference/eras.py, steps.untracked_gap).


def icehouse_silent_live_migration_between_reboots(h, t0) -> Expect:
    """2014.1: a live migration records no action, no event and no row (no LIVE_MIGRATION in
    compute/instance_actions.py; CA live_migrate only sets task_state).  Between the two
    reboots it moved cmp-a -> cmp-b; the second reboot failed on cmp-b.  Read as one
    segment up to the unshelve, settled by that fault, the build and the first reboot
    would get cmp-b."""
    life = Life(h, t0)
    a = life.action("create", gap=S)
    life.event(a, "compute_run_instance", "cmp-a", "no-evidence", took=40 * S)
    life.generic("compute_reboot_instance", "cmp-a", "no-evidence")
    # ... the silent live migration to cmp-b (post_live_migration_at_destination sets
    # host and node, never launched_on: 2014.1 CM ~4690) ...
    life.generic("compute_reboot_instance", "cmp-b", "fault-record", result="Error", fault="cmp-b")
    # It may have moved again before the shelve: nothing settles the shelve.
    life.generic("compute_shelve_instance", "cmp-b", "no-evidence")
    u = life.action("unshelve")
    life.event(u, "compute_unshelve_instance", "cmp-d", "launched-on", took=30 * S)
    life.launched_at = life.t - S
    return life.done(host="cmp-d", launched_on="cmp-d")


def icehouse_stopped_instance_cannot_move_silently(h, t0) -> Expect:
    """A live migration needs vm_state ACTIVE (2014.1 CA ~3007) and start needs STOPPED: the
    stop and the start share a segment, which the start's own fault settles."""
    life = Life(h, t0)
    a = life.action("create", gap=S)
    life.event(a, "compute_run_instance", "cmp-a", "launched-on", took=40 * S)
    life.launched_at = life.t - S
    life.generic("compute_stop_instance", "cmp-a", "host-timeline")
    life.generic("compute_start_instance", "cmp-a", "fault-record", result="Error", fault="cmp-a")
    life.generic("compute_reboot_instance", "cmp-b", "no-evidence")
    return life.done(host="cmp-b", launched_on="cmp-a")


def icehouse_rescheduled_build_leaves_the_candidates_fault(h, t0) -> Expect:
    """2014.1 CM _reschedule_or_error records the candidate's fault, then _run_instance
    swallows the RescheduledException: Success *with* a fault.  The next attempt started a
    second later; read as the build's failure, that fault would give the build's last
    attempt the candidate's host."""
    life = Life(h, t0)
    a = life.action("create", gap=S)
    first = h.event_start(life.uuid, a, "compute_run_instance", life.at(2 * S))
    life._expect(first, "cmp-x", "fault-record")
    failed = life.at(5 * S)
    h.fault(life.uuid, "cmp-x", failed, message="Insufficient compute resources")
    h.event_finish(a, "compute_run_instance", failed, result="Success")
    last = h.event_start(life.uuid, a, "compute_run_instance", life.at(S))
    life._expect(last, "cmp-a", "launched-on")
    h.event_finish(a, "compute_run_instance", life.at(40 * S), result="Success")
    life.launched_at = life.t - S
    life.generic("compute_reboot_instance", "cmp-a", "no-evidence")
    return life.done(host="cmp-a", launched_on="cmp-a")


ICEHOUSE_CASES = [
    icehouse_silent_live_migration_between_reboots,
    icehouse_stopped_instance_cannot_move_silently,
    icehouse_rescheduled_build_leaves_the_candidates_fault,
]


# --------------------------------------------------------------------------- rolling upgrades
# Liberty's control plane with Kilo computes left (compute RPC pinned to kilo = 4.0):
# the compute RPC drops ``migration`` (12.0.1 ComputeAPI.live_migration), so
# the conductor's row stays ``pre-migrating``, and a Kilo compute records no
# live-migration events (2015.1.0 ComputeManager: none of them wrapped).


def _drain_row(life: Life, source: str, dest: str) -> None:
    """The Liberty conductor's row; LiveMigrationTask sets dest_compute, no compute updates it."""
    life.migration(
        "live-migration",
        source,
        dest,
        "pre-migrating",
        created=life.at(S),
        source_node=None,
        dest_node=None,
    )


def rolling_drain_between_kilo_computes(h, t0) -> Expect:
    """host-evacuate-live drains cmp-a (Kilo) onto cmp-b (Kilo) in Liberty's window: the
    row stays pre-migrating, no compute event; the destination took it over."""
    life = Life(h, t0)
    life.build("cmp-a", "host-timeline")
    life.generic("compute_reboot_instance", "cmp-a")
    life.action("live-migration")
    _drain_row(life, "cmp-a", "cmp-b")
    life.generic("compute_reboot_instance", "cmp-b", "no-evidence")
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", "cmp-b", "no-evidence", took=60 * S)
    return life.done(host=None, launched_on="cmp-a", vm_state="shelved_offloaded")


def rolling_drain_settled_by_a_later_move(h, t0) -> Expect:
    """The same drain; a later Liberty live migration's row names cmp-b as its source."""
    life = Life(h, t0)
    life.build("cmp-a", "host-timeline")
    life.action("live-migration")
    _drain_row(life, "cmp-a", "cmp-b")
    life.generic("compute_reboot_instance", "cmp-b")
    a = life.action("live-migration", gap=30 * DAY)
    created = life.t
    life.event(a, "compute_check_can_live_migrate_destination", "cmp-c", "migration-role")
    life.event(a, "compute_check_can_live_migrate_source", "cmp-b", "migration-role")
    life.event(a, "compute_live_migration", "cmp-b", "migration-role", took=S)
    life.event(a, "compute_pre_live_migration", "cmp-c", "migration-role")
    life.event(a, "compute_post_live_migration_at_destination", "cmp-c", "migration-role")
    life.migration(
        "live-migration",
        "cmp-b",
        "cmp-c",
        "completed",
        created=created,
        source_node=None,
        dest_node=None,
    )
    life.generic("compute_reboot_instance", "cmp-c")
    return life.done(host="cmp-c", launched_on="cmp-a")


def rolling_liberty_source_kilo_destination(h, t0) -> Expect:
    """cmp-a runs Liberty, the scheduler's first candidate cmp-x (Liberty) fails its checks,
    cmp-b (Kilo) takes the instance over: only the Liberty ends' steps are recorded."""
    life = Life(h, t0)
    life.build("cmp-a", "host-timeline")
    a = life.action("live-migration")
    _drain_row(life, "cmp-a", "cmp-b")
    life.start(a, "compute_check_can_live_migrate_destination", "cmp-x", "migration-incomplete")
    life.start(a, "compute_check_can_live_migrate_source", "cmp-a", "migration-role")
    h.fault(life.uuid, "cmp-a", life.at(S), message="Migration pre-check error")
    life.finish(a, "compute_check_can_live_migrate_source", result="Error")
    h.fault(life.uuid, "cmp-x", life.at(S), message="Migration pre-check error")
    life.finish(a, "compute_check_can_live_migrate_destination", result="Error")
    # cmp-b (Kilo) checks itself unrecorded and calls the source's check.
    life.event(a, "compute_check_can_live_migrate_source", "cmp-a", "migration-role")
    life.event(a, "compute_live_migration", "cmp-a", "migration-role", took=S)
    life.generic("compute_reboot_instance", "cmp-b", "no-evidence")
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", "cmp-b", "no-evidence", took=60 * S)
    return life.done(host=None, launched_on="cmp-a", vm_state="shelved_offloaded")


def rolling_kilo_source_liberty_destination(h, t0) -> Expect:
    """cmp-a runs Kilo, cmp-b Liberty: the destination's own steps say it took it over."""
    life = Life(h, t0)
    life.build("cmp-a", "host-timeline")
    a = life.action("live-migration")
    _drain_row(life, "cmp-a", "cmp-b")
    life.event(a, "compute_check_can_live_migrate_destination", "cmp-b", "migration-role")
    life.event(a, "compute_pre_live_migration", "cmp-b", "migration-role")
    life.event(a, "compute_post_live_migration_at_destination", "cmp-b", "migration-role")
    life.generic("compute_reboot_instance", "cmp-b")
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", "cmp-b", "host-timeline", took=60 * S)
    return life.done(host=None, launched_on="cmp-a", vm_state="shelved_offloaded")


def rolling_evacuation_row_taken_over_later(h, t0, source_restarts=False) -> Expect:
    """An evacuation in Liberty's window leaves its row accepted (no compute sees it); a
    later evacuation's conductor finds it first (.first() on 'accepted') and fills it with
    its own destination, while its own row is completed when cmp-b restarts."""
    life = Life(h, t0)
    life.build("cmp-a", "host-timeline")
    a = life.action("evacuate")
    first = life.migration("evacuation", "cmp-a", None, "accepted", created=life.t, dest_node=None)
    life.event(a, "rebuild_server", CONDUCTOR, "control-plane")
    life.event(a, "compute_rebuild_instance", "cmp-b", "migration-incomplete", took=2 * MIN)
    life.generic("compute_reboot_instance", "cmp-b")
    e = life.action("evacuate", gap=60 * DAY)
    own = life.migration("evacuation", "cmp-b", None, "accepted", created=life.t, dest_node=None)
    life.event(e, "rebuild_server", CONDUCTOR, "control-plane")
    life.event(e, "compute_rebuild_instance", "cmp-c", "migration-incomplete", took=2 * MIN)
    h.update_migration(
        first, dest_compute="cmp-c", dest_node=node("cmp-c"), status="done", updated_at=life.t
    )
    h.update_migration(own, status="completed", updated_at=life.t + 3 * DAY)
    if source_restarts:
        h.update_migration(first, status="completed", updated_at=life.t + 4 * DAY)
    life.generic("compute_reboot_instance", "cmp-c", gap=5 * DAY)
    return life.done(host="cmp-c", launched_on="cmp-a")


def rolling_evacuation_row_taken_over_then_completed(h, t0) -> Expect:
    """The same, and cmp-a restarts afterwards: its _destroy_evacuated_instances (Mitaka+)
    completes the taken-over row too, which then no longer says when it was claimed."""
    return rolling_evacuation_row_taken_over_later(h, t0, source_restarts=True)


#: Rolling-upgrade histories (docs/accuracy.md §10): computes of two releases side by
#: side; rules that assume one release per moment write a wrong host (or none) on all
#: but the last.
ROLLING = [
    rolling_drain_between_kilo_computes,
    rolling_drain_settled_by_a_later_move,
    rolling_liberty_source_kilo_destination,
    rolling_evacuation_row_taken_over_later,
    rolling_evacuation_row_taken_over_then_completed,
    rolling_kilo_source_liberty_destination,
]


SCENARIOS = [
    never_moved,
    rescheduled_build,
    resize_confirmed,
    resize_reverted_kilo_to_newton,
    live_migration_completed,
    live_migration_rolled_back,
    evacuation_done,
    evacuation_rows_taken_over,
    shelve_still_shelved,
    unshelve_settled_by_new_evidence,
    shelve_cycle_in_kilo,
    volume_connector_settles_a_segment,
    rolled_back_live_migration_keeps_the_destination_connector,
    recorded_half_settles_the_segment,
    deleted_instance_with_soft_deleted_migration,
    missing_instance,
    unknown_and_control_plane_events,
    conflicting_evidence_is_ambiguous,
    event_while_resized_ran_on_the_destination,
    archived_history,
    conductor_fault_settles_nothing,
]
CASES = [
    case1_rescheduled_resize_liberty_to_pike,
    case1_rescheduled_resize_kilo,
    case1_queens_reuses_a_stale_row,
    case2_kilo_live_migration_has_no_row_and_no_events,
    case2_kilo_evacuation_has_no_row,
    case3_old_build_event_names,
    case4_evacuation_completed_without_a_rebuild,
    case5_kilo_build_fails_after_a_reschedule,
    case5_rescheduled_prep_resize_ends_success_with_a_fault,
    case6_live_migration_fails_after_the_host_moved,
    case7_repeated_step_carries_the_last_attempts_result,
]

COMPUTE_HOSTS = (
    "cmp-a",
    "cmp-b",
    "cmp-c",
    "cmp-s",
    "cmp-d",
    "cmp-d1",
    "cmp-d2",
    "cmp-old",
    "cmp-new",
    "cmp-r",
    "cmp-x",
    "cmp-y",
    "cmp-now",
)
CONDUCTOR_HOSTS = (CONDUCTOR,)


def register_services(h: HistoryBuilder) -> None:
    """Every compute registers a service and a compute node; conductors a service."""
    for host in COMPUTE_HOSTS:
        service = h.service(host, "nova-compute")
        h.compute_node(host, node(host), service_id=service)
    for host in CONDUCTOR_HOSTS:
        h.service(host, "nova-conductor")


def build_all(
    h: HistoryBuilder,
    start: datetime = datetime(2016, 6, 1),
    copies: int = 1,
    scenarios=SCENARIOS + CASES,
) -> Expect:
    """Every scenario, ``copies`` times, each instance a month apart."""
    expect: Expect = {}
    register_services(h)
    t = start
    for _ in range(copies):
        for scenario in scenarios:
            expect.update(scenario(h, t))
            t += timedelta(days=60)
    return expect
