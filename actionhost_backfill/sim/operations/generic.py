"""The operations whose only step runs on the instance's host, and rebuild."""

from __future__ import annotations

from actionhost_backfill.sim.records import FAILED, Step, Volume

# (action, compute event) of the operations whose only step runs on the
# instance's host; Queens-only recorders are listed separately below.
_EVENTS = {
    "stop": "compute_stop_instance",
    "start": "compute_start_instance",
    "reboot": "compute_reboot_instance",
    "pause": "compute_pause_instance",
    "unpause": "compute_unpause_instance",
    "suspend": "compute_suspend_instance",
    "resume": "compute_resume_instance",
    "rescue": "compute_rescue_instance",
    "unrescue": "compute_unrescue_instance",
    "changePassword": "compute_set_admin_password",
    "trigger_crash_dump": "compute_trigger_crash_dump",
    "extend_volume": "compute_extend_volume",
    "attach_volume": "compute_attach_volume",
    "detach_volume": "compute_detach_volume",
    "attach_interface": "compute_attach_interface",
    "detach_interface": "compute_detach_interface",
    "createImage": "compute_snapshot_instance",
    "createBackup": "compute_backup_instance",
}
#: Operations before Queens recorded with no action and no event (docs/accuracy.md §1, last row).
_QUEENS_RECORDED = frozenset(
    (
        "attach_volume",
        "detach_volume",
        "attach_interface",
        "detach_interface",
        "createImage",
        "createBackup",
        "lock",
        "unlock",
    )
)
_AFTER = {"stop": "stopped", "start": "active", "pause": "paused", "unpause": "active"}
_AFTER |= {"suspend": "suspended", "resume": "active", "rescue": "rescued", "unrescue": "active"}
INVERSE = {"paused": "unpause", "suspended": "resume", "rescued": "unrescue"}


def _cumulative(weights: tuple[tuple[str, int], ...]) -> tuple[list[float], list[str]]:
    total = sum(w for _, w in weights)
    bounds, names, acc = [], [], 0
    for name, weight in weights:
        acc += weight
        bounds.append(acc / total)
        names.append(name)
    return bounds, names


ACTIVE_OPS = _cumulative(
    (
        ("stop", 10),
        ("reboot", 14),
        ("rebuild", 5),
        ("pause", 3),
        ("suspend", 3),
        ("rescue", 2),
        ("changePassword", 2),
        ("attach_volume", 7),
        ("detach_volume", 6),
        ("attach_interface", 4),
        ("detach_interface", 3),
        ("createImage", 8),
        ("createBackup", 3),
        ("lock", 4),
        ("unlock", 4),
        ("trigger_crash_dump", 1),
        ("extend_volume", 1),
    )
)
STOPPED_OPS = _cumulative(
    (
        ("start", 60),
        ("rebuild", 4),
        ("attach_volume", 5),
        ("detach_volume", 5),
        ("createImage", 6),
        ("lock", 3),
        ("unlock", 3),
    )
)


