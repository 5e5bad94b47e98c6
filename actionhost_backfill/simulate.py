"""A realistic Nova cell history whose true hosts are known.

``simulate`` writes instances, actions, events, migrations, faults and
services the way Nova records them (``shared/nova-facts.md`` sections 4-5):
builds (some rescheduled, with a fault on each rejected host, a few failing
with the conductor's NoValidHost fault), stop/start/reboot/attach/snapshot,
resizes confirmed and reverted (some rescheduled), cold migrations, live
migrations (completed, failed and rolled back), evacuations, shelve-offload
then unshelve onto another host (no migration row), failed operations with
``instance_faults`` rows, deleted instances (their migrations soft-deleted),
archived ones (in ``shadow_*``), ``conductor_*``/``api_*`` events, whole-second
timestamps, and a cut-over date after which every event already carries its
host, as Nova has done since Rocky.

It is a discrete-event simulation: every instance's life is a generator and
operations run in time order across instances, so ids grow with time as in a
real database (an instance's events are spread over the id range).  The true
host of every event goes to ``<state schema>.simulation_truth``, outside the
Nova schema, for ``accuracy``.  Everything is deterministic from the seed.
"""

from __future__ import annotations

import heapq
import json
import random
import time
import uuid as uuidlib
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import URL

from . import bulk, novamodel
from .db import connect, create_engine, translate_error
from .errors import BadInput
from .redact import mask_url
from .state import StateLocation, ensure_state_schema, resolve_state_location
from .tables import EVENTS, SHADOW_EVENTS, nova

COLUMNS = {
    "services": (
        "id",
        "uuid",
        "host",
        "binary",
        "topic",
        "report_count",
        "disabled",
        "deleted",
        "version",
        "created_at",
    ),
    "instances": (
        "id",
        "uuid",
        "host",
        "node",
        "launched_on",
        "project_id",
        "user_id",
        "vm_state",
        "created_at",
        "updated_at",
        "deleted",
        "cleaned",
        "hidden",
    ),
    "instance_actions": (
        "id",
        "action",
        "instance_uuid",
        "request_id",
        "user_id",
        "project_id",
        "start_time",
        "finish_time",
        "created_at",
        "deleted",
    ),
    "instance_actions_events": (
        "id",
        "event",
        "action_id",
        "start_time",
        "finish_time",
        "result",
        "traceback",
        "host",
        "created_at",
        "updated_at",
        "deleted",
    ),
    "migrations": (
        "id",
        "uuid",
        "instance_uuid",
        "source_compute",
        "dest_compute",
        "source_node",
        "dest_node",
        "status",
        "migration_type",
        "old_instance_type_id",
        "new_instance_type_id",
        "hidden",
        "cross_cell_move",
        "created_at",
        "updated_at",
        "deleted",
        "deleted_at",
        "user_id",
        "project_id",
    ),
    "instance_faults": (
        "id",
        "instance_uuid",
        "code",
        "message",
        "host",
        "created_at",
        "deleted",
    ),
}
_ORDER = (
    "instances",
    "instance_actions",
    "instance_actions_events",
    "migrations",
    "instance_faults",
)
TRUTH_TABLE = "simulation_truth"
META_TABLE = "simulation_meta"
S = timedelta(seconds=1)
DAY = 86400.0
TRACEBACK = "Traceback (most recent call last):\n  ...\nnova.exception.NovaException"


