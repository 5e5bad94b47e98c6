"""``create``: scheduling, reschedules, failed builds and cell0."""

from __future__ import annotations

from actionhost_backfill.sim.clock import DAY, db_time
from actionhost_backfill.sim.records import NO_VALID_HOST, NOT_ENOUGH_RESOURCES, Volume


class Builds:
    """``create``: scheduling, reschedules, failed builds and cell0."""

    __slots__ = ()

    def build(self) -> bool:
        """``create``; False when Nova (Ocata+) buried the instance in cell0."""
        r = self.r
        b = self.b
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        first_fails = r() < self.rates.build_first_scheduling_fails
        if first_fails and beh.buries_unschedulable_builds_in_cell0:
            return False  # schedule_and_build_instances -> _bury_in_cell0: nothing in this cell
        rejected = 0 if r() >= self.rates.build_rescheduled else (1 if r() < 0.7 else 2)
        fails = r() < self.rates.build_fails
        no_host_left = fails and rejected > 0 and r() < 0.5  # a reschedule found none
        if (first_fails or fails) and not self.fate_deleted and r() < 0.7:
            self.fate_deleted = True  # most failed builds get deleted soon (die())
        if self.fate_deleted:
            b.hold(self.uuid)
        b.instance(
            self.uuid,
            host=None,
            project_id=self.project,
            user_id=self.user,
            created_at=db_time(t0),
            archived=self.archived,
            vm_state="building",
            launched_on=None,
        )
        for key, value in (
            ("image_base_image_ref", self.random_uuid()),
            ("image_min_disk", "20" if self.bfv else "0"),
            ("image_disk_format", "qcow2"),
        ):
            b.system_metadata(self.uuid, key, value, db_time(t0), archived=self.archived)
        if self.bfv:  # the API creates the boot volume's BDM before any host is chosen
            self.volumes.append(Volume(b.next_id("block_device_mapping"), t0, boot=True))
        a = s.action("create", t0)
        if first_fails:  # Kilo-Newton: the conductor's fault, an action with no events
            s.fault(t0 + self.between(2, 5), self.ctl(), NO_VALID_HOST)
            s.commit()
            self.die(t0 + 5)
            return True
        tried: list[str] = []
        claimed: str | None = None  # the last candidate whose claim set instances.host
        t = t0 + self.between(2, 6)
        build = beh.build_event
        for _ in range(rejected + (0 if no_host_left else 1)):
            candidate = self.pick(*tried)
            if candidate is None:
                no_host_left = True
                break
            tried.append(candidate)
            last = len(tried) == rejected + 1
            s.start(t, a, build, candidate)
            if last and not fails:  # the build that worked
                claimed = candidate
                self.launched_on = candidate
                self.refresh_volumes(candidate, t + 2, beh)
                end = t + self.between(20, 90)
                self.launched_at = end - self.between(0, 2)
                s.finish(end, a, build)
                self.move_to(candidate)
                self.vm_state = "active"
                s.commit()
                return True
            if r() < 0.5:  # the claim passed (host/node/launched_on set), then spawn failed
                claimed = candidate
                self.launched_on = candidate
                self.refresh_volumes(candidate, t + 2, beh)
                end = t + self.between(10, 60)
            else:  # ComputeResourcesUnavailable from the claim: no host write
                end = t + self.between(1, 3)
            if last and beh.final_build_failure_is_error:
                # Icehouse: an error that is not rescheduled re-raises from
                # _run_instance (2014.1 CM ~1203): the fault, then Error.
                self.fail(s, a, build, candidate, end)
                t = end + self.between(2, 8)
                continue
            if last:  # no retry left: this compute's fault, and still Success (accuracy §2)
                s.fault(
                    end - 1 if end - 1 > t else end,
                    candidate,
                    f"Build of instance {self.uuid} aborted",
                )
            elif beh.reschedule_records_fault:
                # Icehouse _reschedule_or_error (2014.1 CM ~1383): the candidate's own
                # fault, then the RescheduledException is swallowed (Success).
                s.fault(end, candidate, NOT_ENOUGH_RESOURCES)
            s.finish(end, a, build)  # a rescheduled attempt: Success (no fault from Juno)
            t = end + self.between(2, 8)
        if no_host_left:
            message = (
                f"Exceeded max scheduling attempts 3 for instance {self.uuid}."
                if len(tried) >= 3
                else NO_VALID_HOST
            )
            s.fault(t, self.ctl(), message)
        s.commit()
        # Kilo keeps the last claimed candidate as instances.host; Liberty+ nulls it
        # (each failing compute, in a rolling window: any later Liberty+ attempt).
        nulls = claimed is not None and any(
            self.sim.compute_behaviour(h, t, beh).nulls_host_after_failed_build
            for h in tried[tried.index(claimed) :]
        )
        self.move_to(None if nulls or claimed is None else claimed)
        self.die(t)
        return True

    def die(self, t: int) -> None:
        """A build that failed for good: ERROR; most get deleted soon after."""
        self.dead = True
        self.vm_state = "error"
        self.t = t
        if self.fate_deleted:
            self.end = min(self.end, self.sim.end - 1, t + self.between(3600, 3 * DAY))
