"""``validate``: how right the backfill would be, measured on the operator's own cell.

Events written since the Rocky upgrade carry the host Nova recorded.  For a
sample of instances that have such events, a *pseudo cut-over* is chosen
inside each instance's recorded period: the recorded events before it are
hidden (as if the upgrade had come later), the ones after it keep anchoring
the instance's segments as recorded events do for real.  The hidden events
are decided by the same code path as the backfill and compared with what Nova
recorded.  Nothing is written: the evidence lives in temporary tables on the
reading connection, and no lock is taken.

What it cannot prove: the hidden events were written by Rocky or later, not
by the Kilo ... Queens releases whose events the backfill fills; behaviours
only older releases had (rows per rescheduled candidate, live migrations
without rows, ...) are not exercised by it.  ``accuracy`` on a simulated
history measures those.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db, preflight
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.errors import BadInput, ExitCode, SchemaNotReady
from actionhost_backfill.inference import InstanceHistory, infer, roles
from actionhost_backfill.inference.eras import Eras, parse_releases
from actionhost_backfill.nova import catalog
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema.ready import state_ready
from actionhost_backfill.state.location import resolve_state_location

#: One-sided confidence of the precision bound.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ValidateOptions:
    sample: int = 500
    """Instances to sample among those with recorded events."""
    seed: int = 1
    examples: int = 20
    """Wrong decisions to list (all are counted)."""
    releases: str | None = None
    """``--releases``: the operator's upgrade history; None: detect the eras."""
    exclude_rules: frozenset[str] = frozenset()
    """Rules the operator excluded (``--exclude-rule``): measured as the backfill would write."""

    def validate(self) -> None:
        parse_releases(self.releases)
        if not 1 <= self.sample <= 1_000_000:
            raise BadInput(f"--sample must be between 1 and 1000000 (got {self.sample})")
        if self.examples < 0:
            raise BadInput(f"--examples must be at least 0 (got {self.examples})")


@dataclass
class Tally:
    hidden: int = 0
    """Hidden compute events (the inferable ones)."""
    filled: int = 0
    wrong: int = 0

    @property
    def correct(self) -> int:
        return self.filled - self.wrong

    def figures(self) -> dict:
        return {
            "hidden": self.hidden,
            "filled": self.filled,
            "wrong": self.wrong,
            "precision_pct": _pct(self.correct, self.filled),
            "precision_lower_bound_pct": _pct_value(lower_bound(self.correct, self.filled)),
            "coverage_pct": _pct(self.filled, self.hidden),
        }


@dataclass
class ValidationReport:
    database: str
    sample: int
    seed: int
    instances_eligible: int = 0
    instances_sampled: int = 0
    hidden_events: int = 0
    """Every hidden event (control-plane ones included)."""
    total: Tally = field(default_factory=Tally)
    by_rule: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_event: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    null_by_reason: Counter = field(default_factory=Counter)
    wrong_examples: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    eras: Eras | None = None
    clock: dict = field(default_factory=dict)
    clock_line: str = ""
    excluded_rules: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return ExitCode.WRONG_HOSTS if self.total.wrong else ExitCode.OK

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "sample": self.sample,
            "seed": self.seed,
            "instances_eligible": self.instances_eligible,
            "instances_sampled": self.instances_sampled,
            "hidden_events": self.hidden_events,
            "confidence": CONFIDENCE,
            "total": self.total.figures(),
            "by_rule": {k: v.figures() for k, v in sorted(self.by_rule.items())},
            "by_event": {k: v.figures() for k, v in sorted(self.by_event.items())},
            "null_by_reason": dict(sorted(self.null_by_reason.items())),
            "wrong": self.wrong_examples,
            "clock": self.clock,
            "excluded_rules": self.excluded_rules,
            "seconds": round(self.seconds, 3),
            "eras": self.eras.to_dict() if self.eras else None,
            "exit_code": int(self.exit_code),
        }


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 3) if whole else None


def _pct_value(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 3)


# --------------------------------------------------------------------------- statistics


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction for the incomplete beta function."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def lower_bound(correct: int, total: int, confidence: float = CONFIDENCE) -> float | None:
    """One-sided Clopper-Pearson lower bound of a proportion (exact, conservative)."""
    if total == 0:
        return None
    if correct == 0:
        return 0.0
    alpha = 1.0 - confidence
    if correct == total:
        return alpha ** (1.0 / total)
    # P(X >= correct | total, p) = I_p(correct, total - correct + 1) grows with p.
    low, high = 0.0, 1.0
    for _ in range(200):
        mid = (low + high) / 2
        if _betainc(correct, total - correct + 1, mid) < alpha:
            low = mid
        else:
            high = mid
    return low


# --------------------------------------------------------------------------- validation