@dataclass(frozen=True)
class SimulationOptions:
    seed: int = 42
    events: int | None = None
    """Approximate number of events; ``instances`` is derived from it."""
    instances: int | None = None
    hosts: int = 40
    days: int = 730
    cutover: float = 0.85
    """Fraction of the period after which events carry their host (the Rocky upgrade)."""
    deleted: float = 0.35
    """Share of instances deleted before the end."""
    archived: float = 0.4
    """Share of deleted instances whose rows were archived into shadow_*."""
    start: datetime = datetime(2016, 1, 4)

    def validate(self) -> None:
        if self.events is not None and self.events < 1:
            raise BadInput(f"--events must be at least 1 (got {self.events})")
        if self.instances is not None and self.instances < 1:
            raise BadInput(f"--instances must be at least 1 (got {self.instances})")
        if self.hosts < 3:
            raise BadInput(f"--hosts must be at least 3 so instances can move (got {self.hosts})")
        if self.days < 1:
            raise BadInput(f"--days must be at least 1 (got {self.days})")
        for name in ("cutover", "deleted", "archived"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise BadInput(f"--{name} must be between 0 and 1 (got {value})")


@dataclass
class SimulationResult:
    database: str
    truth_location: str
    instances: int
    counts: dict[str, int]
    seconds: float
    options: dict = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.counts.get(EVENTS, 0) + self.counts.get(SHADOW_EVENTS, 0)

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "truth_location": self.truth_location,
            "instances": self.instances,
            "events": self.events,
            "rows": self.counts,
            "seconds": round(self.seconds, 2),
            "options": self.options,
        }


@dataclass
class _Fate:
    deleted: bool
    archived: bool
    end: float
    """Epoch seconds: when the instance is deleted, or the end of the period."""


class _Sink:
    """Id counters and row buffers; flushes complete operations in FK order."""

    def __init__(self, options: SimulationOptions, write: Callable[[dict, list], None] | None):
        self.options = options
        self.ids = dict.fromkeys((*_ORDER, "services"), 0)
        self.rows: dict[str, list[tuple]] = {}
        self.truth: list[tuple] = []
        self.finals: list[tuple] = []
        self.counts: dict[str, int] = {}
        self.cutover = _epoch(options.start) + options.cutover * options.days * DAY
        self._write = write

    def next_id(self, base: str) -> int:
        self.ids[base] += 1
        return self.ids[base]

    def add(self, table: str, row: tuple) -> None:
        self.rows.setdefault(table, []).append(row)
        self.counts[table] = self.counts.get(table, 0) + 1

    def maybe_flush(self, threshold: int = 50_000) -> None:
        if len(self.truth) >= threshold:
            self.flush()

    def flush(self) -> None:
        if self._write is not None:
            self._write(self.rows, self.truth)
        self.rows = {}
        self.truth = []


EPOCH = datetime(1970, 1, 1)


def _epoch(moment: datetime) -> float:
    """Naive datetimes are UTC, as Nova stores them (no local time, no DST jumps)."""
    return (moment - EPOCH).total_seconds()


def _at(epoch: float) -> datetime:
    """Whole seconds, as MySQL's DATETIME keeps them."""
    return EPOCH + timedelta(seconds=int(epoch))