class GenericOperations:
    """The operations whose only step runs on the instance's host, and rebuild."""

    __slots__ = ()

    def generic(self, name: str) -> None:
        t0 = self.t
        s = self.step_for(t0)
        beh = s.beh
        r = self.r
        host = self.host
        assert host is not None
        if name == "rebuild":
            self.rebuild(s)
            return
        if name == "trigger_crash_dump" and not beh.trigger_crash_dump:
            name = "reboot"  # no such API before Mitaka
        live = [v for v in self.volumes if v.deleted_at is None]
        if name == "extend_volume" and not (beh.extend_volume and live):
            name = "attach_volume"
        if name == "detach_volume" and not any(not v.boot for v in live):
            name = "attach_volume"
        if name == "attach_volume" and len(live) >= 4:
            name = "detach_volume"
        if name == "createBackup" and self.bfv:
            name = "createImage"  # backups are image-backed only
        recorded = name not in _QUEENS_RECORDED or beh.records_volume_interface_image_lock_actions
        fails = r() < self.rates.generic_fails
        if name in ("lock", "unlock"):
            if recorded:  # Queens api_lock/api_unlock run in nova-api
                a = s.action(name, t0)
                start = t0 + self.between(0, 1)
                s.start(start, a, f"api_{name}", self.api())
                s.finish(start + self.between(0, 1), a, f"api_{name}")
                s.commit()
            return
        if name == "createImage" and self.bfv and recorded:
            a = s.action(name, t0)  # Queens: a volume-backed snapshot is the API's work
            start = t0 + self.between(0, 1)
            s.start(start, a, "api_snapshot_instance", self.api())
            s.finish(start + self.between(2, 30), a, "api_snapshot_instance")
            s.commit()
            return
        event = _EVENTS[name]
        start = t0 + self.between(1, 3)
        took = (
            self.between(20, 300)
            if name in ("createImage", "createBackup")
            else self.between(1, 40)
        )
        end = start + took
        a = s.action(name, t0) if recorded else None
        # The API records the action, the compute the event: a Pike compute in
        # Queens' rolling window wraps none of these methods (16.0.0 vs 17.0.0
        # ComputeManager.attach_volume, snapshot_instance, ...).
        ev = a is not None and (
            name not in _QUEENS_RECORDED
            or self.sim.compute_behaviour(
                host, start, beh
            ).records_volume_interface_image_lock_actions
        )
        if ev:
            s.start(start, a, event, host)
        if fails:  # pre-Queens event-less methods still record their fault (accuracy §1, §7)
            s.fault(end, host, FAILED)
            if ev:
                s.finish(end, a, event, error=True)
            s.commit()
            return
        if ev:
            s.finish(end, a, event)
        s.commit()
        if name == "attach_volume":
            volume = Volume(self.b.next_id("block_device_mapping"), start)
            volume.connected = True
            # 17.0.0 API._check_attach_and_reserve_volume: new-style only when the
            # minimum compute version is >= 24 (CINDER_V3_ATTACH_MIN_COMPUTE_VERSION).
            if beh.new_style_volume_attach and self.sim.computes_at_least(start, "queens"):
                volume.attachment_id = self.random_uuid()
            else:
                volume.connector = host if beh.stores_connector else None
            volume.updated = end
            self.volumes.append(volume)
        elif name == "detach_volume":
            choices = [v for v in live if not v.boot]
            volume = choices[int(r() * len(choices))]
            volume.deleted_at = end  # soft delete: connection_info and updated_at kept
            self.write_volume(volume)
            self.volumes.remove(volume)
        elif name == "rescue":
            self.launched_at = end - 1
        self.vm_state = _AFTER.get(name, self.vm_state)

    def rebuild(self, s: Step) -> None:
        """``rebuild``: the conductor's rebuild_server, then the instance's own host."""
        t0 = self.t
        host = self.host
        assert host is not None
        a = s.action("rebuild", t0)
        ctl = self.ctl()
        rs = t0 + self.between(1, 2)
        cast = rs + self.between(0, 1)
        if s.beh.rebuild_through_conductor:  # Icehouse: API -> compute directly
            s.start(rs, a, "rebuild_server", ctl)
            s.finish(cast, a, "rebuild_server")
        cs = cast + self.between(0, 2)
        s.start(cs, a, "compute_rebuild_instance", host)
        self.refresh_volumes(host, cs + 2, s.beh)
        if self.r() < self.rates.generic_fails:
            self.fail(s, a, "compute_rebuild_instance", host, cs + self.between(5, 60))
            self.vm_state = "error"
        else:
            end = cs + self.between(20, 120)
            self.launched_at = end - self.between(0, 1)
            s.finish(end, a, "compute_rebuild_instance")
            self.vm_state = "active"
        s.commit()
