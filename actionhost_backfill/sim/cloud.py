"""The cloud: its hosts and services, the eras, and the instances' lives run in time order."""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Generator

from actionhost_backfill.nova.releases import BEHAVIOURS, ROCKY, Behaviour
from actionhost_backfill.nova.releases import index as release_index
from actionhost_backfill.sim.clock import DAY, db_time, epoch_seconds
from actionhost_backfill.sim.eras import Era, plan_eras, plan_rolling
from actionhost_backfill.sim.history import HistoryBuilder
from actionhost_backfill.sim.life import Life
from actionhost_backfill.sim.options import SimulationOptions

# -- the cloud -------------------------------------------------------------------------


class Simulation:
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
        self.begin = epoch_seconds(options.start)
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
        self.lives: dict[int, Life] = {}
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
        created = db_time(self.begin - DAY)
        for host in self.hosts:
            service_id = b.service(host, "nova-compute", created_at=created)
            b.compute_node(host, self.nodes[host], service_id=service_id, created_at=created)
        for host in self.conductors:
            b.service(host, "nova-conductor", created_at=created)
            b.service(host, "nova-scheduler", created_at=created)

    def life(self, born: int) -> Life:
        r = self.rng.random
        if r() < self.options.deleted:
            end = min(self.end - 1, born + int(self.rng.expovariate(1 / (90 * DAY))) + 3600)
            archived = self.can_archive and r() < self.options.archived
            return Life(self, born, True, archived, end, r() < self.rates.deleted_while_resized)
        return Life(self, born, False, False, self.end)

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