class _Life:
    """One instance: its generator performs an operation each time it is resumed."""

    def __init__(self, sim: _Simulation, born: float, fate: _Fate):
        self.sim = sim
        self.sink = sim.sink
        self.rng = sim.rng
        self.fate = fate
        self.id = sim.sink.next_id("instances")
        self.uuid = str(uuidlib.UUID(int=sim.rng.getrandbits(128), version=4))
        self.project = f"project-{self.rng.randrange(1, 60):03d}"
        self.host: str | None = None
        self.vm_state = "building"
        self.offloaded = False
        self.shelved = False
        self.t = born
        self.born = born
        self.suffix = "shadow_" if fate.archived else ""
        self.old_style = born < sim.old_style_until

    # -- rows ---------------------------------------------------------------
    def action(self, name: str) -> int:
        action_id = self.sink.next_id("instance_actions")
        start = _at(self.t)
        self.sink.add(
            f"{self.suffix}instance_actions",
            (
                action_id,
                name,
                self.uuid,
                f"req-{uuidlib.UUID(int=self.rng.getrandbits(128), version=4)}",
                "user-1",
                self.project,
                start,
                None,
                start,
                0,
            ),
        )
        return action_id

    def event(
        self,
        action_id: int,
        name: str,
        host: str,
        *,
        took: float | None = None,
        error: bool = False,
        fault: str | None = None,
    ) -> None:
        """An event that ran on ``host``; ``fault`` records an instance fault by that host."""
        self.t += self.rng.randint(1, 3)
        start = self.t
        self.t += took if took is not None else self.rng.randint(1, 40)
        event_id = self.sink.next_id("instance_actions_events")
        recorded = start >= self.sink.cutover
        table = f"{self.suffix}{EVENTS}"
        self.sink.add(
            table,
            (
                event_id,
                name,
                action_id,
                _at(start),
                _at(self.t),
                "Error" if error else "Success",
                TRACEBACK if error else None,
                host if recorded else None,
                _at(start),
                _at(self.t),
                0,
            ),
        )
        self.sink.truth.append((table, event_id, name, host, recorded))
        if fault:
            self.fault(fault, self.t)

    def fault(self, host: str, at: float, message: str = "Operation failed") -> None:
        self.sink.add(
            f"{self.suffix}instance_faults",
            (self.sink.next_id("instance_faults"), self.uuid, 500, message, host, _at(at), 0),
        )

    def migration(
        self, kind: str, source: str, dest: str | None, status: str, created: float, flavors
    ) -> None:
        migration_id = self.sink.next_id("migrations")
        raw_kind = None if self.old_style and kind in ("resize", "migration") else kind
        deleted = self.fate.deleted
        self.sink.add(
            f"{self.suffix}migrations",
            (
                migration_id,
                str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4)),
                self.uuid,
                source,
                dest,
                source,
                dest,
                status,
                raw_kind,
                flavors[0],
                flavors[1],
                False,
                False,
                _at(created),
                _at(self.t),
                migration_id if deleted else 0,
                _at(self.fate.end) if deleted else None,
                "user-1",
                self.project,
            ),
        )

    # -- choices ------------------------------------------------------------
    def other_host(self, *avoid: str | None) -> str:
        hosts = self.sim.hosts
        while True:
            host = hosts[self.rng.randrange(len(hosts))]
            if host not in avoid:
                return host

    def conductor(self) -> str:
        return self.sim.conductors[self.rng.randrange(len(self.sim.conductors))]

    def rejected(self, chance: float, *avoid: str | None) -> list[str]:
        if self.rng.random() >= chance:
            return []
        first = self.other_host(*avoid)
        return [first] if self.rng.random() < 0.8 else [first, self.other_host(first, *avoid)]

    # -- operations ---------------------------------------------------------
    def build(self) -> None:
        a = self.action("create")
        self.event(a, "conductor_schedule_and_build_instances", self.conductor())
        host = self.other_host()
        for candidate in self.rejected(0.06, host):
            self.event(
                a, "compute__do_build_and_run_instance", candidate, error=True, fault=candidate
            )
        if self.rng.random() < 0.01:  # no valid host left: the conductor records the fault
            self.fault(self.conductor(), self.t + 1, "No valid host was found.")
            self.vm_state = "error"
            return
        self.event(a, "compute__do_build_and_run_instance", host, took=self.rng.randint(20, 90))
        self.host = host
        self.vm_state = "active"

    def generic(self) -> None:
        action, name = self.rng.choice(GENERIC_OPERATIONS)
        a = self.action(action)
        if name.startswith("api_"):
            self.event(a, name, self.sim.api_hosts[self.rng.randrange(2)], took=0)
            return
        if action == "rebuild":
            self.event(a, "rebuild_server", self.conductor())
        failed = self.rng.random() < 0.04
        self.event(a, name, self.host, error=failed, fault=self.host if failed else None)
        if not failed:
            self.vm_state = GENERIC_STATES.get(action, self.vm_state)

    def cold_move(self, resize: bool) -> None:
        source = self.host
        dest = self.other_host(source)
        kind = "resize" if resize else "migration"
        a = self.action("resize" if resize else "migrate")
        created = self.t + 1
        self.event(a, "conductor_migrate_server" if resize else "cold_migrate", self.conductor())
        flavors = (1, 2) if resize else (1, 1)
        for candidate in self.rejected(0.05, source, dest):
            self.event(a, "compute_prep_resize", candidate, error=True, fault=candidate)
        self.event(a, "compute_prep_resize", dest)
        if self.rng.random() < 0.03:  # the source fails to send it: error, instance stays
            self.event(a, "compute_resize_instance", source, error=True, fault=source)
            self.migration(kind, source, dest, "error", created, flavors)
            self.vm_state = "error"
            return
        self.event(a, "compute_resize_instance", source, took=self.rng.randint(20, 200))
        self.event(a, "compute_finish_resize", dest, took=self.rng.randint(5, 60))
        self.host = dest
        self.t += self.rng.uniform(120, 6 * 3600)
        if self.rng.random() < 0.12:
            r = self.action("revertResize")
            self.event(r, "compute_revert_resize", dest)
            self.event(r, "compute_finish_revert_resize", source)
            self.host = source
            status = "reverted"
        else:
            c = self.action("confirmResize")
            self.event(c, "compute_confirm_resize", source)
            status = "confirmed"
        self.migration(kind, source, dest, status, created, flavors)
        self.vm_state = "active"

    def live_migrate(self) -> None:
        source = self.host
        dest = self.other_host(source)
        a = self.action("live-migration")
        created = self.t + 1
        self.event(a, "conductor_live_migrate_instance", self.conductor())
        for candidate in self.rejected(0.06, source, dest):
            self.event(
                a,
                "compute_check_can_live_migrate_destination",
                candidate,
                error=True,
                fault=candidate,
            )
        self.event(a, "compute_check_can_live_migrate_destination", dest)
        self.event(a, "compute_check_can_live_migrate_source", source)
        roll = self.rng.random()
        if roll < 0.07:  # pre_live_migration fails on the destination: rolled back
            self.event(a, "compute_pre_live_migration", dest, error=True, fault=dest)
            self.event(a, "compute_rollback_live_migration_at_destination", dest)
            status = "failed"
        elif roll < 0.12:  # the transfer fails on the source: rolled back
            self.event(a, "compute_pre_live_migration", dest)
            self.event(a, "compute_live_migration", source, error=True, fault=source)
            self.event(a, "compute_rollback_live_migration_at_destination", dest)
            status = "failed"
        else:
            self.event(a, "compute_pre_live_migration", dest)
            self.event(a, "compute_live_migration", source, took=self.rng.randint(10, 600))
            self.event(a, "compute_post_live_migration_at_destination", dest)
            self.host = dest
            status = "completed"
        self.migration("live-migration", source, dest, status, created, (1, 1))

    def evacuate(self) -> None:
        source = self.host
        dest = self.other_host(source)
        a = self.action("evacuate")
        created = self.t + 1
        self.event(a, "rebuild_server", self.conductor())
        for candidate in self.rejected(0.05, source, dest):
            self.event(a, "compute_rebuild_instance", candidate, error=True, fault=candidate)
        self.event(a, "compute_rebuild_instance", dest, took=self.rng.randint(30, 300))
        self.host = dest
        status = "completed" if self.rng.random() < 0.3 else "done"
        self.migration("evacuation", source, dest, status, created, (1, 1))

    def shelve(self) -> None:
        a = self.action("shelve")
        self.event(a, "compute_shelve_instance", self.host, took=self.rng.randint(20, 200))
        if self.rng.random() < 0.8:  # shelved_offload_time = 0: offloaded at once
            self.event(a, "compute_shelve_offload_instance", self.host)
            self.host = None
            self.offloaded = True
            self.vm_state = "shelved_offloaded"
        else:
            self.shelved = True
            self.vm_state = "shelved"

    def unshelve(self) -> None:
        a = self.action("unshelve")
        if self.offloaded:
            self.event(a, "conductor_unshelve_instance", self.conductor())
            self.host = self.other_host()
            self.event(a, "compute_unshelve_instance", self.host, took=self.rng.randint(20, 120))
            self.offloaded = False
        else:  # still on its host: unshelve just starts it there
            self.event(a, "compute_start_instance", self.host)
            self.shelved = False
        self.vm_state = "active"

    def periodic_offload(self) -> None:
        """The periodic task offloads a shelved instance: no action, no event."""
        self.host = None
        self.shelved = False
        self.offloaded = True
        self.vm_state = "shelved_offloaded"

    def delete(self) -> None:
        a = self.action("delete")
        if self.host is not None:
            self.event(a, "compute_terminate_instance", self.host)

    def step(self) -> None:
        """One operation at ``self.t``, chosen among those Nova allows in this state."""
        if self.vm_state == "error" and self.host is None:
            return
        if self.offloaded:
            self.unshelve()
            return
        if self.shelved:
            if self.rng.random() < 0.5:
                self.unshelve()
            else:
                self.periodic_offload()
            return
        roll = self.rng.random()
        for threshold, operation in self.sim.mix:
            if roll < threshold:
                operation(self)
                return

    def _row(self) -> tuple:
        deleted = self.fate.deleted and self.t >= self.fate.end
        return (
            self.id,
            self.uuid,
            self.host,
            self.host,
            self.host,
            self.project,
            "user-1",
            "deleted" if deleted else self.vm_state,
            _at(self.born),
            _at(self.t),
            self.id if deleted else 0,
            1 if deleted else 0,
            False,
        )

    def run(self) -> Generator[float, None, None]:
        self.sink.add(f"{self.suffix}instances", self._row())
        self.build()
        mean_gap = self.sim.mean_gap
        while True:
            self.t = max(self.t + 60, self.t + self.rng.expovariate(1 / mean_gap))
            if self.t >= self.fate.end:
                break
            yield self.t
            self.step()
        if self.fate.deleted:
            self.t = max(self.t, self.fate.end)
            yield self.t
            self.delete()
        self.sink.finals.append((self.fate.archived, self._row()))


