"""A Nova cell history recorded the way Icehouse ... Queens (then Rocky) recorded it.

``simulate`` writes instances, actions, events, migrations, faults, system
metadata, volume attachments, services and compute nodes as the Nova release
in service at each moment wrote them: the period is split into eras, one per
release from ``first_release`` to ``last_release``, then Rocky from the
cut-over on, when every event row stores the host that recorded it.  What each
release did differently lives in ``releases.py`` (one switch per behaviour,
each citing the docs/accuracy.md section or the Nova tag, file and function it
was read from);
this module is the model of the operations themselves: builds and their
reschedules, the generic operations, cold moves with reschedules, confirms,
reverts and deletes of resized instances, live migrations with rejected
candidates, rollbacks and aborts, evacuations and the source's later restart,
shelve, offload and unshelve, volume attachments and their connectors,
deletes and the archiver.

It is a discrete-event simulation: every instance's life is a generator and
operations run in time order across instances, so ids grow with time as in a
real database (an instance's rows are spread over the id range).  Inside one
operation the rows are written in the order of their (whole-second, one
conductor clock) timestamps, which is what fixes event ids and which of a
repeated event name's rows receives the finishes (``HistoryBuilder``).  The
truth of every event (where the code that recorded it ran, and the release in
service when it started) goes to ``<state schema>.simulation_truth``, outside
the Nova schema, for ``accuracy``.  Everything is deterministic from the seed.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import json
import math
import queue
import random
import threading
import time
import uuid as uuidlib
from bisect import bisect_right
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill.db import connect, create_engine, translate_error
from actionhost_backfill.dialects import bulk
from actionhost_backfill.errors import BadInput
from actionhost_backfill.nova import models
from actionhost_backfill.nova.releases import BEHAVIOURS, ROCKY, SIMULATED, Behaviour, between
from actionhost_backfill.nova.releases import index as release_index
from actionhost_backfill.nova.tables import EVENTS, SHADOW_EVENTS, nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.sim.history import Batch, HistoryBuilder, attachment_connection_info
from actionhost_backfill.state.location import (
    StateLocation,
    ensure_state_schema,
    resolve_state_location,
)

TRUTH_TABLE = "simulation_truth"
META_TABLE = "simulation_meta"
DAY = 86400
EPOCH = datetime(1970, 1, 1)
#: Tables the simulator writes (the shadow copies too, for archived instances).
WRITTEN_TABLES = (
    "services",
    "compute_nodes",
    "instances",
    "instance_actions",
    "instance_actions_events",
    "migrations",
    "instance_faults",
    "instance_system_metadata",
    "block_device_mapping",
)


@dataclass(frozen=True)
class Rates:
    """How often things happen (``SimulationOptions.rates``).

    Recording behaviour matters more than realistic frequencies: the defaults
    only make every behaviour show up in a few hundred instances.  Tests raise
    some of them so rare recording paths become common.
    """

    mean_gap: int = 12 * DAY
    """Mean seconds between two operations of an instance."""
    operation_mix: tuple[float, ...] = (0.68, 0.07, 0.04, 0.15, 0.01)
    """Shares of generic operations, resizes, cold migrations, live migrations and
    evacuations among an active instance's operations (shelves: the rest)."""
    boot_from_volume: float = 0.15
    build_first_scheduling_fails: float = 0.004
    build_rescheduled: float = 0.06
    build_fails: float = 0.01
    generic_fails: float = 0.04
    resize_rescheduled: float = 0.05
    resize_reverted: float = 0.12
    deleted_while_resized: float = 0.15
    """Share of the instances due for deletion that are deleted while RESIZED (if resized)."""
    auto_confirm_hosts: float = 0.3
    auto_confirm_window: int = 3600
    live_migration_rejected: float = 0.10
    live_migration_forced: float = 0.15
    live_migration_no_host: float = 0.02
    live_migration_rollback: float = 0.10
    evacuation_named_host: float = 0.3
    evacuation_no_host: float = 0.08
    evacuation_fails: float = 0.05
    evacuated_source_restarts: float = 0.6
    offload_later_hosts: float = 0.25
    shelved_offload_time: int = DAY
    unshelve_no_host: float = 0.02
    unshelve_fails: float = 0.03

    def validate(self) -> None:
        for name, value in asdict(self).items():
            if name in ("mean_gap", "auto_confirm_window", "shelved_offload_time"):
                if value < 1:
                    raise BadInput(f"rates.{name} must be at least 1 second (got {value})")
            elif name == "operation_mix":
                if len(value) != 5 or any(v < 0 for v in value) or sum(value) > 1.0 + 1e-9:
                    raise BadInput(
                        f"rates.operation_mix must be five shares summing to at most 1 (got {value})"
                    )
            elif not 0.0 <= value <= 1.0:
                raise BadInput(f"rates.{name} must be between 0 and 1 (got {value})")


