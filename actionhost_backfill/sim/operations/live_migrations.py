"""Live migrations: rejected candidates, rollbacks and aborts, the drains."""

from __future__ import annotations

from actionhost_backfill.sim.records import (
    DEST_CHECK,
    FAILED,
    NO_VALID_HOST,
    SOURCE_CHECK,
    Action,
    Step,
)


class LiveMigrations:
    """Live migrations: rejected candidates, rollbacks and aborts, the drains."""

    __slots__ = ()

    def live_migrate(self, drain: bool = False) -> None:
        """``live-migration`` (docs/accuracy.md §4); ``drain``: one of host-evacuate-live's."""
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        r = self.r
        sim = self.sim
        nodes = sim.nodes
        source, source_node = self.host, self.node
        assert source is not None
        if not beh.live_migration_action and self.vm_state != "active":
            # Icehouse/Juno: CA live_migrate requires vm_state ACTIVE (2014.1 ~3007).
            self.generic("reboot")
            return
        # Icehouse/Juno record no action at all (a silent move: only faults remain).
        a = s.action("live-migration", t0) if beh.live_migration_action else None
        recorded = beh.live_migration_recorded  # the conductor's row
        # Rolling windows: each end records its own steps as its release does
        # (2015.1.0 wraps none of them), and while any compute runs Kilo the RPC
        # drops the row (12.0.1 ComputeAPI.live_migration below 4.2): no compute
        # moves it on.  Without rolling windows these are the era's.
        src_beh = sim.compute_behaviour(source, t0, beh)
        rec_src = src_beh.live_migration_recorded
        rows_move = sim.computes_at_least(t0, "liberty")
        forced = not drain and r() < self.rates.live_migration_forced
        forced_host = self.pick(source) if forced else None
        ctl = self.ctl()
        t = t0 + self.between(1, 2)
        conductor_event = None
        if beh.conductor_prefixed_events:
            conductor_event = (
                "conductor_live_migrate_instance" if r() < 0.6 else "conductor_migrate_server"
            )
            s.start(t, a, conductor_event, ctl)
        m = None
        if recorded:  # the conductor's row; dest_compute only when the API forced a host
            m = self.new_migration(
                "live-migration",
                source,
                None,
                forced_host,
                beh.live_migration_first_status,
                t + self.between(0, 1),
                (self.flavor, self.flavor),
            )
        rejected = (
            0 if forced or r() >= self.rates.live_migration_rejected else (1 if r() < 0.7 else 2)
        )
        no_host = r() < self.rates.live_migration_no_host
        tried: list[str | None] = [source]
        t += self.between(1, 2)
        dest = None
        for k in range(rejected + 1):
            last = k == rejected
            if last and no_host and not forced:
                break
            candidate = forced_host if forced else self.pick(*tried)
            if candidate is None:
                break
            tried.append(candidate)
            if not last or no_host:
                t = self.reject_live_candidate(s, a, candidate, source, t)
                continue
            rec_dest = sim.compute_behaviour(candidate, t, beh).live_migration_recorded
            ds = t
            if rec_dest:
                s.start(ds, a, DEST_CHECK, candidate)
            ss = ds + self.between(0, 1)
            if rec_src:
                s.start(ss, a, SOURCE_CHECK, source)
            if src_beh.source_check_refreshes_connection:
                self.refresh_volumes(source, ss, beh)
            se = ss + self.between(1, 2)
            de = se + self.between(0, 1)
            if rec_src:
                s.finish(se, a, SOURCE_CHECK)
            if rec_dest:
                s.finish(de, a, DEST_CHECK)
            t = de
            dest = candidate
        if dest is None:  # NoValidHost / MigrationPreCheckError: the conductor's fault
            tf = t + self.between(0, 1)
            s.fault(tf, ctl, NO_VALID_HOST if not forced else "Migration pre-check error")
            if conductor_event:
                s.finish(tf, a, conductor_event, error=True)
            if m is not None:
                m.status, m.updated = "error", tf
            s.commit()
            if m is not None:
                self.save(m)
            return
        if m is not None:
            m.dest = dest
            if beh.live_migration_nodes:
                m.source_node, m.dest_node = source_node, nodes[dest]
            m.updated = t + 1
        dest_beh = sim.compute_behaviour(dest, t, beh)
        rec_dest = dest_beh.live_migration_recorded
        cast = t + self.between(1, 2)
        if conductor_event:
            s.finish(cast + self.between(0, 1), a, conductor_event)
        ls = cast + self.between(0, 1)
        if rec_src:  # returns at once: the migration runs in a spawned thread
            s.start(ls, a, "compute_live_migration", source)
            s.finish(ls + self.between(0, 1), a, "compute_live_migration")
        ps = ls + self.between(1, 3)
        if rec_dest:
            s.start(ps, a, "compute_pre_live_migration", dest)
        self.refresh_volumes(dest, ps + 1, beh)
        shared_storage = r() < 0.5
        failed_status = src_beh.live_migration_failed_status
        m_moves = m if rows_move else None  # else no compute sees the row: first status
        roll = r()
        if roll < self.rates.live_migration_rollback * 0.3:  # pre_live_migration raised
            tf = ps + self.between(1, 10)
            s.fault(tf, dest, FAILED)
            if not rec_src:  # Kilo's synchronous live_migration is wrapped too
                s.fault(tf, source, FAILED)
            if rec_dest:
                s.finish(tf, a, "compute_pre_live_migration", error=True)
            self.rollback_at_destination(s, a, dest, tf, rec_dest, shared_storage)
            if m_moves is not None:
                m.status, m.updated = failed_status, tf + 1
            s.commit()
            if m is not None:
                self.save(m)
            return
        pe = ps + self.between(2, 15)
        if rec_dest:
            s.finish(pe, a, "compute_pre_live_migration")
        running = pe + self.between(0, 1)
        duration = self.between(20, 600)
        if roll < self.rates.live_migration_rollback:
            if beh.live_migration_abort and r() < 0.4:  # the user's abort: JOB_CANCELLED
                ct = running + self.between(5, max(6, duration - 1))
                ca = s.action("live_migration_cancel", ct)
                ab = ct + self.between(1, 2)
                s.start(ab, ca, "compute_live_migration_abort", source)
                s.finish(ab + self.between(0, 2), ca, "compute_live_migration_abort")
                end, status = ab + self.between(1, 5), "cancelled"
            else:  # libvirt's job failed: rollback, no fault
                end, status = running + self.between(10, duration), "error"
            self.rollback_at_destination(s, a, dest, end, rec_dest, shared_storage)
            if m_moves is not None:
                m.status, m.updated = status, end + 1
            s.commit()
            if m is not None:
                self.save(m)
            return  # the BDMs keep the dest's connector (no restore before 17.0.11)
        if beh.live_migration_force_complete and r() < 0.03:
            fc = running + self.between(5, duration)
            fa = s.action("live_migration_force_complete", fc)
            s.start(fc + 1, fa, "compute_live_migration_force_complete", source)
            s.finish(fc + 1 + self.between(0, 2), fa, "compute_live_migration_force_complete")
        post = running + duration
        if rec_dest:
            s.start(post, a, "compute_post_live_migration_at_destination", dest)
        roll = r()
        if roll < 0.01:  # the driver's post step failed on the dest
            tf = post + self.between(1, 5)
            s.fault(tf, dest, FAILED)
            if rec_dest:
                s.finish(tf, a, "compute_post_live_migration_at_destination", error=True)
            if dest_beh.host_moves_despite_post_failure:
                self.move_to(dest)  # saved in a ``finally`` from Mitaka
                self.vm_state = "error"
            done = tf + self.between(0, 2)
            status = "completed"
        else:
            self.move_to(dest)  # the only place an LM changes instances.host
            self.new_attachments()  # Queens: pre_live_migration made new attachments
            pe2 = post + self.between(1, 4)
            if rec_dest:
                s.finish(pe2, a, "compute_post_live_migration_at_destination")
            if src_beh.post_at_destination_is_call:
                done = pe2 + self.between(0, 2)
            else:  # a cast: the source may write 'completed' first
                done = post + self.between(0, 5)
            status = "completed"
            if roll < 0.02:  # _post_live_migration failed after the flip (source cleanup)
                s.fault(done, source, FAILED)
                status = failed_status
        if m_moves is not None:
            m.status, m.updated = status, done
        s.commit()
        if m is not None:
            self.save(m)

    def reject_live_candidate(self, s: Step, a: Action, candidate: str, source: str, t: int) -> int:
        """One candidate LMT._find_destination skipped; returns when the loop goes on.

        Each end records its check as its own release does (rolling windows).
        """
        beh = s.beh
        src_beh = self.sim.compute_behaviour(source, t, beh)
        rec_src = src_beh.live_migration_recorded
        rec_dest = self.sim.compute_behaviour(candidate, t, beh).live_migration_recorded
        roll = self.r()
        if roll < 0.3:  # _check_compatible_with_source_hypervisor, in the conductor
            return t + self.between(0, 1)
        if rec_dest:
            s.start(t, a, DEST_CHECK, candidate)
        if roll < 0.65:  # the candidate's own check raised
            tf = t + self.between(1, 3)
            s.fault(tf, candidate, "Unacceptable CPU info")
            if rec_dest:
                s.finish(tf, a, DEST_CHECK, error=True)
            return tf + self.between(0, 1)
        ss = t + self.between(0, 1)  # the nested source check raised
        if rec_src:
            s.start(ss, a, SOURCE_CHECK, source)
        if src_beh.source_check_refreshes_connection:
            self.refresh_volumes(source, ss, beh)
        sf = ss + self.between(1, 2)
        s.fault(sf, source, "Migration pre-check error")
        if rec_src:
            s.finish(sf, a, SOURCE_CHECK, error=True)
        tf = sf + self.between(0, 1)
        s.fault(tf, candidate, "Migration pre-check error")
        if rec_dest:
            s.finish(tf, a, DEST_CHECK, error=True)
        return tf + self.between(0, 1)

    def rollback_at_destination(
        self, s: Step, a: Action, dest: str, t: int, recorded: bool, shared_storage: bool
    ) -> None:
        """Cast only when the instance path is not shared (do_cleanup)."""
        if recorded and not shared_storage:
            rb = t + self.between(0, 2)
            s.start(rb, a, "compute_rollback_live_migration_at_destination", dest)
            s.finish(rb + self.between(1, 10), a, "compute_rollback_live_migration_at_destination")
