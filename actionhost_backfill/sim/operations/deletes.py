"""Deletes (of resized instances too) and the archiver's shadow rows."""

from __future__ import annotations

from actionhost_backfill.nova.releases import Behaviour
from actionhost_backfill.sim.clock import db_time
from actionhost_backfill.sim.records import TERMINATE, Step


class Deletes:
    """Deletes (of resized instances too) and the archiver's shadow rows."""

    __slots__ = ()

    def delete(self) -> None:
        """``delete``: terminate on the host, or a local delete with no action."""
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        if self.resized is not None:
            self.delete_resized(s)
            return
        if self.host is None or self.offloaded:
            self.deleted(t0, beh)  # never scheduled or offloaded: _local_delete
            return
        a = s.action("delete", t0)
        ts = t0 + self.between(1, 3)
        s.start(ts, a, TERMINATE, self.host)
        te = ts + self.between(2, 20)
        s.finish(te, a, TERMINATE)
        s.commit()
        self.deleted(te, beh)

    def delete_resized(self, s: Step) -> None:
        """Delete of a RESIZED instance: a confirmResize then a delete, one request id."""
        m, _ = self.resized
        t0 = self.t
        beh = s.beh
        request_id = self.request_id()
        confirm = s.action("confirmResize", t0, request_id=request_id)
        cs = t0 + self.between(1, 2)
        s.start(cs, confirm, "compute_confirm_resize", m.source)  # a call, before 'delete' exists
        ce = cs + self.between(1, 10)
        s.finish(ce, confirm, "compute_confirm_resize")
        m.status, m.updated = "confirmed", ce
        delete = s.action("delete", t0, request_id=request_id)
        # The terminate event joins the oldest action of the request (Kilo-Pike), the newest (Queens).
        target = delete if beh.delete_events_go_to_newest_action else confirm
        ts = ce + self.between(1, 2)
        s.start(ts, target, TERMINATE, self.host)
        te = ts + self.between(2, 15)
        s.finish(te, target, TERMINATE)
        s.commit()
        self.save(m)
        self.resized = None
        self.deleted(te, beh)

    def deleted(self, at: int, beh: Behaviour) -> None:
        """instance_destroy at ``at``: what it soft-deletes depends on the release."""
        b = self.b
        self.t = max(self.t, at)
        self.deleted_at = at
        self.vm_state = "deleted"
        when = db_time(at)
        b.soft_delete_children("instance_faults", self.uuid, when, archived=self.archived)
        if beh.destroy_soft_deletes_system_metadata:
            b.soft_delete_children(
                "instance_system_metadata", self.uuid, when, archived=self.archived
            )
            self.write_shelve_keys(at)
        else:
            self.write_shelve_keys(None)  # Kilo leaves system metadata live
        if beh.destroy_soft_deletes_migrations:
            b.soft_delete_children("migrations", self.uuid, when, archived=self.archived)
        elif self.archived:  # Newton+'s archiver flags them, deleted_at stays NULL
            b.soft_delete_children("migrations", self.uuid, None, archived=True)
        for volume in self.volumes:  # _complete_deletion destroys every BDM
            if volume.deleted_at is None:
                volume.deleted_at = at
            self.write_volume(volume)
        self.volumes = []
        self.stale = []
        b.release(self.uuid)
