"""What every backend does the same way, and the hooks the others override.

A :class:`Dialect` is chosen per connection (:func:`for_connection`).  The
engine asks it to set a session up (lock waits, isolation), to write one batch
of the plan in set-based statements, and to drop temporary tables; the rows
themselves never travel through the client while applying.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

#: The audit columns every batch writes, in this order.
AUDIT_COLUMNS = ("run_id", "event_table", "event_id", "host", "rule", "outcome", "batch")


@dataclass(frozen=True)
class FillBatch:
    """One batch of the plan: the planned events with ids in ``(after, upto]``."""

    events: sa.Table
    """The Nova events table written (live or shadow)."""
    audit: sa.Table
    run_id: int
    batch: int
    after: int
    upto: int

    def params(self, **extra) -> dict:
        return {
            "run": self.run_id,
            "tbl": self.events.name,
            "batch": self.batch,
            "lo": self.after,
            "hi": self.upto,
            **extra,
        }


class Dialect:
    """PostgreSQL, MySQL/MariaDB and SQLite subclass this."""

    name = "base"

    def configure_session(self, conn: sa.Connection, lock_timeout: float) -> int | None:
        """Bound lock waits to ``lock_timeout`` seconds on this session.

        Returns the largest batch this server allows (Galera write-set
        limits), or None when nothing limits it.  The caller commits.
        """
        raise NotImplementedError

    def quote_table(self, conn: sa.Connection, table: sa.Table) -> str:
        return conn.dialect.identifier_preparer.format_table(table)

    def temp_table(self, name: str) -> str:
        """How a temporary table of this session is named in SQL."""
        return name

    def drop_temp(self, conn: sa.Connection, name: str) -> None:
        raise NotImplementedError

    def analyze_temp(self, conn: sa.Connection, name: str) -> None:
        """Give the planner statistics on a freshly filled temporary table (if it needs them)."""

    def write_grant(self, user: str, table: str, schema: str | None, database: str | None) -> str:
        """The GRANT that lets ``user`` write ``table`` (in ``schema``, the state schema)."""
        raise NotImplementedError

    def fill_from_plan(
        self, conn: sa.Connection, plan: str, batch: FillBatch, outcomes: dict[str, str]
    ) -> None:
        """Write the hosts of ``plan`` rows in the batch where the event is still NULL,
        and one audit row per planned event, saying exactly which were written.

        ``outcomes``: the names of the audit outcomes and the recorded-meanwhile
        rule (``filled``, ``skipped``, ``left_null``, ``meanwhile``).
        """
        raise NotImplementedError

    def audit_from_plan(
        self, conn: sa.Connection, plan: str, batch: FillBatch, outcomes: dict[str, str]
    ) -> None:
        """The audit rows of a batch whose filled rows are marked ``applied = 1`` in the plan."""
        audit = self.quote_table(conn, batch.audit)
        conn.execute(
            sa.text(
                f"INSERT INTO {audit} ({', '.join(AUDIT_COLUMNS)}) "
                "SELECT :run, :tbl, p.event_id, "
                "CASE WHEN p.applied = 1 THEN p.host END, "
                "CASE WHEN p.host IS NOT NULL AND p.applied IS NULL THEN :meanwhile ELSE p.rule END, "
                "CASE WHEN p.applied = 1 THEN :filled WHEN p.host IS NOT NULL THEN :skipped "
                "ELSE :left_null END, :batch "
                f"FROM {plan} AS p WHERE p.event_id > :lo AND p.event_id <= :hi"
            ),
            batch.params(**outcomes),
        )
