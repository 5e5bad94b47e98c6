"""Where a host shown to an operator came from: recorded by Nova, or inferred by a run.

After a backfill, the hosts the toolkit inferred sit in
``instance_actions_events.host`` exactly like the ones Nova recorded.  The
audit in the state schema says which is which: every event a backfill run
examined has a row there, with the value it wrote and the rule.  A host is

``recorded``      Nova wrote it (no run filled it);
``inferred``      a run filled it and it still holds that value (rule, run);
``changed-since`` a run filled it and something changed it since;
``unknown``       the state schema is absent, or its audit is incomplete (a
                  purge) where a run examined the event: never guessed.

The lookup reads the audit by event id, whatever table the event is in now
(an event filled in the live table may have been archived since).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import sqlalchemy as sa

from actionhost_backfill.dialects.bulk import chunks
from actionhost_backfill.schema.ready import state_ready
from actionhost_backfill.state import runs
from actionhost_backfill.state.location import StateLocation
from actionhost_backfill.state.tables import FILLED, state

Source = Literal["recorded", "inferred", "changed-since", "unknown"]
RECORDED: Source = "recorded"
INFERRED: Source = "inferred"
CHANGED: Source = "changed-since"
UNKNOWN: Source = "unknown"


@dataclass(frozen=True)
class Provenance:
    source: Source
    rule: str | None = None
    run_id: int | None = None
    written: str | None = None
    """The value the run wrote (differs from the host when ``changed-since``)."""

    def label(self) -> str:
        if self.source == INFERRED:
            return f"inferred · {self.rule} · run {self.run_id}"
        if self.source == CHANGED:
            return f"changed since run {self.run_id} wrote {self.written} ({self.rule})"
        if self.source == UNKNOWN:
            return "provenance unknown"
        return "recorded"

    def to_dict(self) -> dict:
        return asdict(self)


class ProvenanceIndex:
    """What the state schema knows, read once: whether its audit can be trusted, and where."""

    def __init__(self, conn: sa.Connection, location: StateLocation):
        self.location = location
        self.available = state_ready(conn, location)
        self.complete = False
        self.examined: dict[str, int] = {}
        """Per event table, the highest id a backfill run examined."""
        if not self.available:
            return
        st = state(location.schema)
        backfills = sa.select(st.runs.c.id).where(st.runs.c.kind == runs.BACKFILL)
        for table, last_id in conn.execute(
            sa.select(st.checkpoints.c.event_table, sa.func.max(st.checkpoints.c.last_id))
            .where(st.checkpoints.c.run_id.in_(backfills))
            .group_by(st.checkpoints.c.event_table)
        ):
            self.examined[table] = int(last_id or 0)
        # Every examined event has one audit row; the per-run counters say how many.
        counted = dict(
            conn.execute(
                sa.select(st.run_counts.c.run_id, sa.func.sum(st.run_counts.c.row_count))
                .where(st.run_counts.c.run_id.in_(backfills))
                .group_by(st.run_counts.c.run_id)
            ).all()
        )
        audited = dict(
            conn.execute(
                sa.select(st.audit.c.run_id, sa.func.count())
                .where(st.audit.c.run_id.in_(backfills))
                .group_by(st.audit.c.run_id)
            ).all()
        )
        self.complete = all(int(audited.get(run, 0)) == int(n or 0) for run, n in counted.items())

    def lookup(
        self, conn: sa.Connection, table: str, events: list[tuple[int, str | None]]
    ) -> dict[int, Provenance]:
        """Provenance of each ``(event id, current host)`` of ``table`` (hosts that are set)."""
        found: dict[int, Provenance] = {}
        with_host = [(event_id, host) for event_id, host in events if host]
        if not with_host:
            return found
        if not self.available:
            return {event_id: Provenance(UNKNOWN) for event_id, _ in with_host}
        audit = state(self.location.schema).audit
        written: dict[int, tuple[int, str, str]] = {}
        for chunk in chunks([event_id for event_id, _ in with_host]):
            for run_id, event_id, host, rule in conn.execute(
                sa.select(audit.c.run_id, audit.c.event_id, audit.c.host, audit.c.rule)
                .where(
                    audit.c.event_id.in_(chunk),
                    audit.c.outcome == FILLED,
                    audit.c.reverted_by.is_(None),
                )
                .order_by(audit.c.run_id)
            ):
                written[event_id] = (run_id, host, rule)
        for event_id, host in with_host:
            if event_id in written:
                run_id, value, rule = written[event_id]
                source = INFERRED if value == host else CHANGED
                found[event_id] = Provenance(source, rule, run_id, value)
            elif self.complete or event_id > self.examined.get(table, 0):
                # Examined while it already had a host, or never examined at all.
                found[event_id] = Provenance(RECORDED)
            else:
                found[event_id] = Provenance(UNKNOWN)
        return found