BUILD = "compute__do_build_and_run_instance"
PREP_RESIZE = "compute_prep_resize"
DEST_CHECK = "compute_check_can_live_migrate_destination"
SOURCE_CHECK = "compute_check_can_live_migrate_source"
TERMINATE = "compute_terminate_instance"
SHELVE_OFFLOAD = "compute_shelve_offload_instance"
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
NOT_ENOUGH_RESOURCES = "Insufficient compute resources: Free memory 1024.00 MB < requested 2048 MB."
FAILED = "Unexpected error while running command."

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
_INVERSE = {"paused": "unpause", "suspended": "resume", "rescued": "unrescue"}


def _cumulative(weights: tuple[tuple[str, int], ...]) -> tuple[list[float], list[str]]:
    total = sum(w for _, w in weights)
    bounds, names, acc = [], [], 0
    for name, weight in weights:
        acc += weight
        bounds.append(acc / total)
        names.append(name)
    return bounds, names


_ACTIVE_OPS = _cumulative(
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
_STOPPED_OPS = _cumulative(
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


def _epoch(moment: datetime) -> int:
    """Naive datetimes are UTC, as Nova stores them (no local time, no DST jumps)."""
    return int((moment - EPOCH).total_seconds())


_DAYS: dict[int, datetime] = {}
_SECONDS = [timedelta(seconds=s) for s in range(DAY)]


def _at(epoch: int) -> datetime:
    """Whole seconds, as MySQL's DATETIME keeps them."""
    day, second = divmod(epoch, DAY)
    midnight = _DAYS.get(day)
    if midnight is None:
        midnight = _DAYS[day] = EPOCH + timedelta(days=day)
    return midnight + _SECONDS[second]


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationOptions:
    seed: int = 42
    events: int | None = None
    """Approximate number of events; ``instances`` is derived from it."""
    instances: int | None = None
    hosts: int = 40
    days: int = 1460
    cutover: float = 0.88
    """Fraction of the period after which the cloud runs Rocky (events carry their host)."""
    deleted: float = 0.35
    """Share of instances deleted before the end."""
    archived: float = 0.4
    """Share of deleted instances whose rows were archived into shadow_* (from Newton)."""
    start: datetime = datetime(2015, 6, 1)
    first_release: str = "kilo"
    """Release in service at ``start``; each release to ``last_release`` gets an equal era."""
    last_release: str = "queens"
    rolling_days: int = 0
    """Days over which the computes follow each control-plane upgrade, one by one, each
    drained with ``host-evacuate-live`` first (0: the whole cloud upgrades at once)."""
    same_host_resizes: float = 0.0
    """Share of resizes whose first candidate is their own host (``allow_resize_to_same_host``)."""
    api_clock_skew: float = 0.0
    """Seconds nova-api's clock runs ahead of the conductors' (negative: behind); opt-in."""
    surgery_rate: float = 0.0
    """Share of operations replaced by operator DB surgery (host moved by hand); opt-in."""
    contradiction_rate: float = 0.0
    """Share of actions whose finishes go to their attempt's own row (patched Nova); opt-in."""
    rates: Rates = field(default_factory=Rates)
    """How often each operation and each of its outcomes happens."""

    def validate(self) -> None:
        self.rates.validate()
        if self.events is not None and self.events < 1:
            raise BadInput(f"--events must be at least 1 (got {self.events})")
        if self.instances is not None and self.instances < 1:
            raise BadInput(f"--instances must be at least 1 (got {self.instances})")
        if self.hosts < 3:
            raise BadInput(f"--hosts must be at least 3 so instances can move (got {self.hosts})")
        if self.days < 1:
            raise BadInput(f"--days must be at least 1 (got {self.days})")
        if self.rolling_days < 0:
            raise BadInput(f"--rolling-days must be 0 or more (got {self.rolling_days})")
        if abs(self.api_clock_skew) > 3600:
            raise BadInput(
                f"--api-clock-skew must be within an hour either way (got {self.api_clock_skew})"
            )
        rates = ("cutover", "deleted", "archived", "same_host_resizes", "surgery_rate")
        for name in (*rates, "contradiction_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                flag = name.replace("_", "-")
                raise BadInput(f"--{flag} must be between 0 and 1 (got {value})")
        for flag, value in (
            ("--first-release", self.first_release),
            ("--last-release", self.last_release),
        ):
            if value not in SIMULATED:
                raise BadInput(f"{flag} must be one of {', '.join(SIMULATED)} (got {value!r})")
        if release_index(self.first_release) > release_index(self.last_release):
            raise BadInput(
                f"--first-release {self.first_release} comes after --last-release "
                f"{self.last_release}: pick a first release no later than the last"
            )


@dataclass(frozen=True)
class Era:
    release: str
    start: int
    """Epoch seconds, included."""
    end: int
    """Epoch seconds, excluded."""

    def to_dict(self) -> dict:
        return {
            "release": self.release,
            "from": _at(self.start).isoformat(sep=" "),
            "to": _at(self.end).isoformat(sep=" "),
        }


def plan_eras(options: SimulationOptions) -> list[Era]:
    """``first_release .. last_release`` share the time before the cut-over, then Rocky.

    The whole cloud upgrades at each boundary (no mixed-version periods).
    """
    begin = _epoch(options.start)
    end = begin + options.days * DAY
    cut = begin + round(options.cutover * options.days * DAY)
    names = between(options.first_release, options.last_release)
    eras: list[Era] = []
    if cut > begin:
        span = cut - begin
        bounds = [begin + round(span * k / len(names)) for k in range(len(names) + 1)]
        eras += [Era(n, bounds[k], bounds[k + 1]) for k, n in enumerate(names)]
    if end > cut:
        eras.append(Era(ROCKY, cut, end))
    return eras


# -- rolling upgrades (opt-in) ----------------------------------------------------------
#: How long before its upgrade an operator drains a compute (host-evacuate-live).
DRAIN_LEAD = (1800, 7200)
#: A rolling window never takes more than this share of its era.
ROLLING_SHARE = 0.8


@dataclass(frozen=True)
class RollingPlan:
    """When each compute followed each control-plane upgrade, and when it was drained.

    Operators upgrade the control plane first, then the computes one by one
    (the compute RPC pinned to the oldest compute's version: ``[upgrade_levels]
    compute=kilo`` in Liberty, ``auto`` from 13.0.0 ``_determine_version_cap``), each drained with ``nova host-evacuate-live`` before
    its upgrade.
    """

    upgrades: dict[str, list[int]]
    """Per compute, per era: when it started running that era's release."""
    done: list[int]
    """Per era: when its last compute was upgraded."""
    drains: list[tuple[int, str]]


def plan_rolling(
    eras: list[Era], hosts: list[str], days: int, rng: random.Random
) -> RollingPlan | None:
    """Each era's computes upgraded in a random order, evenly over ``days`` after its start."""
    if days <= 0 or not eras:
        return None
    upgrades = {h: [eras[0].start] for h in hosts}
    done = [eras[0].start]
    drains: list[tuple[int, str]] = []
    for era in eras[1:]:
        window = min(days * DAY, int((era.end - era.start) * ROLLING_SHARE))
        order = list(hosts)
        rng.shuffle(order)
        when = era.start
        for number, host in enumerate(order, 1):
            when = era.start + number * window // len(order)
            upgrades[host].append(when)
            drains.append((max(era.start, when - rng.randint(*DRAIN_LEAD)), host))
        done.append(when)
    drains.sort()
    return RollingPlan(upgrades, done, drains)


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


# -- one operation's writes ------------------------------------------------------------


class _Action:
    __slots__ = ("error_at", "fallback", "id", "last", "shift", "start")

    def __init__(self, action_id: int, start: int, fallback: bool = False, shift: int = 0):
        self.id = action_id
        self.start = start
        self.shift = shift
        """Seconds nova-api's clock added to ``start_time`` (``--api-clock-skew``)."""
        self.error_at: int | None = None
        self.last = start
        self.fallback = fallback
        """An old action an admin-context event fell back to: Queens does not touch it."""


class _Step:
    """The event and fault writes of one operation, applied in time order.

    Nova stamps them with the conductor's clock as they happen, so their ids,
    and which row of a repeated event name gets the last finish, follow time;
    ties keep the order the operation's code gave (cause before effect).
    """

    __slots__ = ("actions", "beh", "life", "writes")

    def __init__(self, life: _Life, beh: Behaviour):
        self.life = life
        self.beh = beh
        self.writes: list[tuple] = []
        self.actions: list[_Action] = []

    def action(
        self, name: str, t: int, *, user: bool = True, request_id: str | None = None
    ) -> _Action:
        life = self.life
        shift = life.sim.api_shift()
        action_id = life.b.action(
            life.uuid,
            name,
            _at(t + shift),
            request_id=request_id or life.request_id(),
            project_id=life.project if user else None,
            user_id=life.user,
            archived=life.archived,
        )
        life.last_action = action_id
        act = _Action(action_id, t, shift=shift)
        life.sim.maybe_patched_finish(action_id)
        self.actions.append(act)
        return act

    def latest_action(self) -> _Action:
        """The Liberty+ fallback for admin contexts: the instance's newest action."""
        act = _Action(self.life.last_action, 0, fallback=True)
        self.actions.append(act)
        return act

    def start(self, t: int, act: _Action, name: str, host: str) -> None:
        self.writes.append((t, len(self.writes), 0, act, name, host))

    def finish(self, t: int, act: _Action, name: str, error: bool = False) -> None:
        self.writes.append((t, len(self.writes), 1, act, name, error))

    def fault(self, t: int, host: str, message: str) -> None:
        self.writes.append((t, len(self.writes), 2, None, message, host))

    def commit(self) -> None:
        life = self.life
        sim = life.sim
        b = life.b
        uuid, archived, table = life.uuid, life.archived, life.events_table
        append_truth = sim.truth.append
        event_start, event_finish, fault = b.event_start, b.event_finish, b.fault
        era = sim.era_at(self.writes[0][0]) if self.writes else None
        self.writes.sort()
        if self.writes and self.writes[-1][0] > life.busy_until:
            life.busy_until = self.writes[-1][0]
        for t, _, kind, act, name, extra in self.writes:
            moment = _at(t)
            if kind == 0:
                if not era.start <= t < era.end:
                    era = sim.era_at(t)
                # A compute still on Queens calls EventReporter without a host (18.0.0
                # compute/utils.py EventReporter takes it; 17.0.0's does not).
                recorded = era is sim.rocky and (
                    sim.rolling is None or sim.compute_behaviour(extra, t).records_event_host
                )
                event_id = event_start(
                    uuid, act.id, name, moment, host=extra if recorded else None, archived=archived
                )
                append_truth((table, event_id, name, extra, recorded, era.release))
                if t > act.last:
                    act.last = t
            elif kind == 1:
                event_finish(act.id, name, moment, result="Error" if extra else "Success")
                if t > act.last:
                    act.last = t
                if extra and act.error_at is None:
                    act.error_at = t
            else:
                fault(uuid, extra, moment, message=name, archived=archived)
        follows = self.beh.action_updated_at_follows_events
        for act in self.actions:
            b.forget(act.id)
            if act.fallback:
                continue  # Queens: a fallback event does not bump updated_at (17.0.0 DB:action_event_start)
            if follows:
                values = {"updated_at": _at(act.last)}
                if act.error_at is not None:
                    values["message"] = "Error"
                b.update_action(act.id, archived=archived, **values)
            elif act.error_at is not None:
                b.update_action(
                    act.id, archived=archived, message="Error", updated_at=_at(act.error_at)
                )
        self.writes = []
        self.actions = []


class _Migration:
    """A migrations row, written (``id`` taken at creation) once its op is over."""

    __slots__ = (
        "created",
        "dest",
        "dest_host",
        "dest_node",
        "id",
        "kind",
        "new_flavor",
        "old_flavor",
        "source",
        "source_node",
        "status",
        "updated",
        "written",
    )

    def __init__(self, row_id, kind, source, source_node, dest, status, created, flavors):
        self.id = row_id
        self.kind = kind
        self.source = source
        self.source_node = source_node
        self.dest = dest
        self.dest_node: str | None = None
        self.dest_host: str | None = None
        self.status = status
        self.old_flavor, self.new_flavor = flavors
        self.created = created
        self.updated: int | None = None
        self.written = False


class _Volume:
    """A volume block_device_mapping row, written when detached or at the end."""

    __slots__ = (
        "attachment_id",
        "boot",
        "connected",
        "connector",
        "created",
        "deleted_at",
        "id",
        "updated",
    )

    def __init__(self, row_id: int, created: int, boot: bool = False):
        self.id = row_id
        self.created = created
        self.boot = boot
        self.connected = False
        self.connector: str | None = None
        self.attachment_id: str | None = None
        self.updated = created
        self.deleted_at: int | None = None


# -- one instance ----------------------------------------------------------------------


class _Life:
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
        sim: _Simulation,
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
        self.volumes: list[_Volume] = []
        self.shelve_keys: list[tuple[int, str, str, int]] | None = None
        self.shelved_at: int | None = None
        """When it was shelved and kept on its host (what the periodic offload waits on)."""
        self.resized: tuple | None = None
        self.stale: list[_Migration] = []
        """Live pre-migrating resize/migration rows Queens' conductor would reuse."""
        self.evacuations: list[_Migration] = []
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

    def step_for(self, t: int) -> _Step:
        return _Step(self, self.sim.behaviour_at(t))

    def move_to(self, host: str | None) -> None:
        self.host = host
        self.node = self.sim.nodes[host] if host is not None else None

    def defer(self, when: int, task: Callable[[int], None]) -> None:
        heapq.heappush(self.deferred, (when, self.sim.next_seq(), task))

    def new_migration(
        self, kind: str | None, source, source_node, dest, status: str, created: int, flavors
    ) -> _Migration:
        return _Migration(
            self.b.next_id("migrations"), kind, source, source_node, dest, status, created, flavors
        )

    def claim_dest(self, m: _Migration, dest: str, t: int) -> None:
        """RT._create_migration / _claim_existing_migration: the dest's columns."""
        m.dest = dest
        m.dest_node = self.sim.nodes[dest]
        m.dest_host = self.sim.ips[dest]
        m.status = "pre-migrating"
        m.updated = t

    def save(self, m: _Migration) -> None:
        if not m.written:
            m.written = True
            self.b.migration(
                self.uuid,
                kind=m.kind,
                source=m.source,
                dest=m.dest,
                status=m.status,
                created=_at(m.created),
                updated=_at(m.updated) if m.updated is not None else None,
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
                updated_at=_at(m.updated) if m.updated is not None else None,
            )

    def refresh_volumes(self, host: str, t: int, beh: Behaviour) -> None:
        """initialize_connection from ``host``: the saved connector names it from Mitaka."""
        beh = self.sim.compute_behaviour(host, t, beh)  # the compute's own release
        for volume in self.volumes:
            if volume.deleted_at is None:
                volume.connected = True
                if volume.attachment_id is None:
                    volume.connector = host if beh.stores_connector else None
                volume.updated = t

    def new_attachments(self) -> None:
        """Queens replaces new-style attachment ids on offload and live migration."""
        for volume in self.volumes:
            if volume.attachment_id is not None and volume.deleted_at is None:
                volume.attachment_id = self.random_uuid()

    def write_volume(self, volume: _Volume) -> None:
        extra: dict = {}
        if not volume.connected:
            extra["connection_info_json"] = None
        elif volume.attachment_id is not None:
            volume_id = str(uuidlib.UUID(int=(3 << 100) + volume.id))
            extra["connection_info_json"] = attachment_connection_info(
                volume_id, volume.attachment_id, self.uuid
            )
        self.b.volume_attachment(
            self.uuid,
            _at(volume.created),
            connector_host=volume.connector,
            deleted_at=_at(volume.deleted_at) if volume.deleted_at is not None else None,
            attachment_id=volume.attachment_id,
            archived=self.archived,
            row_id=volume.id,
            updated=_at(volume.updated),
            boot_index=0 if volume.boot else None,
            **extra,
        )

    def write_shelve_keys(self, deleted_at: int | None) -> None:
        if self.shelve_keys is None:
            return
        for row_id, key, value, created in self.shelve_keys:
            self.b.system_metadata(
                self.uuid,
                key,
                value,
                _at(created),
                deleted_at=_at(deleted_at) if deleted_at is not None else None,
                archived=self.archived,
                row_id=row_id,
            )
        self.shelve_keys = None

    def fail(self, s: _Step, act: _Action, name: str, host: str, t: int) -> None:
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
            "launched_at": _at(self.launched_at) if self.launched_at is not None else None,
            "vm_state": self.vm_state,
            "updated_at": _at(self.deleted_at if self.deleted_at is not None else self.t),
        }
        if self.deleted_at is not None:
            deleted = _at(self.deleted_at)
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
        if state in _INVERSE:
            self.generic(_INVERSE[state])
            return
        if state in ("active", "stopped") and self.resized is None and self.sim.surgery_due():
            self.surgery()
            return
        roll = self.r()
        mix = self.sim.mix
        if roll < mix[0]:
            bounds, names = _STOPPED_OPS if state == "stopped" else _ACTIVE_OPS
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

    # -- build -------------------------------------------------------------------------
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
            created_at=_at(t0),
            archived=self.archived,
            vm_state="building",
            launched_on=None,
        )
        for key, value in (
            ("image_base_image_ref", self.random_uuid()),
            ("image_min_disk", "20" if self.bfv else "0"),
            ("image_disk_format", "qcow2"),
        ):
            b.system_metadata(self.uuid, key, value, _at(t0), archived=self.archived)
        if self.bfv:  # the API creates the boot volume's BDM before any host is chosen
            self.volumes.append(_Volume(b.next_id("block_device_mapping"), t0, boot=True))
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

    # -- generic operations ------------------------------------------------------------
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
            volume = _Volume(self.b.next_id("block_device_mapping"), start)
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

    def rebuild(self, s: _Step) -> None:
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

    # -- cold moves --------------------------------------------------------------------
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
        rows: list[_Migration] = []  # dest-created rows of this action (Kilo-Pike)
        tc = t0 + self.between(1, 2)
        shared: _Migration | None = None
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
        m: _Migration | None = None
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

    def reusable(self, kind: str) -> _Migration | None:
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

    def save_rows(self, rows: list[_Migration]) -> None:
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

    # -- live migration ----------------------------------------------------------------
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

    def reject_live_candidate(
        self, s: _Step, a: _Action, candidate: str, source: str, t: int
    ) -> int:
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
        self, s: _Step, a: _Action, dest: str, t: int, recorded: bool, shared_storage: bool
    ) -> None:
        """Cast only when the instance path is not shared (do_cleanup)."""
        if recorded and not shared_storage:
            rb = t + self.between(0, 2)
            s.start(rb, a, "compute_rollback_live_migration_at_destination", dest)
            s.finish(rb + self.between(1, 10), a, "compute_rollback_live_migration_at_destination")

    # -- evacuation --------------------------------------------------------------------
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

    def save_evacuations(self, own: _Migration | None, looked: _Migration | None) -> None:
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

    # -- shelve ------------------------------------------------------------------------
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
        stamp = f"{_at(snap).isoformat()}.{self.between(0, 999999):06d}"
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

    def offloaded_volume_operation(self) -> None:
        """Queens attach/detach on a shelved-offloaded instance: api_* events only."""
        t0 = self.t
        s = self.step_for(t0)
        live = [v for v in self.volumes if v.deleted_at is None and not v.boot]
        name = "detach_volume" if live and self.r() < 0.5 else "attach_volume"
        a = s.action(name, t0)
        start = t0 + self.between(0, 1)
        end = start + self.between(1, 5)
        s.start(start, a, f"api_{name}", self.api())
        s.finish(end, a, f"api_{name}")
        s.commit()
        if name == "attach_volume":  # not connected until an unshelve attaches it
            volume = _Volume(self.b.next_id("block_device_mapping"), start)
            volume.attachment_id = self.random_uuid()
            self.volumes.append(volume)
        else:
            volume = live[int(self.r() * len(live))]
            volume.deleted_at = end
            self.write_volume(volume)
            self.volumes.remove(volume)

    # -- delete ------------------------------------------------------------------------
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

    def delete_resized(self, s: _Step) -> None:
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
        when = _at(at)
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


