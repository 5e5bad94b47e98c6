"""Hand-built Nova histories, each event annotated with the decision expected.

Every builder writes one instance's life into a ``HistoryBuilder`` the way
Nova would have recorded it (nova-facts sections 4 and 5) and returns the
expected ``(host, rule)`` for each event id; ``host`` None means the event
must stay NULL, ``rule`` then being the reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from actionhost_backfill.history import HistoryBuilder
from actionhost_backfill.inference import REASONS

S = timedelta(seconds=1)
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)
Expect = dict[int, tuple[str | None, str]]


class Life:
    """One instance's history, built step by step with expectations."""

    def __init__(
        self,
        h: HistoryBuilder,
        start: datetime,
        *,
        host: str | None,
        deleted=False,
        archived=False,
        create_instance=True,
    ):
        self.h = h
        self.t = start
        self.expect: Expect = {}
        self.uuid = (
            h.instance(host=host, created_at=start, deleted=deleted, archived=archived)
            if create_instance
            else None
        )

    def at(self, delta: timedelta) -> datetime:
        self.t = self.t + delta
        return self.t

    def action(self, name: str, gap: timedelta = DAY) -> int:
        return self.h.action(self.uuid, name, self.at(gap))

    def event(
        self, action_id, name, expect, *, took=10 * S, result="Success", host=None, fault_host=None
    ):
        start = self.at(2 * S)
        finish = self.at(took)
        if fault_host:
            self.h.fault(self.uuid, fault_host, finish - S)
        event_id = self.h.event(self.uuid, action_id, name, start, finish, result=result, host=host)
        truth, rule = expect
        self.expect[event_id] = (None, rule) if rule in REASONS else (truth, rule)
        return event_id

    def build(self, host, expect_rule="host-timeline", *, rejected=()):
        a = self.action("create", gap=S)
        self.event(a, "conductor_schedule_and_build_instances", (None, "control-plane"))
        for candidate in rejected:
            self.event(
                a,
                "compute__do_build_and_run_instance",
                (candidate, "fault-record"),
                result="Error",
                fault_host=candidate,
            )
        self.event(a, "compute__do_build_and_run_instance", (host, expect_rule))
        return a

    def generic(self, name, host, rule="host-timeline", gap=DAY, **kw):
        a = self.action(name.removeprefix("compute_").split("_")[0], gap=gap)
        self.event(a, name, (host, rule), **kw)
        return a

    def migration(self, kind, source, dest, status, *, created, updated, deleted=False):
        return self.h.migration(
            self.uuid,
            kind=kind,
            source=source,
            dest=dest,
            status=status,
            created=created,
            updated=updated,
            deleted=deleted,
        )


