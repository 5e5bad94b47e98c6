"""What a backfill is asked to do (:class:`BackfillOptions`) and what it did
(:class:`BackfillResult`, the ``--json`` document of ``backfill``)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from actionhost_backfill.engine.applier import WriteOptions
from actionhost_backfill.engine.evidence import SnapshotStats
from actionhost_backfill.engine.settled import decision_basis
from actionhost_backfill.engine.throttling import (
    ThrottleStats,
    throttle_dict,
)
from actionhost_backfill.errors import BadInput
from actionhost_backfill.inference.eras import parse_releases
from actionhost_backfill.nova.tables import EVENTS, SHADOW_EVENTS

#: The most planner processes ``--workers`` accepts.
MAX_WORKERS = 64
#: Without ``--workers``: this many planners (one per core of a 2-core machine: more
#: measured no faster there, docs/benchmarks.md) ...
AUTO_WORKERS = 2
#: ... when at least this many NULL-host events are to be decided (below it, starting
#: the planners and taking their shares costs about what they save), else one.
AUTO_EVENTS = 200_000


def workers_for(requested: int | None, pending: int) -> int:
    """How many planners decide ``pending`` NULL-host events (``--workers``, or chosen)."""
    if requested is not None:
        return requested
    if pending >= AUTO_EVENTS and (os.cpu_count() or 1) >= AUTO_WORKERS:
        return AUTO_WORKERS
    return 1


@dataclass
class BackfillOptions(WriteOptions):
    until_complete: bool = False
    include_shadow: bool = False
    dry_run: bool = False
    new_run: bool = False
    sample: int = 5
    releases: str | None = None
    """``--releases``: the operator's upgrade history (``inference.eras``); None: detect."""
    exclude_rules: frozenset[str] = frozenset()
    """Rules whose values are not written (``--exclude-rule``): NULL, ``excluded-rule``."""
    workers: int | None = None
    """``--workers``: planners each reading and deciding a share of the instances in a
    process of its own (``engine/workers.py``); 1: one planner, in the runner; None:
    :func:`workers_for` chooses."""

    def validate(self) -> None:
        super().validate()
        if self.workers is not None and not 1 <= self.workers <= MAX_WORKERS:
            raise BadInput(f"--workers must be between 1 and {MAX_WORKERS} (got {self.workers})")
        parse_releases(self.releases)

    def tables(self) -> list[str]:
        return [EVENTS, SHADOW_EVENTS] if self.include_shadow else [EVENTS]

    def _declared(self) -> dict | None:
        declared = parse_releases(self.releases) or {}
        return {k: v.isoformat() for k, v in declared.items()} or None

    def scope(self) -> dict:
        """What a run covers; resuming with another scope is refused."""
        scope: dict = {"include_shadow": self.include_shadow}
        if self.releases:  # other eras, other decisions: a resume must use the same
            scope["releases"] = self._declared()
        if self.exclude_rules:  # likewise for the rules the operator excluded
            scope["exclude_rules"] = sorted(self.exclude_rules)
        return scope

    def decisions(self) -> dict:
        """What besides Nova's rows decides an event: a rerun keeps the NULL decisions
        of complete runs made on the same basis only (``engine.settled``)."""
        return decision_basis(self._declared(), self.exclude_rules)


@dataclass
class BackfillResult:
    database: str
    dry_run: bool
    run_id: int | None = None
    resumed: bool = False
    outcome: str = "complete"
    """complete, partial (more to do) or interrupted."""
    filled_by_rule: Counter = field(default_factory=Counter)
    null_by_reason: Counter = field(default_factory=Counter)
    skipped: int = 0
    examined: int = 0
    batches: int = 0
    retries: int = 0
    elapsed: float = 0.0
    remaining: int = 0
    snapshot: SnapshotStats | None = None
    samples: list[dict] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)
    plan_seconds: float = 0.0
    throttle: ThrottleStats | None = None
    """Time paused by throttle checks, how often, the worst replica lag seen."""
    """Time spent deciding (reads only); on the servers applying overlaps it (engine/pipeline.py)."""
    message: str | None = None
    nothing_to_decide: bool = False
    """No run was opened: every NULL-host event is decided already (or there is none)."""
    already_decided: int = 0
    """NULL-host events left alone: complete runs decided them, their evidence is unchanged."""
    passes: int = 0
    """--max-rows with --until-complete: passes of at most --max-rows written rows."""
    notices: list[str] = field(default_factory=list)
    """What the operator was told on stderr before the run (e.g. no replica found)."""
    excluded_rules: frozenset[str] = frozenset()
    workers: int = 1
    """The planners that decided (``--workers``, or chosen: :func:`workers_for`)."""

    @property
    def filled(self) -> int:
        return sum(self.filled_by_rule.values())

    @property
    def left_null(self) -> int:
        return sum(self.null_by_reason.values())

    @property
    def rows_per_second(self) -> float:
        return self.examined / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "complete" else 1

    def batch_percentiles(self) -> dict[str, float] | None:
        """p50 / p99 / max of batch durations in seconds (what a lock holder waits)."""
        if not self.batch_seconds:
            return None
        ordered = sorted(self.batch_seconds)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

        return {"p50": pick(0.50), "p99": pick(0.99), "max": round(ordered[-1], 4)}

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            "resumed": self.resumed,
            "outcome": self.outcome,
            "examined": self.examined,
            "filled": self.filled,
            "filled_by_rule": dict(sorted(self.filled_by_rule.items())),
            "left_null": self.left_null,
            "null_by_reason": dict(sorted(self.null_by_reason.items())),
            "skipped_recorded_meanwhile": self.skipped,
            "batches": self.batches,
            "retries": self.retries,
            "elapsed_seconds": round(self.elapsed, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "remaining": self.remaining,
            "batch_seconds": self.batch_percentiles(),
            "plan_seconds": round(self.plan_seconds, 3),
            "throttled": throttle_dict(self.throttle),
            "snapshot": None
            if self.snapshot is None
            else {
                "migrations": self.snapshot.migrations,
                "events": self.snapshot.events,
                "shelve_records": self.snapshot.shelve_records,
                "volume_connectors": self.snapshot.volume_connectors,
                "archived_actions": self.snapshot.archived_actions,
                "compute_hosts": self.snapshot.compute_hosts,
                "seconds": round(self.snapshot.seconds, 3),
                "eras": self.snapshot.eras.to_dict() if self.snapshot.eras else None,
                "clock": self.snapshot.clock,
            },
            "excluded_rules": sorted(self.excluded_rules),
            "samples": self.samples,
            "message": self.message,
            "nothing_to_decide": self.nothing_to_decide,
            "already_decided": self.already_decided,
            "passes": self.passes,
            "workers": self.workers,
            "notices": self.notices,
            "exit_code": self.exit_code,
        }
