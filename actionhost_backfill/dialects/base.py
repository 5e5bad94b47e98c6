"""What every backend does the same way, and the hooks the others override.

A :class:`Dialect` is chosen per connection (:func:`for_connection`).  The
engine asks it to set a session up (lock waits, isolation), to write one batch
of the plan in set-based statements, and to drop temporary tables; the rows
themselves never travel through the client while applying.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from actionhost_backfill.state.location import StateLocation

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


#: The privilege a statement needs, by how it starts (MySQL names; dialects adapt).
_STATEMENT_PRIVILEGES = (
    ("CREATE TEMPORARY TABLE", "CREATE TEMPORARY TABLES"),
    ("CREATE UNIQUE INDEX", "INDEX"),
    ("CREATE INDEX", "INDEX"),
    ("CREATE", "CREATE"),
    ("ALTER", "ALTER"),
    ("DROP", "DROP"),
    ("INSERT", "INSERT"),
    ("UPDATE", "UPDATE"),
    ("DELETE", "DELETE"),
    ("SELECT", "SELECT"),
    ("SHOW", "PROCESS"),
)


def statement_privilege(statement: str | None) -> str | None:
    """The privilege ``statement`` needs, judged by its first words (a CTE: by the first
    write it holds)."""
    words = " ".join((statement or "").split()).upper()
    if words.startswith("WITH"):
        writes = [w for w in ("UPDATE", "INSERT", "DELETE") if f" {w} " in f" {words} "]
        words = min(writes, key=lambda w: words.index(w)) if writes else "SELECT"
    for prefix, privilege in _STATEMENT_PRIVILEGES:
        if words.startswith(prefix):
            return privilege
    return None


@dataclass(frozen=True)
class PrivilegeRequest:
    """What a command is about to do, for :meth:`Dialect.missing_privileges`.

    Built by :mod:`actionhost_backfill.preflight` from the command's options
    and what the catalog shows (which tables exist, what ``schema upgrade``
    would add).
    """

    database: str
    """The cell database (MySQL database, PostgreSQL database, SQLite file)."""
    location: StateLocation
    read: tuple[str, ...] = ()
    """Nova tables read (SELECT)."""
    temporary: bool = False
    """Temporary tables on the cell database (the evidence snapshot, the plan)."""
    alter: tuple[str, ...] = ()
    """Nova tables that get a host column (ALTER TABLE ... ADD COLUMN)."""
    index: tuple[str, ...] = ()
    """Nova tables that get the host index."""
    update: tuple[str, ...] = ()
    """Nova tables whose host column is written."""
    state: str | None = None
    """The state schema: None (not used), ``read``, ``write`` (rows) or ``create``
    (create it if missing, its tables, and write rows)."""
    state_exists: bool | None = None
    """Whether the state schema exists (None: this user cannot tell)."""
    state_tables: tuple[str, ...] = ()
    """The state tables (those that exist are checked table by table)."""
    replicas: bool = False
    """--max-lag without --replica: discover replicas on the primary and read their lag."""
    load: bool = False
    """--max-load / --critical-load: read the server's status."""


@dataclass(frozen=True)
class MissingPrivilege:
    """One privilege (or set of privileges on one object) the user lacks."""

    privilege: str
    on: str
    why: str
    grant: str
    """The statement (or action) that fixes it."""

    def describe(self) -> str:
        return f"{self.privilege} on {self.on} ({self.why}): run {self.grant}"


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

    def missing_privileges(
        self, conn: sa.Connection, request: PrivilegeRequest
    ) -> list[MissingPrivilege]:
        """Each privilege ``request`` needs that the connected user lacks, read from the
        catalog (nothing is tried, nothing is written)."""
        raise NotImplementedError

    def state_access(self, conn: sa.Connection, location: StateLocation) -> str:
        """What this user sees of the state schema: ``absent``, ``readable``,
        ``unreadable`` (it exists; the user may not read it) or ``unknown`` (MySQL
        hides a database from a user with no privilege on it: it may exist)."""
        raise NotImplementedError

    def privilege_hint(self, statement: str | None, message: str, user: str, database: str) -> str:
        """What a permission-denied error needs: the privilege, and the GRANT that gives it."""
        privilege = statement_privilege(statement)
        if privilege is None:
            return "grant the privilege the statement needs"
        return f"the statement needs the {privilege} privilege: grant it to {user}"

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