GENERIC_OPERATIONS = (
    ("stop", "compute_stop_instance"),
    ("start", "compute_start_instance"),
    ("reboot", "compute_reboot_instance"),
    ("reboot", "compute_reboot_instance"),
    ("attach_volume", "compute_attach_volume"),
    ("detach_volume", "compute_detach_volume"),
    ("attach_interface", "compute_attach_interface"),
    ("createImage", "compute_snapshot_instance"),
    ("pause", "compute_pause_instance"),
    ("unpause", "compute_unpause_instance"),
    ("rebuild", "compute_rebuild_instance"),
    ("lock", "api_lock"),
)
GENERIC_STATES = {"stop": "stopped", "start": "active", "pause": "paused", "unpause": "active"}


class _Simulation:
    def __init__(self, options: SimulationOptions, sink: _Sink, rng: random.Random):
        self.options = options
        self.sink = sink
        self.rng = rng
        self.hosts = [f"cmp-{n:04d}" for n in range(1, options.hosts + 1)]
        self.conductors = [f"ctl-{n}" for n in range(1, 4)]
        self.api_hosts = ["api-1", "api-2"]
        self.begin = _epoch(options.start)
        self.end = self.begin + options.days * DAY
        self.old_style_until = self.begin + 0.15 * options.days * DAY
        self.mean_gap = 12 * DAY
        weights = (
            (0.68, _Life.generic),
            (0.07, lambda life: life.cold_move(True)),
            (0.04, lambda life: life.cold_move(False)),
            (0.15, _Life.live_migrate),
            (0.01, _Life.evacuate),
            (0.05, _Life.shelve),
        )
        total, self.mix = 0.0, []
        for weight, operation in weights:
            total += weight
            self.mix.append((total, operation))
        self.mix[-1] = (1.01, self.mix[-1][1])

    def fate(self, born: float) -> _Fate:
        if self.rng.random() < self.options.deleted:
            end = min(self.end - 1, born + self.rng.expovariate(1 / (90 * DAY)) + 3600)
            return _Fate(True, self.rng.random() < self.options.archived, end)
        return _Fate(False, False, self.end)

    def run(self, instances: int, flush: bool = True) -> int:
        span = self.end - self.begin
        births = sorted(self.begin + self.rng.random() * span * 0.97 for _ in range(instances))
        heap: list[tuple[float, int, Generator]] = []
        for number, born in enumerate(births):
            while heap and heap[0][0] <= born:
                self._resume(heap)
                if flush:
                    self.sink.maybe_flush()
            self._advance(heap, number, _Life(self, born, self.fate(born)).run())
        while heap:
            self._resume(heap)
            if flush:
                self.sink.maybe_flush()
        return len(births)

    def _resume(self, heap) -> None:
        _, number, generator = heapq.heappop(heap)
        self._advance(heap, number, generator)

    @staticmethod
    def _advance(heap, number: int, generator: Generator) -> None:
        """Run a life to its next operation and queue it at that time (unless it ended)."""
        try:
            when = next(generator)
        except StopIteration:
            return
        heapq.heappush(heap, (when, number, generator))