# -- the cloud -------------------------------------------------------------------------


class _Simulation:
    def __init__(self, options: SimulationOptions, builder: HistoryBuilder, rng: random.Random):
        self.options = options
        self.rates = options.rates
        self.builder = builder
        self.rng = rng
        self.hosts = [f"cmp-{n:04d}" for n in range(1, options.hosts + 1)]
        self.nodes = {h: f"{h}.nova.local" for h in self.hosts}
        self.ips = {h: f"10.0.{n // 250}.{n % 250 + 1}" for n, h in enumerate(self.hosts)}
        self.conductors = [f"ctl-{n}" for n in range(1, 4)]
        self.api_nodes = ["api-1", "api-2"]
        self.begin = _epoch(options.start)
        self.end = self.begin + options.days * DAY
        self.eras = plan_eras(options)
        self.era_starts = [e.start for e in self.eras]
        self.behaviours = [BEHAVIOURS[e.release] for e in self.eras]
        self.rocky = next((e for e in self.eras if e.release == ROCKY), None)
        # Per-compute configuration, fixed for the whole history.
        self.offload_later = {h: rng.random() < self.rates.offload_later_hosts for h in self.hosts}
        self.auto_confirm = {h: rng.random() < self.rates.auto_confirm_hosts for h in self.hosts}
        # Kilo-Mitaka cannot archive deleted instances that have actions (releases.py,
        # archives_instances_with_actions):
        # archiving needs a Newton+ release at some time after the delete.
        self.can_archive = bool(self.eras) and self.behaviours[-1].archives_instances_with_actions
        acc, self.mix = 0.0, []
        for weight in self.rates.operation_mix:
            acc += weight
            self.mix.append(acc)
        self.truth: list[tuple] = []
        self.writer: Callable[[list[tuple]], None] | None = None
        self._seq = 0
        # Rolling upgrades (opt-in): its own generator, so the default histories
        # stay what they were for every seed.
        self.rolling = plan_rolling(
            self.eras, self.hosts, options.rolling_days, random.Random(f"rolling-{options.seed}")
        )
        self.lives: dict[int, _Life] = {}
        """Instances alive on a host, for the drains (rolling upgrades only)."""
        # The opt-in behaviours draw from their own generator: without them the
        # history is the same as before they existed, seed for seed.
        self.extra = random.Random(f"{options.seed}-opt")

    def api_shift(self) -> int:
        """Whole seconds nova-api's clock adds to a request's timestamp.

        The true moment lies anywhere in its second; nova-api reads it
        ``api_clock_skew`` seconds off, and the database keeps whole seconds.
        """
        skew = self.options.api_clock_skew
        if not skew:
            return 0
        return math.floor(self.extra.random() + skew)

    def surgery_due(self) -> bool:
        rate = self.options.surgery_rate
        return bool(rate) and self.extra.random() < rate

    def maybe_patched_finish(self, action_id: int) -> None:
        rate = self.options.contradiction_rate
        if rate and self.extra.random() < rate:
            self.builder.own_finishes.add(action_id)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def era_at(self, t: int) -> Era:
        return self.eras[max(0, bisect_right(self.era_starts, t) - 1)]

    def behaviour_at(self, t: int) -> Behaviour:
        return self.behaviours[max(0, bisect_right(self.era_starts, t) - 1)]

    # -- rolling upgrades: what the compute's own release decides ----------------------
    def compute_behaviour(
        self, host: str | None, t: int, beh: Behaviour | None = None
    ) -> Behaviour:
        """The release ``host`` ran at ``t`` if it is a compute (else the control plane's).

        Without rolling windows every compute runs the control plane's release:
        ``beh`` (or the era's) is returned as is.
        """
        plan = self.rolling
        if plan is None or host not in self.nodes:
            return beh if beh is not None else self.behaviour_at(t)
        return self.behaviours[max(0, bisect_right(plan.upgrades[host], t) - 1)]

    def computes_at_least(self, t: int, release: str) -> bool:
        """Whether every compute ran ``release`` or later at ``t``.

        What ``Service.get_minimum_version`` and the pinned compute RPC
        see: always true without rolling windows (callers check the control
        plane's release themselves).
        """
        plan = self.rolling
        if plan is None:
            return True
        era = self.eras[max(0, bisect_right(plan.done, t) - 1)]
        return release_index(era.release) >= release_index(release)

    def drains(self) -> Generator[int, None, None]:
        for when, host in self.rolling.drains:
            yield when
            self.drain(host, when)

    def drain(self, host: str, when: int) -> None:
        """``nova host-evacuate-live host``: a live migration of each ACTIVE instance on it.

        The API refuses the others (not ACTIVE or PAUSED), which stay.  The
        requests follow each other by a few seconds; the scheduler picks each
        destination (no target host).
        """
        t = when
        for life in list(self.lives.values()):
            if (
                life.host != host
                or life.vm_state != "active"
                or life.dead
                or life.resized is not None
                or life.offloaded
                or life.deleted_at is not None
                or life.t > t
                # An operation of its own is still running: its task_state is set, and
                # API.live_migrate's check_instance_state (task_state defaults to None)
                # refuses it (2014.1 compute/api.py ~3007, 17.0.0 ~4156).
                or life.busy_until > t
            ):
                continue
            life.t = t
            life.live_migrate(drain=True)
            # Its own next request waits for this one (the same guard, the other way).
            life.t = max(life.t, life.busy_until)
            t += 1 + int(self.rng.random() * 20)

    def register_services(self) -> None:
        """nova-compute (and its compute node) per host; conductor and scheduler on ctl-N."""
        b = self.builder
        created = _at(self.begin - DAY)
        for host in self.hosts:
            service_id = b.service(host, "nova-compute", created_at=created)
            b.compute_node(host, self.nodes[host], service_id=service_id, created_at=created)
        for host in self.conductors:
            b.service(host, "nova-conductor", created_at=created)
            b.service(host, "nova-scheduler", created_at=created)

    def life(self, born: int) -> _Life:
        r = self.rng.random
        if r() < self.options.deleted:
            end = min(self.end - 1, born + int(self.rng.expovariate(1 / (90 * DAY))) + 3600)
            archived = self.can_archive and r() < self.options.archived
            return _Life(self, born, True, archived, end, r() < self.rates.deleted_while_resized)
        return _Life(self, born, False, False, self.end)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer(self.truth)
        else:
            self.builder.discard()
        self.truth = []

    def run(self, instances: int, threshold: int = 50_000) -> int:
        span = self.end - self.begin
        births = sorted(self.begin + int(self.rng.random() * span * 0.97) for _ in range(instances))
        heap: list[tuple[int, int, Generator]] = []
        if self.rolling is not None:
            self._advance(heap, -1, self.drains())
        for number, born in enumerate(births):
            while heap and heap[0][0] <= born:
                self._resume(heap)
                if len(self.truth) >= threshold:
                    self.flush()
            self._advance(heap, number, self.life(born).run())
        while heap:
            self._resume(heap)
            if len(self.truth) >= threshold:
                self.flush()
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


