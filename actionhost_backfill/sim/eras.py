"""Which release ran when: the eras, and the computes' rolling upgrades (opt-in)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from actionhost_backfill.nova.releases import ROCKY, between
from actionhost_backfill.sim.clock import DAY, db_time, epoch_seconds
from actionhost_backfill.sim.options import SimulationOptions


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
            "from": db_time(self.start).isoformat(sep=" "),
            "to": db_time(self.end).isoformat(sep=" "),
        }


def plan_eras(options: SimulationOptions) -> list[Era]:
    """``first_release .. last_release`` share the time before the cut-over, then Rocky.

    The whole cloud upgrades at each boundary (no mixed-version periods).
    """
    begin = epoch_seconds(options.start)
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
