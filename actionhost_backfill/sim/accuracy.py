"""How often the backfill is right: its audit compared with a simulation's truth.

Works on a database written by ``simulate`` (the truth table lives in the
state schema).  Counts every value the backfill runs wrote and did not revert
(precision overall and per rule, with examples of wrong values), every event
they left NULL (by reason), and the coverage of the events that were NULL
before the backfill, overall and for ``compute_*`` events, the inferable ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.errors import BadInput
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema.ready import require_state
from actionhost_backfill.sim.simulate import TRUTH_TABLE, truth_tables
from actionhost_backfill.state.tables import FILLED, LEFT_NULL, state

#: Eras in release order (``simulate`` names each event's era after the
#: release that recorded it).
ERA_ORDER = (
    "icehouse",
    "juno",
    "kilo",
    "liberty",
    "mitaka",
    "newton",
    "ocata",
    "pike",
    "queens",
    "rocky",
)

#: Targets on the default simulated history (docs/accuracy.md §8 reports the figures).
PRECISION_TARGET = 99.9
RULE_PRECISION_TARGET = 99.0
COMPUTE_COVERAGE_TARGET = 95.0


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 3) if whole else None


@dataclass
class AccuracyReport:
    database: str
    filled: int = 0
    correct: int = 0
    by_rule: dict[str, dict] = field(default_factory=dict)
    wrong_examples: list[dict] = field(default_factory=list)
    null_by_reason: dict[str, int] = field(default_factory=dict)
    was_null: int = 0
    compute_was_null: int = 0
    compute_filled: int = 0
    not_examined: int = 0
    by_era: dict[str, dict] = field(default_factory=dict)
    """Per release that recorded the events: NULL events, filled, wrong, coverage, by rule."""

    @property
    def wrong(self) -> int:
        return self.filled - self.correct

    @property
    def precision(self) -> float | None:
        return _pct(self.correct, self.filled)

    @property
    def coverage(self) -> float | None:
        return _pct(self.filled, self.was_null)

    @property
    def compute_coverage(self) -> float | None:
        return _pct(self.compute_filled, self.compute_was_null)

    @property
    def misses(self) -> list[str]:
        """Targets not met, in words (empty when every target is met)."""
        out = []
        if self.precision is not None and self.precision < PRECISION_TARGET:
            out.append(f"precision {self.precision}% < {PRECISION_TARGET}%")
        for rule, stats in self.by_rule.items():
            if stats["precision"] is not None and stats["precision"] < RULE_PRECISION_TARGET:
                out.append(
                    f"rule {rule} precision {stats['precision']}% < {RULE_PRECISION_TARGET}%"
                )
        if self.compute_coverage is not None and self.compute_coverage < COMPUTE_COVERAGE_TARGET:
            out.append(f"compute_* coverage {self.compute_coverage}% < {COMPUTE_COVERAGE_TARGET}%")
        return out

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "filled": self.filled,
            "correct": self.correct,
            "wrong": self.wrong,
            "precision_pct": self.precision,
            "by_rule": self.by_rule,
            "wrong_examples": self.wrong_examples,
            "null_by_reason": self.null_by_reason,
            "was_null": self.was_null,
            "coverage_pct": self.coverage,
            "compute_was_null": self.compute_was_null,
            "compute_filled": self.compute_filled,
            "compute_coverage_pct": self.compute_coverage,
            "not_examined": self.not_examined,
            "by_era": self.by_era,
            "targets": {
                "precision_pct": PRECISION_TARGET,
                "rule_precision_pct": RULE_PRECISION_TARGET,
                "compute_coverage_pct": COMPUTE_COVERAGE_TARGET,
                "met": not self.misses,
                "misses": self.misses,
            },
        }


def accuracy(url: URL, *, state_schema: str | None = None, examples: int = 5) -> AccuracyReport:
    """Compare what the backfill wrote (and left NULL) with the simulation's truth."""
    location, engine = db.open_engine(url, state_schema)
    report = AccuracyReport(database=mask_url(url))
    try:
        with db.connect(engine) as conn:
            try:
                require_state(conn, location)
                names = set(sa.inspect(conn).get_table_names(schema=location.schema))
                if TRUTH_TABLE not in names:
                    raise BadInput(
                        f"no simulation truth in {location.describe()}: accuracy works on a "
                        "database written by `actionhost-backfill simulate` (or `demo`)"
                    )
                _measure(conn, report, location.schema, examples)
            except sa.exc.DBAPIError as exc:
                raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
    return report