class _BackgroundWriter:
    """Writes batches in order on its own thread, so the database works while we simulate.

    The connection is used by this thread only, one batch at a time; at most
    one batch waits, so memory stays bounded.  An error is raised in the
    simulating thread at its next ``put`` or at ``close``.
    """

    def __init__(self, write: Callable[[tuple], None]):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="simulate-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            if self._error is None and not self._stopped:
                try:
                    self._write(work)
                except BaseException as exc:  # re-raised in the simulating thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, work: tuple) -> None:
        self._raise()
        self._queue.put(work)

    def close(self) -> None:
        """Wait until every batch is written."""
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def abandon(self) -> None:
        """Stop after the batch being written (the simulation failed or was interrupted)."""
        self._stopped = True
        self._queue.put(None)
        self._thread.join()


@contextlib.contextmanager
def _rare_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while rows pile up.

    A simulation allocates millions of short-lived row lists; with the default
    thresholds the collector's scans cost about a third of the run.  Nothing
    the simulation keeps forms reference cycles, so collecting rarely loses
    nothing; the thresholds are restored afterwards.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def plan_instances(options: SimulationOptions) -> int:
    """How many instances give about ``options.events`` events (a dry calibration run)."""
    if options.instances is not None:
        return options.instances
    target = options.events if options.events is not None else 20_000
    sample = 600
    counted = 0

    def count(truth: list[tuple]) -> None:
        nonlocal counted
        counted += len(truth)
        builder.discard()

    builder = HistoryBuilder()
    simulation = _Simulation(options, builder, random.Random(options.seed ^ 0x5EED))
    simulation.writer = count
    with _rare_collections():
        simulation.run(sample)
        simulation.flush()
    return max(1, round(target * sample / max(counted, 1)))


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
        sa.Column("era", sa.String(16), nullable=False),
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
        for table in WRITTEN_TABLES:
            if table not in names:
                raise BadInput(
                    f"{mask_url(url)} has {EVENTS} but no {table} table: not a Nova cell "
                    "schema simulate can write into (use an empty database)"
                )
    else:
        models.create_cell_schema(conn)
        names = set(sa.inspect(conn).get_table_names())
    ensure_state_schema(conn, location)
    truth, _ = truth_tables(location.schema)
    truth.metadata.drop_all(conn)
    truth.metadata.create_all(conn)
    return names


