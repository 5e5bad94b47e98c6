"""What ``simulate`` is asked for: the history's shape and how often things happen."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from actionhost_backfill.errors import BadInput
from actionhost_backfill.nova.releases import SIMULATED
from actionhost_backfill.nova.releases import index as release_index
from actionhost_backfill.sim.clock import DAY


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