def never_moved(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-a")
    life.build("cmp-a", "current-host")
    life.generic("compute_stop_instance", "cmp-a", "current-host")
    life.generic("compute_start_instance", "cmp-a", "current-host")
    life.generic(
        "compute_reboot_instance", "cmp-a", "fault-record", result="Error", fault_host="cmp-a"
    )
    return life.expect


def resize_confirmed(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-d")
    life.build("cmp-s")
    life.generic("compute_stop_instance", "cmp-s")
    a = life.action("resize")
    created = life.at(S)
    life.event(a, "cold_migrate", (None, "control-plane"))
    life.event(a, "compute_prep_resize", ("cmp-d", "migration-role"))
    life.event(a, "compute_resize_instance", ("cmp-s", "migration-role"))
    life.event(a, "compute_finish_resize", ("cmp-d", "migration-role"))
    c = life.action("confirmResize", gap=10 * MIN)
    life.event(c, "compute_confirm_resize", ("cmp-s", "migration-role"))
    life.migration("resize", "cmp-s", "cmp-d", "confirmed", created=created, updated=life.t)
    life.generic("compute_start_instance", "cmp-d")
    return life.expect


def resize_reverted(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-s")
    life.build("cmp-s")
    a = life.action("resize")
    created = life.at(S)
    life.event(a, "conductor_migrate_server", (None, "control-plane"))
    life.event(a, "compute_prep_resize", ("cmp-d", "migration-role"))
    life.event(a, "compute_resize_instance", ("cmp-s", "migration-role"))
    life.event(a, "compute_finish_resize", ("cmp-d", "migration-role"))
    r = life.action("revertResize", gap=MIN)
    life.event(r, "compute_revert_resize", ("cmp-d", "migration-role"))
    life.event(r, "compute_finish_revert_resize", ("cmp-s", "migration-role"))
    life.migration(None, "cmp-s", "cmp-d", "reverted", created=created, updated=life.t)
    life.generic("compute_reboot_instance", "cmp-s")
    return life.expect


def cold_migration_with_reschedule(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-d2")
    life.build("cmp-s")
    a = life.action("migrate")
    created = life.at(S)
    life.event(
        a, "compute_prep_resize", ("cmp-d1", "fault-record"), result="Error", fault_host="cmp-d1"
    )
    life.event(a, "compute_prep_resize", ("cmp-d2", "migration-role"))
    life.event(a, "compute_resize_instance", ("cmp-s", "migration-role"))
    life.event(a, "compute_finish_resize", ("cmp-d2", "migration-role"))
    c = life.action("confirmResize", gap=MIN)
    life.event(c, "compute_confirm_resize", ("cmp-s", "migration-role"))
    # the reschedule overwrote dest_compute: only cmp-d2 is left
    life.migration("migration", "cmp-s", "cmp-d2", "confirmed", created=created, updated=life.t)
    life.generic("compute_stop_instance", "cmp-d2")
    return life.expect


def rescheduled_candidate_without_fault(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-d2")
    life.build("cmp-s")
    a = life.action("resize")
    created = life.at(S)
    life.event(a, "compute_prep_resize", (None, "rescheduled-candidate"), result="Error")
    life.event(a, "compute_prep_resize", ("cmp-d2", "migration-role"))
    life.event(a, "compute_resize_instance", ("cmp-s", "migration-role"))
    life.event(a, "compute_finish_resize", ("cmp-d2", "migration-role"))
    c = life.action("confirmResize", gap=MIN)
    life.event(c, "compute_confirm_resize", ("cmp-s", "migration-role"))
    life.migration("resize", "cmp-s", "cmp-d2", "confirmed", created=created, updated=life.t)
    return life.expect


def live_migration_completed(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-d")
    life.build("cmp-s")
    life.generic("compute_attach_volume", "cmp-s")
    a = life.action("live-migration")
    created = life.at(S)
    life.event(a, "conductor_live_migrate_instance", (None, "control-plane"))
    life.event(
        a,
        "compute_check_can_live_migrate_destination",
        (None, "rescheduled-candidate"),
        result="Error",
    )
    life.event(a, "compute_check_can_live_migrate_source", ("cmp-s", "migration-role"))
    life.event(a, "compute_check_can_live_migrate_destination", ("cmp-d", "migration-role"))
    life.event(a, "compute_check_can_live_migrate_source", ("cmp-s", "migration-role"))
    life.event(a, "compute_pre_live_migration", ("cmp-d", "migration-role"))
    life.event(a, "compute_live_migration", ("cmp-s", "migration-role"))
    life.event(a, "compute_post_live_migration_at_destination", ("cmp-d", "migration-role"))
    life.migration("live-migration", "cmp-s", "cmp-d", "completed", created=created, updated=life.t)
    life.generic("compute_detach_volume", "cmp-d")
    return life.expect


def live_migration_rolled_back(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-s")
    life.build("cmp-s")
    a = life.action("live-migration")
    created = life.at(S)
    life.event(a, "compute_check_can_live_migrate_destination", ("cmp-d", "migration-role"))
    life.event(a, "compute_pre_live_migration", ("cmp-d", "migration-role"))
    life.event(
        a, "compute_live_migration", ("cmp-s", "migration-role"), result="Error", fault_host="cmp-s"
    )
    life.event(a, "compute_rollback_live_migration_at_destination", ("cmp-d", "migration-role"))
    life.migration("live-migration", "cmp-s", "cmp-d", "failed", created=created, updated=life.t)
    life.generic("compute_reboot_instance", "cmp-s")
    return life.expect


def evacuation(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-d")
    life.build("cmp-s")
    a = life.action("evacuate")
    created = life.at(S)
    life.event(a, "rebuild_server", (None, "control-plane"))
    life.event(a, "compute_rebuild_instance", ("cmp-d", "migration-role"), took=2 * MIN)
    rebuilt = life.t
    life.generic("compute_reboot_instance", "cmp-d", gap=2 * MIN)
    # the old source came back days later and marked the migration completed
    life.migration(
        "evacuation", "cmp-s", "cmp-d", "completed", created=created, updated=rebuilt + 3 * DAY
    )
    life.generic("compute_stop_instance", "cmp-d", gap=5 * DAY)
    return life.expect


def shelve_offload_unshelve(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-new")
    life.build("cmp-old", "no-evidence")
    life.generic("compute_reboot_instance", "cmp-old", "no-evidence")
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", (None, "no-evidence"))
    life.event(s, "compute_shelve_offload_instance", (None, "no-evidence"))
    u = life.action("unshelve", gap=3 * DAY)
    life.event(u, "get_image_info", (None, "control-plane"))
    life.event(u, "compute_unshelve_instance", ("cmp-new", "host-timeline"))
    life.generic("compute_stop_instance", "cmp-new")
    return life.expect


def shelve_settled_by_a_fault(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-new")
    life.build("cmp-old")
    life.generic(
        "compute_reboot_instance", "cmp-old", "fault-record", result="Error", fault_host="cmp-old"
    )
    s = life.action("shelveOffload")
    life.event(s, "compute_shelve_offload_instance", ("cmp-old", "host-timeline"))
    u = life.action("unshelve")
    life.event(u, "compute_unshelve_instance", ("cmp-new", "host-timeline"))
    return life.expect


def recorded_half_settles_the_segment(h, t0) -> Expect:
    """A segment spanning the Rocky upgrade: Nova recorded its later events."""
    life = Life(h, t0, host=None, create_instance=True)
    life.build("cmp-r")
    life.generic("compute_stop_instance", "cmp-r")
    a = life.action("start")
    # Nova >= Rocky recorded this one itself: not examined, but it is evidence.
    life.h.event(
        life.uuid, a, "compute_start_instance", life.at(2 * S), life.at(5 * S), host="cmp-r"
    )
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", ("cmp-r", "host-timeline"))
    return life.expect


def deleted_instance_with_soft_deleted_migration(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-d", deleted=True)
    life.build("cmp-s")
    a = life.action("migrate")
    created = life.at(S)
    life.event(a, "compute_prep_resize", ("cmp-d", "migration-role"))
    life.event(a, "compute_resize_instance", ("cmp-s", "migration-role"))
    life.event(a, "compute_finish_resize", ("cmp-d", "migration-role"))
    c = life.action("confirmResize", gap=MIN)
    life.event(c, "compute_confirm_resize", ("cmp-s", "migration-role"))
    life.migration(
        "migration", "cmp-s", "cmp-d", "confirmed", created=created, updated=life.t, deleted=True
    )
    d = life.action("delete")
    life.event(d, "compute_terminate_instance", ("cmp-d", "host-timeline"))
    return life.expect


def missing_instance(h, t0) -> Expect:
    """Archived actions whose archived instance was purged (shadow tables have no FKs)."""
    life = Life(h, t0, host=None, create_instance=False)
    life.uuid = "00000000-dead-beef-0000-000000000001"
    h.archived.add(life.uuid)
    a = life.action("create", gap=S)
    life.event(a, "compute__do_build_and_run_instance", (None, "instance-missing"))
    life.generic("compute_reboot_instance", None, "instance-missing")
    return life.expect


def unknown_and_control_plane_events(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-a")
    a = life.build("cmp-a", "current-host")
    life.event(a, "schedule_instances", (None, "control-plane"))
    life.event(a, "api_lock", (None, "control-plane"))
    life.event(a, "frobnicate_instance", (None, "unknown-event"))
    return life.expect


def conflicting_evidence_is_ambiguous(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-now")
    life.build("cmp-x", "ambiguous")
    life.generic("compute_reboot_instance", "cmp-x", "ambiguous")
    a = life.action("stop")
    # Nova recorded another host inside the same segment: the evidence disagrees.
    life.h.event(
        life.uuid, a, "compute_stop_instance", life.at(2 * S), life.at(5 * S), host="cmp-y"
    )
    return life.expect


def event_during_a_move_is_in_flight(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-d")
    life.build("cmp-s")
    a = life.action("resize")
    created = life.at(S)
    life.event(a, "compute_prep_resize", ("cmp-d", "migration-role"))
    life.event(a, "compute_resize_instance", ("cmp-s", "migration-role"))
    life.event(a, "compute_finish_resize", ("cmp-d", "migration-role"))
    life.generic("compute_attach_interface", None, "move-in-flight", gap=MIN)
    c = life.action("confirmResize", gap=DAY)
    life.event(c, "compute_confirm_resize", ("cmp-s", "migration-role"))
    life.migration("resize", "cmp-s", "cmp-d", "confirmed", created=created, updated=life.t)
    return life.expect


def archived_history(h, t0) -> Expect:
    life = Life(h, t0, host="cmp-d", deleted=True, archived=True)
    life.build("cmp-s")
    a = life.action("live-migration")
    created = life.at(S)
    life.event(a, "compute_live_migration", ("cmp-s", "migration-role"))
    life.event(a, "compute_post_live_migration_at_destination", ("cmp-d", "migration-role"))
    life.migration(
        "live-migration",
        "cmp-s",
        "cmp-d",
        "completed",
        created=created,
        updated=life.t,
        deleted=True,
    )
    d = life.action("delete")
    life.event(d, "compute_terminate_instance", ("cmp-d", "host-timeline"))
    return life.expect


def conductor_fault_settles_nothing(h, t0) -> Expect:
    """NoValidHost is recorded by the conductor, under the conductor's host name."""
    life = Life(h, t0, host=None)
    life.build("cmp-old", "no-evidence")
    a = life.action("rebuild")
    life.event(a, "rebuild_server", (None, "control-plane"), result="Error", fault_host="ctl-1")
    life.generic("compute_reboot_instance", "cmp-old", "no-evidence")
    s = life.action("shelve")
    life.event(s, "compute_shelve_instance", ("cmp-old", "no-evidence"))
    return life.expect


SCENARIOS = [
    never_moved,
    resize_confirmed,
    resize_reverted,
    cold_migration_with_reschedule,
    rescheduled_candidate_without_fault,
    live_migration_completed,
    live_migration_rolled_back,
    evacuation,
    shelve_offload_unshelve,
    shelve_settled_by_a_fault,
    recorded_half_settles_the_segment,
    deleted_instance_with_soft_deleted_migration,
    missing_instance,
    unknown_and_control_plane_events,
    conflicting_evidence_is_ambiguous,
    event_during_a_move_is_in_flight,
    archived_history,
    conductor_fault_settles_nothing,
]

COMPUTE_HOSTS = (
    "cmp-a",
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
CONDUCTOR_HOSTS = ("ctl-1",)


def register_services(h: HistoryBuilder) -> None:
    """Every compute and conductor registers itself in ``services``, as in Nova."""
    for host in COMPUTE_HOSTS:
        h.service(host, "nova-compute")
    for host in CONDUCTOR_HOSTS:
        h.service(host, "nova-conductor")


def build_all(h: HistoryBuilder, start: datetime = datetime(2016, 6, 1), copies: int = 1) -> Expect:
    """Every scenario, ``copies`` times, each instance a month apart."""
    expect: Expect = {}
    register_services(h)
    t = start
    for _ in range(copies):
        for scenario in SCENARIOS:
            expect.update(scenario(h, t))
            t += timedelta(days=30)
    return expect