def simulate(
    url: URL,
    options: SimulationOptions | None = None,
    *,
    state_schema: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Write a simulated history into ``url`` (an empty database or a new SQLite file).

    Batches of complete operations are written by a background thread while the
    simulation goes on; ``progress`` gets each batch's number of events (called
    from that thread).
    """
    options = options or SimulationOptions()
    options.validate()
    location = resolve_state_location(url, state_schema)
    instances = plan_instances(options)
    started = time.perf_counter()
    engine = create_engine(url, location, attach="create", must_exist=False)
    try:
        with connect(engine) as conn:
            try:
                _prepare(conn, location, url)
                conn.commit()
                truth_columns = ("event_table", "event_id", "event", "host", "recorded", "era")
                builder = HistoryBuilder()
                builder.archive_flags = True
                simulation = _Simulation(options, builder, random.Random(options.seed))
                counts: dict[str, int] = {}

                def write(work: tuple[Batch, list[tuple]]) -> None:
                    batch, truth = work
                    try:
                        written = builder.write_batch(conn, batch)
                    except KeyError as exc:
                        raise BadInput(
                            f"{mask_url(url)}: {exc.args[0]}: simulate needs Nova's shadow tables"
                        ) from None
                    for name, count in written.items():
                        counts[name] = counts.get(name, 0) + count
                    bulk.insert_rows(
                        conn, TRUTH_TABLE, truth_columns, truth, schema=location.schema
                    )
                    conn.commit()
                    if progress is not None:
                        progress(len(truth))

                writer = _BackgroundWriter(write)
                simulation.writer = lambda truth: writer.put((builder.take(), truth))
                try:
                    with _rare_collections():
                        simulation.register_services()
                        simulation.run(instances)
                        simulation.flush()
                except BaseException:
                    writer.abandon()
                    raise
                writer.close()
                _analyze(conn)
                counts = dict(sorted(counts.items()))
                _, meta = truth_tables(location.schema)
                conn.execute(meta.delete())
                cut = simulation.rocky.start if simulation.rocky else simulation.end
                conn.execute(
                    meta.insert(),
                    [
                        {"name": "options", "value": json.dumps(_options_dict(options))},
                        {"name": "counts", "value": json.dumps(counts)},
                        {"name": "cutover", "value": _at(cut).isoformat(sep=" ")},
                        {
                            "name": "eras",
                            "value": json.dumps([e.to_dict() for e in simulation.eras]),
                        },
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


def _analyze(conn: sa.Connection) -> None:
    """Fresh planner statistics, as a live database has (bulk loads leave none)."""
    backend = conn.dialect.name
    if backend == "postgresql":
        conn.exec_driver_sql("ANALYZE")
    elif backend in ("mysql", "mariadb"):
        names = sorted(n for n in sa.inspect(conn).get_table_names() if n != "alembic_version")
        tables = ", ".join(f"`{n}`" for n in names)
        conn.exec_driver_sql(f"ANALYZE TABLE {tables}").fetchall()
    else:
        conn.exec_driver_sql("ANALYZE main")
    conn.commit()


def _options_dict(options: SimulationOptions) -> dict:
    data = asdict(options)
    data["start"] = options.start.isoformat()
    if options.rates == Rates():
        del data["rates"]  # the defaults go unsaid, as in --json and simulation_meta
    return data