def _hide(
    history: InstanceHistory, rng: random.Random
) -> tuple[InstanceHistory, dict[int, tuple[str, str]]]:
    """A copy of ``history`` whose recorded hosts before a pseudo cut-over are blanked.

    Returns the copy and, per hidden event id, (recorded host, event name).
    """
    recorded = sorted(
        (
            event
            for action in history.actions
            for event in history.events.get(action.id, ())
            if event.host and event.start is not None
        ),
        key=lambda e: (e.start, e.id),
    )
    hide_count = rng.randint(1, len(recorded))
    cutover = recorded[hide_count - 1].start
    hidden = {e.id: (e.host, e.name or "") for e in recorded if e.start <= cutover}
    events = {
        action_id: [
            dataclasses.replace(e, host=None) if e.id in hidden else e for e in action_events
        ]
        for action_id, action_events in history.events.items()
    }
    return dataclasses.replace(history, events=events), hidden


def run_validate(
    url: URL, options: ValidateOptions | None = None, *, state_schema: str | None = None
) -> ValidationReport:
    """Measure the rules' precision on this cell's recorded events (reads only)."""
    options = options or ValidateOptions()
    options.validate()
    started = time.monotonic()
    location = resolve_state_location(url, state_schema)
    report = ValidationReport(database=mask_url(url), sample=options.sample, seed=options.seed)
    engine = db.create_engine(url, location, attach="if-exists", sqlite_begin="DEFERRED")
    try:
        with db.connect(engine) as conn:
            try:
                catalog.require_nova(conn, catalog.BACKFILL_TABLES)
                if not catalog.host_column(conn, catalog.EVENTS).present:
                    raise SchemaNotReady(
                        f"instance_actions_events.host is missing in {mask_url(url)}: this cell "
                        "has no recorded hosts to validate against (Nova writes them from Rocky)"
                    )
                request = preflight.read_request(conn, url, location)
                preflight.require(conn, url, request, "validate")
                audit_available = state_ready(conn, location)
                conn.rollback()
                snapshot = EvidenceSnapshot(
                    conn,
                    location,
                    audit_available=audit_available,
                    releases=parse_releases(options.releases),
                )
                try:
                    stats = snapshot.take()
                    report.eras = snapshot.eras
                    report.clock, report.clock_line = stats.clock, stats.clock_line
                    report.excluded_rules = sorted(options.exclude_rules)
                    _measure(conn, snapshot, options, report)
                finally:
                    snapshot.drop()
            except sa.exc.DBAPIError as exc:
                raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
    report.seconds = time.monotonic() - started
    return report


def _measure(
    conn: sa.Connection,
    snapshot: EvidenceSnapshot,
    options: ValidateOptions,
    report: ValidationReport,
) -> None:
    ev = snapshot.t_ev
    eligible = sorted(
        r[0]
        for r in conn.execute(
            sa.select(ev.c.instance_uuid)
            .where(ev.c.host.is_not(None), ev.c.start_time.is_not(None))
            .distinct()
        )
    )
    conn.commit()
    report.instances_eligible = len(eligible)
    rng = random.Random(options.seed)
    sampled = sorted(rng.sample(eligible, min(options.sample, len(eligible))))
    report.instances_sampled = len(sampled)
    for part in _chunks(sampled, 200):
        histories = snapshot.histories(part)
        conn.commit()
        for uuid in part:
            history, hidden = _hide(histories[uuid], rng)
            actions = {a.id: a for a in history.actions}
            events = [
                e
                for action_events in history.events.values()
                for e in action_events
                if e.id in hidden
            ]
            report.hidden_events += len(events)
            action_of = {e.id: actions.get(e.action_id) for e in events if e.action_id is not None}
            for decision in infer(
                events, actions, {uuid: history}, snapshot.hosts, options.exclude_rules
            ):
                truth, name = hidden[decision.event_id]
                action = action_of.get(decision.event_id)
                role = roles.role_of(name, action.name if action else None)
                inferable = role not in (roles.Role.CONTROL_PLANE, roles.Role.UNKNOWN)
                if not decision.filled:
                    report.null_by_reason[decision.rule] += 1
                    if inferable:
                        report.total.hidden += 1
                        report.by_event[name].hidden += 1
                    continue
                wrong = decision.host != truth
                for tally in (report.total, report.by_rule[decision.rule], report.by_event[name]):
                    tally.filled += 1
                    tally.wrong += int(wrong)
                report.total.hidden += 1
                report.by_event[name].hidden += 1
                if wrong and len(report.wrong_examples) < options.examples:
                    report.wrong_examples.append(
                        {
                            "event_id": decision.event_id,
                            "event": name,
                            "instance_uuid": uuid,
                            "expected": truth,
                            "inferred": decision.host,
                            "rule": decision.rule,
                        }
                    )


def _chunks(values: list, size: int):
    for start in range(0, len(values), size):
        yield values[start : start + size]
