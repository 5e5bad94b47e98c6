"""One instance's life: its state, its small helpers, and the choice of its next operation."""

from __future__ import annotations

import heapq
import uuid as uuidlib
from bisect import bisect_right
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from actionhost_backfill.nova.tables import EVENTS, SHADOW_EVENTS
from actionhost_backfill.sim.clock import db_time
from actionhost_backfill.sim.operations.builds import Builds
from actionhost_backfill.sim.operations.cold_moves import ColdMoves
from actionhost_backfill.sim.operations.deletes import Deletes
from actionhost_backfill.sim.operations.evacuations import Evacuations
from actionhost_backfill.sim.operations.generic import (
    ACTIVE_OPS,
    INVERSE,
    STOPPED_OPS,
    GenericOperations,
)
from actionhost_backfill.sim.operations.live_migrations import LiveMigrations
from actionhost_backfill.sim.operations.shelve import Shelving
from actionhost_backfill.sim.operations.volumes import Volumes
from actionhost_backfill.sim.records import FAILED, Action, Migration, Step, Volume

if TYPE_CHECKING:
    from actionhost_backfill.sim.cloud import Simulation


# -- one instance ----------------------------------------------------------------------


class Life(
    Builds, GenericOperations, ColdMoves, LiveMigrations, Evacuations, Shelving, Volumes, Deletes
):
    """One instance: its generator performs an operation each time it is resumed."""

    __slots__ = (
        "archived",
        "b",
        "bfv",
        "busy_until",
        "dead",
        "deferred",
        "deleted_at",
        "deletes_resized",
        "end",
        "evacuations",
        "events_table",
        "fate_deleted",
        "flavor",
        "host",
        "last_action",
        "launched_at",
        "launched_on",
        "node",
        "offloaded",
        "project",
        "r",
        "rates",
        "resized",
        "rng",
        "shelve_keys",
        "shelved_at",
        "sim",
        "stale",
        "t",
        "user",
        "uuid",
        "vm_state",
        "volumes",
    )

    def __init__(
        self,
        sim: Simulation,
        born: int,
        deleted: bool,
        archived: bool,
        end: int,
        deletes_resized: bool = False,
    ):
        self.sim = sim
        self.rates = sim.rates
        self.deletes_resized = deletes_resized
        self.b = sim.builder
        rng = sim.rng
        self.r = rng.random
        self.rng = rng
        self.uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
        self.project = f"project-{rng.randrange(1, 60):03d}"
        self.user = f"user-{rng.randrange(1, 200):03d}"
        self.t = born
        self.fate_deleted = deleted
        self.archived = archived
        self.end = end
        self.events_table = SHADOW_EVENTS if archived else EVENTS
        self.host: str | None = None
        self.node: str | None = None
        self.launched_on: str | None = None
        self.launched_at: int | None = None
        self.vm_state = "building"
        self.offloaded = False
        self.dead = False
        self.deleted_at: int | None = None
        self.flavor = 1 + int(self.r() * 6)
        self.bfv = self.r() < self.rates.boot_from_volume
        self.volumes: list[Volume] = []
        self.shelve_keys: list[tuple[int, str, str, int]] | None = None
        self.shelved_at: int | None = None
        """When it was shelved and kept on its host (what the periodic offload waits on)."""
        self.resized: tuple | None = None
        self.stale: list[Migration] = []
        """Live pre-migrating resize/migration rows Queens' conductor would reuse."""
        self.evacuations: list[Migration] = []
        self.last_action = 0
        self.busy_until = born
        """The last moment an operation of it wrote (its task_state is set until then)."""
        self.deferred: list[tuple[int, int, Callable[[int], None]]] = []

    # -- small helpers -----------------------------------------------------------------
    def between(self, low: int, high: int) -> int:
        return low + int(self.r() * (high - low + 1))

    def request_id(self) -> str:
        return f"req-{self.random_uuid()}"

    def random_uuid(self) -> str:
        """A version-4 UUID string from the simulation's generator (cheaper than uuid.UUID)."""
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def pick(self, *exclude: str | None) -> str | None:
        """A host the scheduler could choose, not one of ``exclude``; None if none is left."""
        hosts = self.sim.hosts
        n = len(hosts)
        r = self.r
        for _ in range(16):
            host = hosts[int(r() * n)]
            if host not in exclude:
                return host
        for host in hosts:
            if host not in exclude:
                return host
        return None

    def ctl(self) -> str:
        conductors = self.sim.conductors
        return conductors[int(self.r() * len(conductors))]

    def api(self) -> str:
        nodes = self.sim.api_nodes
        return nodes[int(self.r() * len(nodes))]

    def step_for(self, t: int) -> Step:
        return Step(self, self.sim.behaviour_at(t))

    def move_to(self, host: str | None) -> None:
        self.host = host
        self.node = self.sim.nodes[host] if host is not None else None

    def defer(self, when: int, task: Callable[[int], None]) -> None:
        heapq.heappush(self.deferred, (when, self.sim.next_seq(), task))

    def new_migration(
        self, kind: str | None, source, source_node, dest, status: str, created: int, flavors
    ) -> Migration:
        return Migration(
            self.b.next_id("migrations"), kind, source, source_node, dest, status, created, flavors
        )

    def claim_dest(self, m: Migration, dest: str, t: int) -> None:
        """RT._create_migration / _claim_existing_migration: the dest's columns."""
        m.dest = dest
        m.dest_node = self.sim.nodes[dest]
        m.dest_host = self.sim.ips[dest]
        m.status = "pre-migrating"
        m.updated = t

    def save(self, m: Migration) -> None:
        if not m.written:
            m.written = True
            self.b.migration(
                self.uuid,
                kind=m.kind,
                source=m.source,
                dest=m.dest,
                status=m.status,
                created=db_time(m.created),
                updated=db_time(m.updated) if m.updated is not None else None,
                archived=self.archived,
                old_flavor=m.old_flavor,
                new_flavor=m.new_flavor,
                source_node=m.source_node,
                dest_node=m.dest_node,
                dest_host=m.dest_host,
                row_id=m.id,
                # user_id/project_id arrived in Train (20.0.0 migration
                # 401_add_user_id_and_project_id_to_migrations), never back-filled:
                # NULL on every Kilo ... Rocky row.
                user_id=None,
                project_id=None,
            )
        else:
            self.b.update_migration(
                m.id,
                archived=self.archived,
                dest_compute=m.dest,
                dest_node=m.dest_node,
                dest_host=m.dest_host,
                status=m.status,
                updated_at=db_time(m.updated) if m.updated is not None else None,
            )

    def fail(self, s: Step, act: Action, name: str, host: str, t: int) -> None:
        """A compute step that raised: wrap_instance_fault's fault, then the Error finish."""
        s.fault(t, host, FAILED)
        s.finish(t, act, name, error=True)

    # -- the life ----------------------------------------------------------------------
    def run(self) -> Generator[int, None, None]:
        if not self.build():
            return
        sim = self.sim
        if sim.rolling is not None:
            sim.lives[id(self)] = self
        while True:
            if self.dead:
                t_next = self.end
            else:
                t_next = self.t + max(60, int(self.rng.expovariate(1 / self.rates.mean_gap)))
            while self.deferred and self.deferred[0][0] <= min(t_next, self.end):
                when, _, task = heapq.heappop(self.deferred)
                when = max(when, self.t)
                yield when
                self.t = when
                task(when)
            if t_next >= self.end:
                break
            yield t_next
            self.t = max(self.t, t_next)  # a drain may have moved it on meanwhile
            yield from self.step()
            if self.deleted_at is not None:
                break
        if self.fate_deleted and self.deleted_at is None:
            when = max(self.t, self.end)
            yield when
            self.t = when
            self.delete()
        while self.deferred and self.deferred[0][0] < sim.end:
            when, _, task = heapq.heappop(self.deferred)
            when = max(when, self.t)
            yield when
            self.t = when
            task(when)
        self.finalize()

    def finalize(self) -> None:
        """The instance row's final values, and the rows still held in memory."""
        self.sim.lives.pop(id(self), None)
        if self.resized is not None:
            self.save(self.resized[0])
            self.resized = None
        for volume in self.volumes:
            self.write_volume(volume)
        self.volumes = []
        self.write_shelve_keys(None)
        values: dict = {
            "host": self.host,
            "node": self.node,
            "launched_on": self.launched_on,
            "launched_at": db_time(self.launched_at) if self.launched_at is not None else None,
            "vm_state": self.vm_state,
            "updated_at": db_time(self.deleted_at if self.deleted_at is not None else self.t),
        }
        if self.deleted_at is not None:
            deleted = db_time(self.deleted_at)
            values |= {
                "deleted": True,
                "deleted_at": deleted,
                "terminated_at": deleted,
                "cleaned": 1,
            }
        self.b.update_instance(self.uuid, **values)
        self.b.release(self.uuid)

    def step(self) -> Generator[int, None, None]:
        """One operation at ``self.t``, chosen among those Nova allows in this state."""
        if self.dead:
            return
        state = self.vm_state
        if state == "shelved":
            if self.r() < 0.75:
                self.unshelve()
            else:
                self.explicit_offload()
            return
        if self.offloaded:
            if (
                self.r() < 0.15
                and self.sim.behaviour_at(self.t).records_volume_interface_image_lock_actions
            ):
                self.offloaded_volume_operation()
            else:
                self.unshelve()
            return
        if state in INVERSE:
            self.generic(INVERSE[state])
            return
        if state in ("active", "stopped") and self.resized is None and self.sim.surgery_due():
            self.surgery()
            return
        roll = self.r()
        mix = self.sim.mix
        if roll < mix[0]:
            bounds, names = STOPPED_OPS if state == "stopped" else ACTIVE_OPS
            self.generic(names[bisect_right(bounds, self.r())])
        elif roll < mix[1]:
            yield from self.cold_move(True)
        elif roll < mix[2]:
            yield from self.cold_move(False)
        elif roll < mix[3]:
            if state == "stopped":  # live migration needs a running guest
                self.generic("start")
            else:
                self.live_migrate()
        elif roll < mix[4]:
            self.evacuate()
        else:
            self.shelve()

    def surgery(self) -> None:
        """Operator DB surgery after a dead compute (``simulate --surgery-rate``).

        ``UPDATE instances SET host=..., node=...`` by hand, then a hard reboot
        through the API: no action, no event, no migration row records the
        move; only the reboot (an ordinary ``reboot`` action) runs on the new host.
        """
        new = self.pick(self.host)
        if new is None:
            return
        self.move_to(new)
        self.generic("reboot")
