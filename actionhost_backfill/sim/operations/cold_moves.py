"""Resizes and cold migrations: reschedules, confirms, reverts, auto-confirms."""

from __future__ import annotations

from collections.abc import Generator

from actionhost_backfill.sim.records import (
    NO_VALID_HOST,
    NOT_ENOUGH_RESOURCES,
    PREP_RESIZE,
    Migration,
)


class ColdMoves:
    """Resizes and cold migrations: reschedules, confirms, reverts, auto-confirms."""

    __slots__ = ()

    def cold_move(self, resize: bool) -> Generator[int, None, None]:
        """``resize``/``migrate`` (docs/accuracy.md §3): candidates, claim, move, then confirm/revert."""
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        r = self.r
        source, source_node = self.host, self.node
        assert source is not None
        kind = "resize" if resize else "migration"
        flavors = (self.flavor, 1 + (self.flavor % 6) if resize else self.flavor)
        stopped_before = self.vm_state == "stopped"
        # Icehouse records a migrate as ``resize`` (no MIGRATE before 2014.2).
        a = s.action("resize" if resize or not beh.records_migrate_action else "migrate", t0)
        roll = r()
        rejected = 0 if r() >= self.rates.resize_rescheduled else (1 if r() < 0.8 else 2)
        if roll < 0.01:
            attempts = ["no-host"]
        else:
            attempts = ["rejected"] * rejected
            if rejected and r() < 0.1:
                attempts.append("no-host")  # the reschedule itself finds nothing
            elif roll < 0.02:
                attempts.append("prep-fail")
            else:
                attempts.append("accepted")
        outcome = "ok"
        if 0.02 <= roll < 0.04:
            outcome = "resize-fail-early"
        elif roll < 0.05:
            outcome = "resize-fail-late"
        elif roll < 0.06:
            outcome = "finish-fail"
        creator = beh.migration_row_creator
        row_kind = kind if beh.records_migration_type else None
        if creator == "conductor" and not self.sim.computes_at_least(t0, "queens"):
            # 17.0.0 should_do_migration_allocation: minimum compute version < 23
            # (a rolling window) -> no pre-allocated row; each destination creates one.
            creator = "dest-before-claim"
        rows: list[Migration] = []  # dest-created rows of this action (Kilo-Pike)
        tc = t0 + self.between(1, 2)
        shared: Migration | None = None
        if creator == "conductor":  # MT._preallocate_migration, before scheduling
            shared = self.reusable(kind)
            if shared is None:
                shared = self.new_migration(
                    row_kind, source, source_node, None, "pre-migrating", tc, flavors
                )
            rows.append(shared)
        tried: list[str | None] = [source]
        # allow_resize_to_same_host: the API does not add the source to ignore_hosts
        # (2015.1.0 / 17.0.0 API.resize), so the scheduler may pick it for a resize;
        # a cold migration to the same host needs a driver that supports it (not libvirt:
        # 17.0.0 ComputeManager._prep_resize UnableToMigrateToSelf).
        share = self.sim.options.same_host_resizes
        same_host = resize and share > 0 and r() < share
        waiting: str | None = None  # a rejected candidate blocked in its reschedule call
        prefixed = beh.conductor_prefixed_events
        m: Migration | None = None
        dest = None
        for attempt in attempts:
            ctl = self.ctl()
            if prefixed:
                s.start(tc, a, "conductor_migrate_server", ctl)
            s.start(tc, a, "cold_migrate", ctl)
            if attempt == "no-host":
                candidate = None
            elif same_host:
                candidate, same_host = source, False
            else:
                candidate = self.pick(*tried)
            if candidate is None:
                tf = tc + self.between(1, 2)
                s.fault(tf, ctl, NO_VALID_HOST)
                s.finish(tf, a, "cold_migrate", error=True)
                if prefixed:
                    s.finish(tf, a, "conductor_migrate_server", error=True)
                if shared is not None:  # Queens MigrationTask.rollback
                    shared.status = "error"
                    shared.updated = tf
                if waiting is not None:  # the exception comes back through the call
                    wf = tf + self.between(0, 1)
                    s.fault(wf, waiting, NO_VALID_HOST)
                    s.fault(wf, waiting, NOT_ENOUGH_RESOURCES)
                    s.finish(wf, a, PREP_RESIZE, error=True)
                    self.vm_state = "error"
                s.commit()
                self.save_rows(rows)
                return
            tried.append(candidate)
            cast = tc + self.between(1, 2)
            s.finish(cast, a, "cold_migrate")
            if prefixed:
                s.finish(cast, a, "conductor_migrate_server")
            p = cast + self.between(0, 2)
            s.start(p, a, PREP_RESIZE, candidate)
            c_creator, c_kind = creator, row_kind
            if creator != "conductor" and self.sim.rolling is not None:
                # The candidate's resource tracker creates the row as its release
                # does: Kilo after the claim test and untyped (2015.1.0 RT.resize_claim).
                c_beh = self.sim.compute_behaviour(candidate, p, beh)
                kilo = c_beh.migration_row_creator == "dest-after-claim"
                c_creator = "dest-after-claim" if kilo else "dest-before-claim"
                c_kind = kind if c_beh.records_migration_type else None
            if waiting is not None:  # its call returned: fault and finish after p
                wf = p + self.between(0, 1)
                s.fault(wf, waiting, NOT_ENOUGH_RESOURCES)
                s.finish(wf + self.between(0, 1), a, PREP_RESIZE)
                waiting = None
            claim = p + self.between(0, 1)
            row = shared
            if c_creator == "dest-before-claim":
                row = self.new_migration(
                    c_kind, source, source_node, None, "pre-migrating", claim, flavors
                )
                self.claim_dest(row, candidate, claim)
                row.updated = None  # created, not saved again
                rows.append(row)
            elif creator == "conductor":
                self.claim_dest(shared, candidate, claim)
            if attempt == "rejected":
                waiting = candidate
                if c_creator == "dest-before-claim" and c_kind is not None:
                    self.stale.append(row)
                tc = claim + self.between(1, 2)
                continue
            if attempt == "prep-fail":  # no retry: the original exception is raised
                tf = claim + self.between(1, 2)
                s.fault(tf, candidate, NOT_ENOUGH_RESOURCES)
                s.finish(tf, a, PREP_RESIZE, error=True)
                if c_creator == "dest-before-claim" and c_kind is not None:
                    self.stale.append(row)
                elif creator == "conductor":
                    shared.status = "error"
                    shared.updated = tf
                self.vm_state = "error"
                s.commit()
                self.save_rows(rows)
                return
            dest = candidate
            if c_creator == "dest-after-claim":  # Kilo: only the accepted claim leaves a row
                row = self.new_migration(
                    c_kind, source, source_node, None, "pre-migrating", claim, flavors
                )
                self.claim_dest(row, candidate, claim)
                row.updated = None
                rows.append(row)
            m = row
        assert m is not None and dest is not None
        cast = claim + self.between(0, 1)
        s.finish(cast + self.between(0, 1), a, PREP_RESIZE)
        rs = cast + self.between(0, 2)
        s.start(rs, a, "compute_resize_instance", source)
        if outcome == "resize-fail-early":  # before 'migrating' was saved
            tf = rs + self.between(1, 3)
            self.fail(s, a, "compute_resize_instance", source, tf)
            if self.sim.compute_behaviour(source, tf, beh).errors_out_migrations_always:
                m.status, m.updated = "error", tf
            elif m.kind is not None:
                self.stale.append(m)
            self.vm_state = "error"
            s.commit()
            self.save_rows(rows)
            return
        m.status, m.updated = "migrating", rs + 1
        transfer = self.between(20, 200)
        if outcome == "resize-fail-late":
            tf = rs + 1 + self.between(5, transfer)
            self.fail(s, a, "compute_resize_instance", source, tf)
            m.status, m.updated = "error", tf
            self.vm_state = "error"
            s.commit()
            self.save_rows(rows)
            return
        moved = rs + 1 + transfer
        m.status, m.updated = "post-migrating", moved
        self.move_to(dest)  # end of resize_instance: instances.host := dest
        s.finish(moved + self.between(1, 2), a, "compute_resize_instance")
        fs = moved + self.between(1, 2)
        s.start(fs, a, "compute_finish_resize", dest)
        self.refresh_volumes(dest, fs + 1, beh)
        if outcome == "finish-fail":
            tf = fs + self.between(2, 20)
            self.fail(s, a, "compute_finish_resize", dest, tf)
            m.status, m.updated = "error", tf
            self.vm_state = "error"
            s.commit()
            self.save_rows(rows)
            return
        fe = fs + self.between(5, 60)
        self.launched_at = fe - self.between(0, 1)
        m.status, m.updated = "finished", fe
        s.finish(fe, a, "compute_finish_resize")
        self.vm_state = "resized"
        s.commit()
        self.save_rows([row for row in rows if row is not m])
        self.flavor = flavors[1]
        self.resized = (m, stopped_before)
        yield from self.settle_resize(fe)

    def reusable(self, kind: str) -> Migration | None:
        """Queens' conductor reuses any live pre-migrating row of this instance and type.

        MigrationList.get_by_filters without ORDER BY: the lowest id in practice
        (docs/accuracy.md §3, Queens row; 17.0.0 MT:_preallocate_migration); it keeps its
        old created_at and source columns.
        """
        for m in self.stale:
            if m.kind == kind and m.status == "pre-migrating":
                self.stale.remove(m)
                return m
        return None

    def save_rows(self, rows: list[Migration]) -> None:
        for row in rows:
            self.save(row)

    def settle_resize(self, finished: int) -> Generator[int, None, None]:
        """A RESIZED instance waits for confirm, revert, auto-confirm or delete."""
        m, _ = self.resized
        r = self.r
        revert = r() < self.rates.resize_reverted
        auto = not revert and self.sim.auto_confirm[m.dest] and r() < 0.5
        if auto:  # the dest's _poll_unconfirmed_resizes after resize_confirm_window
            when = finished + self.rates.auto_confirm_window + self.between(0, 60)
        else:
            when = finished + self.between(120, 6 * 3600)
        if self.deletes_resized:  # its owner deletes it instead of confirming
            self.end = min(self.end, when)
        if self.fate_deleted and self.end <= when:
            when = max(self.end, finished + 60)
            yield when
            self.t = when
            self.delete()
            return
        if when >= self.sim.end:
            return
        yield when
        self.t = when
        if revert:
            self.revert_resize()
        else:
            self.confirm_resize(auto)

    def confirm_resize(self, auto: bool) -> None:
        m, stopped_before = self.resized
        t0 = self.t
        s = self.step_for(t0)
        # Auto-confirm runs in the dest's periodic task: an admin context (no user/project).
        a = s.action("confirmResize", t0, user=not auto)
        m.status, m.updated = "confirming", t0
        cs = t0 + self.between(1, 3)
        s.start(cs, a, "compute_confirm_resize", m.source)  # cast to the row's source
        ce = cs + self.between(1, 10)
        s.finish(ce, a, "compute_confirm_resize")
        m.status, m.updated = "confirmed", ce
        s.commit()
        self.save(m)
        self.resized = None
        self.vm_state = "stopped" if stopped_before else "active"

    def revert_resize(self) -> None:
        m, stopped_before = self.resized
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        a = s.action("revertResize", t0)
        m.status, m.updated = "reverting", t0
        rs = t0 + self.between(1, 3)
        s.start(rs, a, "compute_revert_resize", m.dest)
        reverted = rs + self.between(2, 20)
        m.status, m.updated = "reverted", reverted  # written by the dest, before the move back
        s.finish(reverted + self.between(0, 1), a, "compute_revert_resize")
        fs = reverted + self.between(1, 2)
        source = m.source
        s.start(fs, a, "compute_finish_revert_resize", source)
        self.host, self.node = source, m.source_node  # at its start
        if self.sim.compute_behaviour(source, fs, beh).revert_copies_source_into_dest_compute:
            m.dest, m.updated = m.source, fs + 1  # dest_node keeps the real destination
        self.refresh_volumes(source, fs + 1, beh)
        if stopped_before:  # CM:finish_revert_resize calls the decorated stop_instance
            ss = fs + self.between(5, 30)
            s.start(ss, a, "compute_stop_instance", source)
            s.finish(ss + self.between(1, 5), a, "compute_stop_instance")
            fe = ss + self.between(5, 8)
        else:
            fe = fs + self.between(5, 40)
        self.launched_at = fe - self.between(0, 1)
        s.finish(fe, a, "compute_finish_revert_resize")
        s.commit()
        self.save(m)
        self.resized = None
        self.flavor = m.old_flavor
        self.vm_state = "stopped" if stopped_before else "active"
