"""What every backend does the same way, and the hooks the others override.

A :class:`Dialect` is chosen per connection (:func:`for_connection`).  The
engine asks it to set a session up (lock waits, isolation), to write one batch
of the plan in set-based statements, and to drop temporary tables; the rows
themselves never travel through the client while applying.  Everything else
that differs per backend (where the state schema lives, the runner lock,
schema changes online and offline, replicas and load for throttling, EXPLAIN)
is a method here too: code outside this package never asks which backend it
is on.

Each subclass names the SQLAlchemy dialect it serves in ``__dialect__`` and is
registered when its class is created, as Alembic registers its ``DefaultImpl``
subclasses; :func:`dialect_class` looks one up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill.errors import BadInput, DatabaseUnavailable

#: Seconds a connection attempt to a server may take.
CONNECT_TIMEOUT = 10
DEFAULT_STATE_SCHEMA = "actionhost"
VERSION_TABLE = "actionhost_version"

#: Every :class:`Dialect` subclass, by the SQLAlchemy dialect name it serves.
_REGISTRY: dict[str, type[Dialect]] = {}


def dialect_class(name: str) -> type[Dialect]:
    """The class serving SQLAlchemy dialect ``name``; :class:`Dialect` itself when none does."""
    return _REGISTRY.get(name, Dialect)


def family_of(url_or_dialect_name: URL | str) -> str:
    """'postgresql', 'mysql' (MariaDB included) or 'sqlite' (else the name as given)."""
    name = (
        url_or_dialect_name.get_backend_name()
        if isinstance(url_or_dialect_name, URL)
        else url_or_dialect_name
    )
    cls = _REGISTRY.get(name)
    return cls.name if cls is not None else name


@dataclass(frozen=True)
class StateLocation:
    """The resolved home of the toolkit's tables for one cell database."""

    backend: str
    """The backend family: ``postgresql``, ``mysql`` or ``sqlite``."""
    schema: str
    """SQL-level qualifier: PostgreSQL schema, MySQL database or SQLite alias."""
    sqlite_path: str | None = None

    @property
    def dialect(self) -> Dialect:
        return dialect_class(self.backend)()

    def describe(self) -> str:
        return self.dialect.describe_location(self)

    def qualified(self, table: str) -> str:
        return f"{self.schema}.{table}"


@dataclass(frozen=True)
class SchemaChange:
    """What a revision's schema change hands its dialect: Alembic's ``op`` (offline:
    statements go to the script), the session online, the lock budget, and where
    to say what was done."""

    op: Any
    """``alembic.op`` of the running migration."""
    lock_timeout: float
    say: Callable[[str], None]
    """Report one line of what was done."""
    comment: Callable[[str], None]
    """A SQL comment in ``--sql`` output."""
    conn: sa.Connection | None = None
    """The migration's connection (None offline)."""

    @property
    def lock_ms(self) -> int:
        return max(1, round(self.lock_timeout * 1000))

    def guard_lock(self, statement: Callable[[], Any], table: str, *, leftover: str = ""):
        """Run DDL; a lock timeout becomes a plain message saying what to do.

        ``leftover``: the index a failed build may have left INVALID."""
        try:
            return statement()
        except sa.exc.DBAPIError as exc:
            orig = exc.orig
            sqlstate = getattr(orig, "sqlstate", None)
            errno = (
                orig.args[0]
                if getattr(orig, "args", None) and isinstance(orig.args[0], int)
                else None
            )
            if sqlstate == "55P03" or errno == 1205:
                extra = (
                    f"; it may have left an INVALID index {leftover}, which the next upgrade "
                    "drops and rebuilds"
                    if leftover
                    else ""
                )
                raise DatabaseUnavailable(
                    f"gave up after {self.lock_timeout:g}s waiting for a lock on {table} "
                    f"(a long transaction holds it){extra}: run the upgrade again at a quieter "
                    "moment or pass a larger --lock-timeout"
                ) from None
            raise


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


def adding_on_conflict(insert, table: sa.Table, counter: str):
    """``insert`` (PostgreSQL's or SQLite's INSERT construct, their shared upsert) adding
    its ``counter`` to the row already there with the same primary key."""
    added = {counter: table.c[counter] + insert.excluded[counter]}
    return insert.on_conflict_do_update(index_elements=table.primary_key, set_=added)


