"""Read what a Nova cell database holds: tables, the event host column, host indexes.

Read-only: nothing here changes the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from actionhost_backfill import dialects
from actionhost_backfill.errors import IncompatibleSchema, NotANovaDatabase
from actionhost_backfill.nova.tables import EVENTS, SHADOW_EVENTS
from actionhost_backfill.redact import mask_url

ACTIONS = "instance_actions"
MIGRATIONS = "migrations"
INSTANCES = "instances"
FAULTS = "instance_faults"

#: Tables the schema revisions need.
SCHEMA_TABLES = (ACTIONS, EVENTS)
#: Tables the backfill reads (and writes, for events).
BACKFILL_TABLES = (INSTANCES, ACTIONS, EVENTS, MIGRATIONS, FAULTS)
#: Every table the toolkit looks at, with their archived copies.
KNOWN_TABLES = BACKFILL_TABLES + tuple(f"shadow_{t}" for t in BACKFILL_TABLES)

#: The index the toolkit builds.  Its name is distinctive on purpose: a name
#: Nova could pick one day would make "is this ours?" unanswerable.
HOST_INDEX = "actionhost_events_host_idx"
HOST_LENGTH = 255


@dataclass
class HostColumn:
    table: str
    present: bool
    type_text: str | None = None
    length: int | None = None
    nullable: bool | None = None
    problem: str | None = None
    """Why an existing column cannot be used (None when it can)."""

    @property
    def compatible(self) -> bool:
        return self.present and self.problem is None


@dataclass
class HostIndex:
    name: str
    columns: list[str]
    valid: bool = True
    ours: bool = False


@dataclass
class CellTables:
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def list_tables(conn: sa.Connection) -> set[str]:
    """Table names in the cell's default schema (never the state schema)."""
    return set(sa.inspect(conn).get_table_names())


def check_tables(conn: sa.Connection, required: tuple[str, ...] = SCHEMA_TABLES) -> CellTables:
    names = list_tables(conn)
    found = [t for t in KNOWN_TABLES if t in names]
    missing = [t for t in required if t not in names]
    return CellTables(found=found, missing=missing)


def require_nova(conn: sa.Connection, required: tuple[str, ...] = SCHEMA_TABLES) -> CellTables:
    """Raise :class:`NotANovaDatabase` unless every required table is there."""
    tables = check_tables(conn, required)
    if tables.missing:
        where = mask_url(conn.engine.url)
        missing = ", ".join(tables.missing)
        if len(tables.missing) == len(required):
            raise NotANovaDatabase(
                f"tables {missing} not found in {where}: is this a Nova cell database? "
                "(point --db at a cell database such as nova or nova_cell1, not nova_api)"
            )
        raise NotANovaDatabase(
            f"table{'s' if len(tables.missing) > 1 else ''} {missing} not found in {where}: "
            "this Nova cell database is incomplete; run nova-manage db sync first"
        )
    return tables


def host_column(conn: sa.Connection, table: str) -> HostColumn:
    """Describe ``table.host``; ``problem`` says why it is unusable, if it is."""
    columns = {c["name"]: c for c in sa.inspect(conn).get_columns(table)}
    column = columns.get("host")
    if column is None:
        return HostColumn(table, present=False)
    col_type = column["type"]
    length = getattr(col_type, "length", None)
    nullable = bool(column.get("nullable", True))
    try:
        type_text = col_type.compile(dialect=conn.dialect)
    except Exception:
        type_text = str(col_type)
    result = HostColumn(table, True, type_text, length, nullable)
    is_char = isinstance(col_type, sa.CHAR) or type_text.upper().startswith(("CHAR", "NCHAR"))
    if not isinstance(col_type, sa.String) or is_char:
        result.problem = f"is {type_text}, not a variable-length string"
    elif isinstance(col_type, sa.Text):
        if not dialects.for_connection(conn).indexes_text:
            result.problem = f"is {type_text}, which MySQL cannot index without a prefix"
    elif length is not None and length < HOST_LENGTH:
        result.problem = f"is {type_text}, shorter than Nova's VARCHAR({HOST_LENGTH})"
    if result.problem is None and not nullable:
        result.problem = f"is {type_text} NOT NULL; historical events need NULL"
    return result


def check_host_columns(conn: sa.Connection) -> list[HostColumn]:
    """The host column of the events table and, when it exists, its shadow."""
    names = list_tables(conn)
    return [host_column(conn, t) for t in (EVENTS, SHADOW_EVENTS) if t in names]


def raise_if_incompatible(conn: sa.Connection, columns: list[HostColumn]) -> None:
    bad = [c for c in columns if c.present and c.problem]
    if bad:
        where = mask_url(conn.engine.url)
        details = "; ".join(f"{c.table}.host {c.problem}" for c in bad)
        raise IncompatibleSchema(
            f"{details} in {where}: the toolkit needs VARCHAR({HOST_LENGTH}) NULL as Nova "
            "defines it; restore Nova's column definition, then run again (nothing was changed)"
        )


def host_indexes(conn: sa.Connection, table: str = EVENTS) -> list[HostIndex]:
    """Indexes on ``table`` whose first column is ``host`` (PostgreSQL: with validity)."""
    found = [
        HostIndex(name, columns, valid, name == HOST_INDEX)
        for name, columns, valid in dialects.for_connection(conn).indexes(conn, table)
    ]
    return [ix for ix in found if ix.columns and ix.columns[0] == "host"]