def plan_instances(options: SimulationOptions) -> int:
    """How many instances give about ``options.events`` events (a dry calibration run)."""
    if options.instances is not None:
        return options.instances
    target = options.events if options.events is not None else 20_000
    sample = 1000
    sink = _Sink(options, None)
    _Simulation(options, sink, random.Random(options.seed ^ 0x5EED)).run(sample, flush=False)
    events = sink.counts.get(EVENTS, 0) + sink.counts.get(SHADOW_EVENTS, 0)
    return max(1, round(target * sample / max(events, 1)))


def truth_tables(schema: str) -> tuple[sa.Table, sa.Table]:
    meta = sa.MetaData(schema=schema)
    truth = sa.Table(
        TRUTH_TABLE,
        meta,
        sa.Column("event_table", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("recorded", sa.Boolean, nullable=False),
        mysql_engine="InnoDB",
    )
    meta_table = sa.Table(
        META_TABLE,
        meta,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        mysql_engine="InnoDB",
    )
    return truth, meta_table


def _prepare(conn: sa.Connection, location: StateLocation, url: URL) -> set[str]:
    names = set(sa.inspect(conn).get_table_names())
    if EVENTS in names:
        events = nova(EVENTS)
        if conn.execute(sa.select(events.c.id).limit(1)).first() is not None:
            raise BadInput(
                f"{mask_url(url)} already holds instance action events: simulate only "
                "writes into an empty database (create a new one, or for SQLite pick a new file)"
            )
        for table in ("instances", "services", "migrations", "instance_faults"):
            if table not in names:
                raise BadInput(
                    f"{mask_url(url)} has {EVENTS} but no {table} table: not a Nova cell "
                    "schema simulate can write into (use an empty database)"
                )
    else:
        novamodel.create_cell_schema(conn)
        names = set(sa.inspect(conn).get_table_names())
    ensure_state_schema(conn, location)
    truth, _ = truth_tables(location.schema)
    truth.metadata.drop_all(conn)
    truth.metadata.create_all(conn)
    return names


def _apply_finals(conn: sa.Connection, finals: list[tuple], names: set[str]) -> None:
    """Give each instance row its final host and state (known when its life ends)."""
    columns = COLUMNS["instances"]
    vm_state, updated, deleted, cleaned = (
        columns.index(c) for c in ("vm_state", "updated_at", "deleted", "cleaned")
    )
    metadata = novamodel.build_metadata()
    for archived in (False, True):
        table = "shadow_instances" if archived else "instances"
        rows = [row for flag, row in finals if flag == archived]
        if not rows or table not in names:
            continue
        target = metadata.tables[table]
        for part in bulk.chunks(rows, 5000):
            conn.execute(
                target.update()
                .where(target.c.uuid == sa.bindparam("b_uuid"))
                .values(
                    host=sa.bindparam("b_host"),
                    node=sa.bindparam("b_host"),
                    vm_state=sa.bindparam("b_vm_state"),
                    updated_at=sa.bindparam("b_updated"),
                    deleted=sa.bindparam("b_deleted"),
                    cleaned=sa.bindparam("b_cleaned"),
                ),
                [
                    {
                        "b_uuid": row[1],
                        "b_host": row[2],
                        "b_vm_state": row[vm_state],
                        "b_updated": row[updated],
                        "b_deleted": row[deleted],
                        "b_cleaned": row[cleaned],
                    }
                    for row in part
                ],
            )


def simulate(
    url: URL,
    options: SimulationOptions | None = None,
    *,
    state_schema: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Write a simulated history into ``url`` (an empty database or a new SQLite file)."""
    options = options or SimulationOptions()
    options.validate()
    location = resolve_state_location(url, state_schema)
    instances = plan_instances(options)
    started = time.perf_counter()
    engine = create_engine(url, location, attach="create", must_exist=False)
    try:
        with connect(engine) as conn:
            try:
                names = _prepare(conn, location, url)
                conn.commit()
                truth_columns = ("event_table", "event_id", "event", "host", "recorded")

                def write(rows: dict[str, list[tuple]], truth: list[tuple]) -> None:
                    for base in _ORDER:
                        for name in (base, f"shadow_{base}"):
                            if rows.get(name):
                                if name not in names:
                                    raise BadInput(
                                        f"{mask_url(url)} has no {name} table: "
                                        "simulate needs Nova's shadow tables"
                                    )
                                bulk.insert_rows(conn, name, COLUMNS[base], rows[name])
                    bulk.insert_rows(
                        conn, TRUTH_TABLE, truth_columns, truth, schema=location.schema
                    )
                    conn.commit()
                    if progress is not None:
                        progress(len(truth))

                sink = _Sink(options, write)
                simulation = _Simulation(options, sink, random.Random(options.seed))
                _write_services(conn, simulation, sink)
                simulation.run(instances)
                sink.flush()
                _apply_finals(conn, sink.finals, names)
                conn.commit()
                _analyze(conn, names)
                counts = dict(sorted(sink.counts.items()))
                _, meta = truth_tables(location.schema)
                conn.execute(meta.delete())
                conn.execute(
                    meta.insert(),
                    [
                        {"name": "options", "value": json.dumps(_options_dict(options))},
                        {"name": "counts", "value": json.dumps(counts)},
                        {"name": "cutover", "value": _at(sink.cutover).isoformat(sep=" ")},
                    ],
                )
                conn.commit()
            except sa.exc.DBAPIError as exc:
                raise translate_error(exc, url) from None
    finally:
        engine.dispose()
    return SimulationResult(
        database=mask_url(url),
        truth_location=f"{location.describe()}, table {TRUTH_TABLE}",
        instances=instances,
        counts=counts,
        seconds=time.perf_counter() - started,
        options=_options_dict(options),
    )


def _analyze(conn: sa.Connection, names: set[str]) -> None:
    """Fresh planner statistics, as a live database has (bulk loads leave none)."""
    backend = conn.dialect.name
    if backend == "postgresql":
        conn.exec_driver_sql("ANALYZE")
    elif backend in ("mysql", "mariadb"):
        tables = ", ".join(f"`{n}`" for n in sorted(names) if n != "alembic_version")
        conn.exec_driver_sql(f"ANALYZE TABLE {tables}").fetchall()
    else:
        conn.exec_driver_sql("ANALYZE main")
    conn.commit()


def _options_dict(options: SimulationOptions) -> dict:
    data = asdict(options)
    data["start"] = options.start.isoformat()
    return data


def _write_services(conn: sa.Connection, simulation: _Simulation, sink: _Sink) -> None:
    created = _at(simulation.begin - DAY)
    rows = []
    for host, binary in [(h, "nova-compute") for h in simulation.hosts] + [
        (h, "nova-conductor") for h in simulation.conductors
    ]:
        service_id = sink.next_id("services")
        rows.append(
            (
                service_id,
                str(uuidlib.UUID(int=(2 << 100) + service_id)),
                host,
                binary,
                binary.removeprefix("nova-"),
                0,
                False,
                0,
                66,
                created,
            )
        )
    bulk.insert_rows(conn, "services", COLUMNS["services"], rows)
    sink.counts["services"] = len(rows)
    conn.commit()