class Dialect:
    """PostgreSQL, MySQL/MariaDB and SQLite subclass this."""

    __dialect__: str | None = None
    """The SQLAlchemy dialect name this class serves (registered on definition)."""
    name = "base"
    """The backend family (``StateLocation.backend``): MariaDB is ``mysql``."""
    may_be_galera = False
    """A server of this family may be a Galera node (asked before connecting)."""
    plans_while_applying = True
    """One connection may read (plan) while another writes batches (engine/pipeline.py)."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("__dialect__"):
            _REGISTRY[cls.__dialect__] = cls

    @classmethod
    def for_server(cls, sa_dialect: sa.Dialect) -> Dialect:
        """The dialect of a connected server (MySQL's class picks MariaDB's here)."""
        return cls()

    # ------------------------------------------------------------------ sessions

    def engine_options(self, url: URL, *, must_exist: bool, lock_timeout: float | None) -> dict:
        """Keyword arguments for :func:`sqlalchemy.create_engine` beyond the pool."""
        return {}

    def configure_engine(self, engine: sa.Engine, location, attach: str, begin_mode: str) -> None:
        """Hooks on a new engine (SQLite: transactions, the attached state file)."""

    def server_version(self, conn: sa.Connection) -> str:
        raise NotImplementedError

    def in_values(self, column: sa.ColumnElement, values: list) -> sa.ColumnElement[bool]:
        """``column IN (values)``."""
        return column.in_(values)

    def by_bytes(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """``column`` compared byte by byte, whatever its collation (SQLite's own
        comparison), so a range of it is the same range in every table."""
        return column

    def copies_through_client(self, conn: sa.Connection) -> bool:
        """Whether ``CREATE TABLE ... SELECT`` would lock every row it reads (so the
        evidence snapshot copies through the client instead)."""
        return False

    def for_update(self, query: sa.Select) -> sa.Select:
        """``query`` locking the rows it reads until the transaction ends."""
        return query.with_for_update()

    def query_plan(self, conn: sa.Connection, compiled: str) -> str:
        """The server's plan of the compiled statement, as text."""
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled}").all()
        return "\n".join(" ".join(str(c) for c in r) for r in rows)

    indexes_text = True
    """Whether a TEXT column can be indexed without a prefix length."""

    def indexes(self, conn: sa.Connection, table: str) -> list[tuple[str, list[str], bool]]:
        """Each index on ``table`` of the current schema: name, columns, valid."""
        return [
            (ix["name"], list(ix["column_names"]), True)
            for ix in sa.inspect(conn).get_indexes(table)
            if ix.get("name")
        ]

    def database_files(self, url: URL, location: StateLocation) -> tuple[str | None, ...] | None:
        """The files holding the cell database and the state (None: a server holds them)."""
        return None

    def schema_notes(self, conn: sa.Connection) -> list[str]:
        """What an operator should know before a schema upgrade on this server."""
        return []

    def analyze_database(self, conn: sa.Connection) -> None:
        """Fresh planner statistics for every table (bulk loads leave none)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ schema changes
    #
    # Online: ``change.conn`` is inspected first by the caller, which asks only
    # for what is missing.  Offline (``--sql``): every statement guarded, so a
    # script applied twice succeeds twice and leaves the same schema.

    add_column_plan = "ALTER TABLE ADD COLUMN"
    """How :meth:`add_column` works here, for ``schema status``'s plan."""
    create_index_plan = "CREATE INDEX"
    """How :meth:`create_index` works here, for ``schema status``'s plan."""

    def add_column(self, change: SchemaChange, table: str, column: str, type_sql: str) -> str:
        """Add a nullable column; return how (for the ledger)."""
        change.conn.exec_driver_sql(f'ALTER TABLE "{table}" ADD COLUMN {column} {type_sql}')
        return "ALTER TABLE ADD COLUMN"

    def drop_column(self, change: SchemaChange, table: str, column: str) -> None:
        change.conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP COLUMN {column}')

    def create_index(
        self, change: SchemaChange, table: str, index: str, column: str, *, rebuild_invalid: bool
    ) -> str:
        """Build ``index`` on ``table(column)`` without blocking writers where the
        server can; return how.  ``rebuild_invalid``: an INVALID one is there."""
        change.conn.exec_driver_sql(f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ({column})')
        return "CREATE INDEX"

    def drop_index(self, change: SchemaChange, table: str, index: str) -> None:
        change.conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index}"')

    def offline_add_host_column(
        self,
        change: SchemaChange,
        tables: tuple[str, str],
        type_sql: str,
        length: int,
        revision: str,
        ledger: str,
        state_schema: str,
    ) -> None:
        """``host`` on the events table (``tables[0]``, required) and its shadow copy,
        recording each addition in the ledger where the script can."""
        raise NotImplementedError

    def offline_drop_host_column(
        self, change: SchemaChange, tables: tuple[str, ...], ledger: str, state_schema: str
    ) -> None:
        change.comment(
            "Nova's host column is never dropped by offline SQL: the toolkit cannot prove\n"
            f"here that it added it. Check {state_schema}.{ledger} (kind 'column'); only a\n"
            "table listed there got its column from the toolkit."
        )

    def offline_create_index(
        self, change: SchemaChange, table: str, index: str, column: str
    ) -> None:
        change.op.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({column})")

    def offline_drop_index(self, change: SchemaChange, table: str, index: str) -> None:
        change.op.execute(f"DROP INDEX IF EXISTS {index}")

    def offline_create_index_if_missing(
        self, change: SchemaChange, name: str, schema: str, table: str, column: str
    ) -> None:
        """An index on a state table a second run of the script may find there."""
        change.op.create_index(name, table, [column], schema=schema, if_not_exists=True)

    utc_now_sql = "datetime('now')"
    """The current UTC time in SQL, comparable with stored DateTime values."""
    select_constant_from = ""
    """What a SELECT of constants needs after it (MySQL's ``FROM DUAL`` before WHERE)."""

    def offline_state_guard(
        self,
        change: SchemaChange,
        schema: str,
        *,
        live: str,
        unreverted: str | None,
        advisory: tuple[int, int],
        create_state: Callable[[], None],
    ) -> None:
        """Stop the downgrade script, before it drops the state, while a runner is live
        (``live``: ``FROM ... WHERE`` of live lease rows) or runs have hosts no
        revert has undone (``unreverted``; None: not checked)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state schema

    def resolve_location(self, url: URL, state_schema: str | None) -> StateLocation:
        """Where the state schema of the cell database ``url`` lives."""
        raise BadInput(
            f"unsupported database {family_of(url)!r}: use postgresql://, mysql+pymysql:// "
            "or sqlite:///"
        )

    def describe_location(self, location: StateLocation) -> str:
        raise NotImplementedError

    def state_schema_exists(self, conn: sa.Connection, location: StateLocation) -> bool:
        raise NotImplementedError

    def create_state_schema_sql(self, location: StateLocation) -> str:
        """The statement that creates (SQLite: attaches) the state schema if missing."""
        raise NotImplementedError

    def create_state_schema(self, conn: sa.Connection, location: StateLocation) -> None:
        conn.exec_driver_sql(self.create_state_schema_sql(location))

    def state_schema_denied(self, location: StateLocation, user: str, database: str) -> str:
        """The message when the user may not create the state schema."""
        raise NotImplementedError

    # ------------------------------------------------------------------ runner lock

    advisory_locks = False
    """Whether the runner lock is a server-side session lock (else: the lease row)."""

    def try_advisory_lock(self, conn: sa.Connection, namespace: int, key: int) -> bool:
        raise NotImplementedError

    def advisory_unlock(self, conn: sa.Connection, namespace: int, key: int) -> None:
        raise NotImplementedError

    def advisory_lock_held(self, conn: sa.Connection, namespace: int, key: int) -> bool:
        raise NotImplementedError

    def causal_reads(self, conn: sa.Connection) -> None:
        """Make this session's reads see what other cluster nodes committed."""

    # ------------------------------------------------------------------ throttling

    replication_source = "no replication"
    """Where :meth:`replicas` looks, for messages."""

    def replicas(self, conn: sa.Connection, url: URL) -> list[URL]:
        """Replicas this primary reports, as URLs to read their lag from."""
        return []

    def has_standbys(self, conn: sa.Connection) -> bool:
        """Whether the primary itself reports its standbys' lag (PostgreSQL)."""
        return False

    def is_galera(self, conn: sa.Connection) -> bool:
        return False

    def replica_lag(
        self, conn: sa.Connection, where: str, max_lag: float
    ) -> tuple[str | None, float | None]:
        """On the replica ``conn``: why to pause (None: go on), and its lag in seconds."""
        raise BadInput(f"--replica {where}: this database has no replication to read")

    has_server_status = True
    """Whether the server has status variables for --max-load / --critical-load."""

    def check_load_variables(self, names: list[str]) -> None:
        """Refuse load variables this server cannot report."""

    def load_status(self, conn: sa.Connection, names: list[str]) -> dict[str, float]:
        """The values of the status variables ``names``, by lower-case name."""
        raise NotImplementedError

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

    def add_counts(
        self, conn: sa.Connection, table: sa.Table, rows: list[dict], counter: str
    ) -> None:
        """Insert ``rows`` into ``table``; where a row with the same primary key is
        there already, add the new row's ``counter`` to it instead.  One statement
        (the server's own upsert), whatever the number of rows: a batch's counts
        cost one round trip, not one per rule."""
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
