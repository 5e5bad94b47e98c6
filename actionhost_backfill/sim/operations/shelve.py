"""Shelve, offload (explicit and periodic) and unshelve."""

from __future__ import annotations

from actionhost_backfill.sim.clock import db_time
from actionhost_backfill.sim.records import SHELVE_OFFLOAD


class Shelving:
    """Shelve, offload (explicit and periodic) and unshelve."""

    __slots__ = ()

    def shelve(self) -> None:
        """``shelve`` (docs/accuracy.md §6): offloaded at once unless the host waits."""
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        host = self.host
        assert host is not None
        a = s.action("shelve", t0)
        ss = t0 + self.between(1, 3)
        if self.bfv:  # volume-backed: the API casts shelve_offload_instance directly
            end = ss + self.between(5, 30)
            if self.sim.compute_behaviour(
                host, ss, beh
            ).records_volume_interface_image_lock_actions:  # the compute's event
                s.start(ss, a, SHELVE_OFFLOAD, host)
                s.finish(end, a, SHELVE_OFFLOAD)
            s.commit()
            self.offload()
            return
        s.start(ss, a, "compute_shelve_instance", host)
        if self.r() < self.rates.generic_fails:  # the snapshot failed
            self.fail(s, a, "compute_shelve_instance", host, ss + self.between(5, 60))
            s.commit()
            return
        snap = ss + self.between(20, 200)
        b = self.b
        stamp = f"{db_time(snap).isoformat()}.{self.between(0, 999999):06d}"
        image = self.random_uuid()
        self.shelve_keys = [
            (b.next_id("instance_system_metadata"), key, value, snap)
            for key, value in (
                ("shelved_at", stamp),
                ("shelved_image_id", image),
                ("shelved_host", host),
            )
        ]
        if self.sim.offload_later[host]:  # shelved_offload_time > 0: stays on its host
            s.finish(snap + self.between(1, 5), a, "compute_shelve_instance")
            s.commit()
            self.vm_state = "shelved"
            self.shelved_at = snap
            due = snap + self.rates.shelved_offload_time + self.between(0, 3600)
            self.defer(due, lambda when: self.periodic_offload(when, snap))
            return
        end = snap + self.between(5, 20)  # offloaded inside the same event
        s.finish(end, a, "compute_shelve_instance")
        s.commit()
        self.offload()

    def offload(self) -> None:
        self.move_to(None)  # launched_on and the shelved_* keys stay
        self.vm_state = "shelved_offloaded"
        self.offloaded = True
        self.shelved_at = None
        self.new_attachments()

    def periodic_offload(self, t: int, shelved_at: int) -> None:
        """_poll_shelved_instances: no action; Queens records the event on the latest one."""
        if self.shelved_at != shelved_at or self.deleted_at is not None:
            return  # unshelved (and maybe shelved again) since
        s = self.step_for(t)
        host_beh = self.sim.compute_behaviour(self.host, t, s.beh)
        if host_beh.records_volume_interface_image_lock_actions:  # the compute's task
            a = s.latest_action()
            s.start(t, a, SHELVE_OFFLOAD, self.host)
            s.finish(t + self.between(5, 30), a, SHELVE_OFFLOAD)
            s.commit()
        self.offload()

    def explicit_offload(self) -> None:
        """``shelveOffload``: an action and event only from Queens."""
        t0 = self.t
        s = self.step_for(t0)
        if s.beh.records_volume_interface_image_lock_actions:
            a = s.action("shelveOffload", t0)
            start = t0 + self.between(1, 3)
            took = self.between(5, 30)
            if self.sim.compute_behaviour(
                self.host, start, s.beh
            ).records_volume_interface_image_lock_actions:  # the compute's event
                s.start(start, a, SHELVE_OFFLOAD, self.host)
                s.finish(start + took, a, SHELVE_OFFLOAD)
            s.commit()
        self.offload()

    def unshelve(self) -> None:
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        r = self.r
        a = s.action("unshelve", t0)
        if not self.offloaded:  # still SHELVED: the conductor casts start_instance
            host = self.host
            if beh.conductor_soft_deletes_shelve_keys:
                self.write_shelve_keys(t0 + self.between(1, 2))
            start = t0 + self.between(1, 3)
            s.start(start, a, "compute_start_instance", host)
            s.finish(start + self.between(2, 30), a, "compute_start_instance")
            s.commit()
            self.shelve_keys = None  # Liberty+: start_instance hard-deletes them
            self.vm_state = "active"
            self.shelved_at = None
            return
        ctl = self.ctl()
        t = t0 + self.between(1, 2)
        if self.shelve_keys is not None:  # only with a shelved_image_id
            s.start(t, a, "get_image_info", ctl)
            s.finish(t + self.between(0, 1), a, "get_image_info")
            t += self.between(1, 2)
        s.start(t, a, "schedule_instances", ctl)
        if r() < self.rates.unshelve_no_host:  # Error, no fault, still offloaded
            s.finish(t + self.between(1, 3), a, "schedule_instances", error=True)
            s.commit()
            return
        new = self.pick()
        assert new is not None
        cast = t + self.between(1, 2)
        s.finish(cast + self.between(0, 1), a, "schedule_instances")
        if beh.conductor_soft_deletes_shelve_keys:  # Kilo: right after the cast
            self.write_shelve_keys(cast + self.between(0, 1))
        us = cast + self.between(0, 2)
        s.start(us, a, "compute_unshelve_instance", new)
        self.move_to(new)  # instance_claim: host, node and launched_on
        self.launched_on = new
        self.refresh_volumes(new, us + 2, beh)
        if r() < self.rates.unshelve_fails:
            self.fail(s, a, "compute_unshelve_instance", new, us + self.between(5, 60))
            if self.sim.compute_behaviour(new, us, beh).unshelve_claim_abort_nulls_host:
                self.move_to(None)
            s.commit()
            return
        end = us + self.between(20, 120)
        self.launched_at = end - self.between(0, 1)
        s.finish(end, a, "compute_unshelve_instance")
        s.commit()
        self.shelve_keys = None  # Liberty+: hard-deleted on success
        self.offloaded = False
        self.vm_state = "active"

    def write_shelve_keys(self, deleted_at: int | None) -> None:
        if self.shelve_keys is None:
            return
        for row_id, key, value, created in self.shelve_keys:
            self.b.system_metadata(
                self.uuid,
                key,
                value,
                db_time(created),
                deleted_at=db_time(deleted_at) if deleted_at is not None else None,
                archived=self.archived,
                row_id=row_id,
            )
        self.shelve_keys = None