def _measure(conn: sa.Connection, report: AccuracyReport, schema: str, examples: int) -> None:
    st = state(schema)
    audit = st.audit
    truth, _ = truth_tables(schema)
    joined = audit.join(
        truth,
        sa.and_(truth.c.event_table == audit.c.event_table, truth.c.event_id == audit.c.event_id),
    )
    live = sa.and_(audit.c.outcome == FILLED, audit.c.reverted_by.is_(None))
    right = sa.case((audit.c.host == truth.c.host, 1), else_=0)
    for rule, filled, correct in conn.execute(
        sa.select(audit.c.rule, sa.func.count(), sa.func.sum(right))
        .select_from(joined)
        .where(live)
        .group_by(audit.c.rule)
    ):
        correct = int(correct or 0)
        report.filled += filled
        report.correct += correct
        report.by_rule[rule] = {
            "filled": filled,
            "correct": correct,
            "wrong": filled - correct,
            "precision": _pct(correct, filled),
        }
    report.by_rule = dict(sorted(report.by_rule.items(), key=lambda kv: -kv[1]["filled"]))
    wrong = (
        sa.select(
            audit.c.rule,
            audit.c.event_table,
            audit.c.event_id,
            truth.c.event,
            audit.c.host,
            truth.c.host.label("truth"),
        )
        .select_from(joined)
        .where(live, audit.c.host != truth.c.host)
        .order_by(audit.c.event_table, audit.c.event_id)
        .limit(examples * 10)
    )
    per_rule: dict[str, int] = {}
    for row in conn.execute(wrong).mappings():
        if per_rule.get(row["rule"], 0) < examples:
            per_rule[row["rule"]] = per_rule.get(row["rule"], 0) + 1
            report.wrong_examples.append(dict(row))

    # Each event examined: filled by some run (not reverted), else its latest reason.
    latest = (
        sa.select(audit.c.event_table, audit.c.event_id, sa.func.max(audit.c.run_id).label("run"))
        .group_by(audit.c.event_table, audit.c.event_id)
        .subquery()
    )
    other = audit.alias("filled_by")
    nulls = (
        sa.select(audit.c.rule, sa.func.count())
        .select_from(
            audit.join(
                latest,
                sa.and_(
                    latest.c.event_table == audit.c.event_table,
                    latest.c.event_id == audit.c.event_id,
                    latest.c.run == audit.c.run_id,
                ),
            )
        )
        .where(
            audit.c.outcome == LEFT_NULL,
            ~sa.exists().where(
                other.c.event_table == audit.c.event_table,
                other.c.event_id == audit.c.event_id,
                other.c.outcome == FILLED,
                other.c.reverted_by.is_(None),
            ),
        )
        .group_by(audit.c.rule)
    )
    report.null_by_reason = dict(
        sorted(((r, n) for r, n in conn.execute(nulls)), key=lambda kv: -kv[1])
    )

    # Coverage of the events that were NULL before any backfill, in the tables examined.
    examined_tables = [
        name for (name,) in conn.execute(sa.select(st.checkpoints.c.event_table).distinct())
    ]
    compute = truth.c.event.startswith("compute_", autoescape=True)
    base = sa.and_(truth.c.recorded.is_(False), truth.c.event_table.in_(examined_tables))
    report.was_null, report.compute_was_null = conn.execute(
        sa.select(sa.func.count(), sa.func.sum(sa.case((compute, 1), else_=0))).where(base)
    ).one()
    report.compute_was_null = int(report.compute_was_null or 0)
    report.compute_filled = int(
        conn.execute(
            sa.select(sa.func.count()).select_from(joined).where(live, compute)
        ).scalar_one()
    )
    report.by_era = _by_era(conn, truth, audit, base, compute)
    report.not_examined = int(
        conn.execute(
            sa.select(sa.func.count()).where(
                base,
                ~sa.exists().where(
                    audit.c.event_table == truth.c.event_table,
                    audit.c.event_id == truth.c.event_id,
                ),
            )
        ).scalar_one()
    )


def _by_era(conn, truth, audit, base, compute) -> dict[str, dict]:
    """Coverage and precision per release era (simulations written before eras: one era)."""
    if "era" not in truth.c:
        return {}
    filled = sa.and_(
        audit.c.event_table == truth.c.event_table,
        audit.c.event_id == truth.c.event_id,
        audit.c.outcome == FILLED,
        audit.c.reverted_by.is_(None),
    )
    joined = truth.outerjoin(audit, filled)
    is_filled = audit.c.event_id.is_not(None)
    count_if = lambda condition: sa.func.sum(sa.case((condition, 1), else_=0))  # noqa: E731
    eras: dict[str, dict] = {}
    for era, events, compute_events, filled_n, wrong, compute_filled in conn.execute(
        sa.select(
            truth.c.era,
            sa.func.count(),
            count_if(compute),
            count_if(is_filled),
            count_if(sa.and_(is_filled, audit.c.host != truth.c.host)),
            count_if(sa.and_(is_filled, compute)),
        )
        .select_from(joined)
        .where(base)
        .group_by(truth.c.era)
    ):
        filled_n, wrong, compute_filled = (
            int(filled_n or 0),
            int(wrong or 0),
            int(compute_filled or 0),
        )
        eras[era] = {
            "null_events": int(events),
            "compute_null_events": int(compute_events or 0),
            "filled": filled_n,
            "wrong": wrong,
            "precision_pct": _pct(filled_n - wrong, filled_n),
            "compute_coverage_pct": _pct(compute_filled, int(compute_events or 0)),
            "filled_by_rule": {},
        }
    for era, rule, count in conn.execute(
        sa.select(truth.c.era, audit.c.rule, sa.func.count())
        .select_from(truth.join(audit, filled))
        .where(base)
        .group_by(truth.c.era, audit.c.rule)
    ):
        if era in eras:
            eras[era]["filled_by_rule"][rule] = int(count)
    order = {name: index for index, name in enumerate(ERA_ORDER)}
    return dict(sorted(eras.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
