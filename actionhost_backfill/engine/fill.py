"""The backfill's batch: hosts from the plan into the events table, with their audit rows.

The plan (``ah_plan``: event id, host or NULL, rule) is a temporary table on
the runner's connection, written while planning.  A batch is a few set-based
statements the dialect provides: write the hosts of the planned events still
NULL (locking them), insert one audit row per planned event (filled, skipped
because Nova recorded a host meanwhile, or left NULL with its reason), and
read back the counts per rule.  No event row travels through the client.
"""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from actionhost_backfill.dialects.base import Dialect, FillBatch
from actionhost_backfill.engine.applier import Applied, batch_end
from actionhost_backfill.inference import RECORDED_MEANWHILE
from actionhost_backfill.nova.tables import nova
from actionhost_backfill.state.tables import FILLED, LEFT_NULL, SKIPPED, StateTables

OUTCOMES = {
    "filled": FILLED,
    "skipped": SKIPPED,
    "left_null": LEFT_NULL,
    "meanwhile": RECORDED_MEANWHILE,
}


class PlanFill:
    """Batches of ``plan`` (a :class:`sa.Table`) applied to ``table`` for run ``run_id``."""

    def __init__(self, dialect: Dialect, plan: sa.Table, table: str, st: StateTables, run_id: int):
        self.dialect = dialect
        self.plan = plan
        self.table = table
        self.st = st
        self.run_id = run_id
        self.frontier: int | None = None
        """While planning goes on (engine/pipeline.py): batches end here, every NULL
        event up to it decided; None: the plan is complete."""

    def bound(self, conn: sa.Connection, after: int, size: int) -> int | None:
        if self.frontier is None:
            return batch_end(conn, self.plan.c.event_id, [], after, size)
        if after >= self.frontier:
            return None
        within = [self.plan.c.event_id <= self.frontier]
        return batch_end(conn, self.plan.c.event_id, within, after, size)

    def apply(self, conn: sa.Connection, after: int, upto: int, batch: int) -> Applied:
        work = FillBatch(nova(self.table), self.st.audit, self.run_id, batch, after, upto)
        self.dialect.fill_from_plan(conn, self.dialect.temp_table(self.plan.name), work, OUTCOMES)
        a = self.st.audit
        counts = Counter(
            {
                (outcome, rule): n
                for outcome, rule, n in conn.execute(
                    sa.select(a.c.outcome, a.c.rule, sa.func.count())
                    .where(
                        a.c.run_id == self.run_id,
                        a.c.event_table == self.table,
                        a.c.event_id > after,
                        a.c.event_id <= upto,
                    )
                    .group_by(a.c.outcome, a.c.rule)
                )
            }
        )
        written = sum(n for (outcome, _), n in counts.items() if outcome == FILLED)
        return Applied(sum(counts.values()), counts, written)
