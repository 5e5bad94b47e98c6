"""Evacuations and the source compute's later restart."""

from __future__ import annotations

from actionhost_backfill.sim.clock import DAY
from actionhost_backfill.sim.records import NO_VALID_HOST, Migration


class Evacuations:
    """Evacuations and the source compute's later restart."""

    __slots__ = ()

    def evacuate(self) -> None:
        """``evacuate`` from a host whose nova-compute is down (docs/accuracy.md §5)."""
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        r = self.r
        source, source_node = self.host, self.node
        assert source is not None
        a = s.action("evacuate", t0)
        conductor = beh.rebuild_through_conductor
        # Icehouse's API requires the host and casts to it (2014.1 CA evacuate ~3023).
        named = (
            self.pick(source) if not conductor or r() < self.rates.evacuation_named_host else None
        )
        # Liberty/Mitaka force a named host; Newton+ only with force=True.
        forced = named is not None and (not beh.conductor_prefixed_events or r() < 0.5)
        m = None
        if beh.evacuation_row:  # the API's tombstone for the source to clean up
            # Created by nova-api's API.evacuate (12.0.0+): its clock, like the action's.
            m = self.new_migration(
                "evacuation",
                source,
                source_node,
                named,
                "accepted",
                t0 + a.shift,
                (self.flavor, self.flavor),
            )
            self.evacuations.append(m)
        ctl = self.ctl()
        rs = t0 + self.between(1, 2)
        if conductor:
            s.start(rs, a, "rebuild_server", ctl)
        # The conductor's .first() on status 'accepted', no ORDER BY: the oldest row.
        looked = next((e for e in self.evacuations if e.status == "accepted"), None)
        dest = named or self.pick(source)
        if dest is None or (conductor and not forced and r() < self.rates.evacuation_no_host):
            tf = rs + self.between(1, 2)
            for _ in range(beh.evacuation_no_valid_host_faults):
                s.fault(tf, ctl, NO_VALID_HOST)
            s.finish(tf, a, "rebuild_server", error=True)
            if looked is not None and beh.evacuation_no_valid_host_status == "error":
                looked.status, looked.updated = "error", tf
                self.vm_state = "error"
            s.commit()
            self.save_evacuations(m, looked)
            self.maybe_restart(source, t0)
            return
        cast = rs + self.between(1, 2)
        if conductor:
            s.finish(cast, a, "rebuild_server")
        cs = cast + self.between(0, 2)
        s.start(cs, a, "compute_rebuild_instance", dest)
        fails = r() < self.rates.evacuation_fails
        # Rolling windows: the destination's release rebuilds, and while any
        # compute runs Kilo the RPC drops the row (12.0.0 ComputeAPI.rebuild_instance
        # below 4.5): nobody claims or completes it.
        dest_beh = self.sim.compute_behaviour(dest, cs, beh)
        if not self.sim.computes_at_least(cs, "liberty"):
            looked = None
        if dest_beh.evacuation_sets_host_before_spawn:  # Kilo
            if fails and r() < 0.3:  # raised before the host was saved
                self.fail(s, a, "compute_rebuild_instance", dest, cs + self.between(1, 3))
                self.vm_state = "error"
            else:
                hs = cs + self.between(1, 2)
                self.move_to(dest)
                self.refresh_volumes(dest, hs + 1, beh)
                if fails:
                    self.fail(s, a, "compute_rebuild_instance", dest, hs + self.between(5, 60))
                    self.vm_state = "error"
                else:
                    ce = hs + self.between(20, 120)
                    self.launched_at = ce - self.between(0, 1)
                    s.finish(ce, a, "compute_rebuild_instance")
                    self.vm_state = "active"
        else:
            if looked is not None and not (forced and dest_beh.forced_evacuation_skips_claim):
                self.claim_dest(looked, dest, cs + 1)  # rebuild claim on the looked-up row
            self.refresh_volumes(dest, cs + 2, beh)
            if fails:
                tf = cs + self.between(5, 60)
                self.fail(s, a, "compute_rebuild_instance", dest, tf)
                if looked is not None:
                    looked.status, looked.updated = "failed", tf
                self.vm_state = "error"
            else:
                ce = cs + self.between(20, 120)
                self.launched_at = ce - self.between(1, 2)
                self.move_to(dest)  # host, then 'done', at the very end
                if looked is not None:
                    looked.status, looked.updated = "done", ce
                s.finish(ce, a, "compute_rebuild_instance")
                self.vm_state = "active"
        s.commit()
        self.save_evacuations(m, looked)
        self.maybe_restart(source, t0)

    def save_evacuations(self, own: Migration | None, looked: Migration | None) -> None:
        if own is not None:
            self.save(own)
        if looked is not None and looked is not own:
            self.save(looked)

    def maybe_restart(self, source: str, t: int) -> None:
        """The old source's nova-compute comes back days later (init_host)."""
        if self.r() < self.rates.evacuated_source_restarts:
            self.defer(
                t + self.between(DAY // 2, 10 * DAY),
                lambda when: self.source_restarted(source, when),
            )

    def source_restarted(self, source: str, t: int) -> None:
        """_destroy_evacuated_instances: one row of this instance becomes 'completed'."""
        beh = self.sim.compute_behaviour(source, t)  # the restarted compute's release
        if not beh.completes_evacuations:
            return
        if self.deleted_at is not None and (
            not beh.completes_evacuations_of_deleted or self.archived
        ):
            return
        rows = [
            e
            for e in self.evacuations
            if e.source == source and e.status in beh.completes_evacuations
        ]
        if rows:  # {uuid: mig for mig in evacuations}: the last row of the query wins
            row = rows[-1]
            row.status, row.updated = "completed", t
            self.save(row)
