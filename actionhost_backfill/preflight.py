"""Privileges, checked before anything is written.

Each command that changes something (``schema upgrade``, ``backfill``,
``revert``) and each that reads through temporary tables (``validate``,
``backfill --dry-run``) first works out what it is about to do
(a :class:`~actionhost_backfill.dialects.base.PrivilegeRequest`), asks the
backend's catalog which of those privileges the user lacks
(:meth:`~actionhost_backfill.dialects.base.Dialect.missing_privileges`: nothing
is tried, nothing is written) and refuses with every missing privilege and the
GRANT that gives it, exit 127, so that "127: nothing changed" holds.
``schema status`` shows the same list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import dialects
from actionhost_backfill.dialects.base import MissingPrivilege, PrivilegeRequest
from actionhost_backfill.errors import PrivilegeError
from actionhost_backfill.nova import catalog
from actionhost_backfill.nova.tables import EVENTS, EVIDENCE_BASES, SHADOW_EVENTS
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema import ddl
from actionhost_backfill.state.location import VERSION_TABLE, StateLocation

if TYPE_CHECKING:
    from actionhost_backfill.engine.throttling import ThrottleOptions

#: Every state table (the version table, the ledger, the backfill state).
STATE_TABLES = (VERSION_TABLE, ddl.LEDGER, *ddl.BACKFILL_STATE_TABLES)
#: The Nova tables the evidence snapshot reads (live and archived), when present.
EVIDENCE_TABLES = tuple(name for base in EVIDENCE_BASES for name in (base, f"shadow_{base}"))


def _database(url: URL) -> str:
    return url.database or ""


def _read_tables(conn: sa.Connection) -> tuple[str, ...]:
    names = catalog.list_tables(conn)
    return tuple(t for t in EVIDENCE_TABLES if t in names)


def state_access(conn: sa.Connection, location: StateLocation) -> str:
    """``absent``, ``readable``, ``unreadable`` or ``unknown`` (see the dialects)."""
    access = dialects.for_connection(conn).state_access(conn, location)
    conn.rollback()
    return access


def upgrade_request(conn: sa.Connection, url: URL, location: StateLocation) -> PrivilegeRequest:
    """What ``schema upgrade`` would do here: the columns and index it would add, the
    state schema it creates or writes."""
    columns = catalog.check_host_columns(conn)
    indexes = catalog.host_indexes(conn) if EVENTS in catalog.list_tables(conn) else []
    indexed = any(ix.valid for ix in indexes)
    conn.rollback()
    return PrivilegeRequest(
        database=_database(url),
        location=location,
        alter=tuple(c.table for c in columns if not c.present),
        index=() if indexed else (EVENTS,),
        state="create",
        state_tables=STATE_TABLES,
    )


def state_read_request(url: URL, location: StateLocation) -> PrivilegeRequest:
    """Reading the state schema only (``schema status``: which revision is applied)."""
    return PrivilegeRequest(
        database=_database(url), location=location, state="read", state_tables=STATE_TABLES
    )


def read_request(
    conn: sa.Connection, url: URL, location: StateLocation, *, access: str | None = None
) -> PrivilegeRequest:
    """``validate`` and ``backfill --dry-run``: Nova's tables, temporary tables, and the
    audit when the state schema exists (it tells which hosts the toolkit wrote)."""
    access = access or state_access(conn, location)
    return PrivilegeRequest(
        database=_database(url),
        location=location,
        read=_read_tables(conn),
        temporary=True,
        state="read" if access == "unreadable" else None,
        state_tables=STATE_TABLES,
    )


def _throttle_reads(throttle: ThrottleOptions) -> tuple[bool, bool]:
    """What the throttle reads on the server: replication status (--max-lag without
    --replica: replicas are discovered on the primary), load (--max-load, --critical-load)."""
    return (
        throttle.max_lag is not None and not throttle.replicas,
        bool(throttle.max_load or throttle.critical_load),
    )


def backfill_request(
    conn: sa.Connection,
    url: URL,
    location: StateLocation,
    *,
    tables: list[str],
    throttle: ThrottleOptions,
) -> PrivilegeRequest:
    replicas, load = _throttle_reads(throttle)
    return PrivilegeRequest(
        database=_database(url),
        location=location,
        read=_read_tables(conn),
        temporary=True,
        update=tuple(tables),
        state="write",
        state_tables=STATE_TABLES,
        replicas=replicas,
        load=load,
    )


def revert_request(
    conn: sa.Connection,
    url: URL,
    location: StateLocation,
    *,
    dry_run: bool,
    throttle: ThrottleOptions,
) -> PrivilegeRequest:
    replicas, load = _throttle_reads(throttle)
    names = catalog.list_tables(conn)
    events = tuple(t for t in (EVENTS, SHADOW_EVENTS) if t in names)
    return PrivilegeRequest(
        database=_database(url),
        location=location,
        read=events,
        update=() if dry_run else events,
        state="read" if dry_run else "write",
        state_tables=STATE_TABLES,
        replicas=replicas and not dry_run,
        load=load and not dry_run,
    )


def missing(conn: sa.Connection, request: PrivilegeRequest) -> list[MissingPrivilege]:
    found = dialects.for_connection(conn).missing_privileges(conn, request)
    conn.rollback()
    return found


def refusal(url: URL, command: str, found: list[MissingPrivilege]) -> str:
    """One line naming each missing privilege and its GRANT."""
    who = f"user {url.username}" if url.username else "this process"
    return (
        f"{who} lacks privileges `{command}` needs in {mask_url(url)}: "
        + " ".join(f"{i}) {m.describe()}" for i, m in enumerate(found, 1))
        + " (nothing was changed)"
    )


def require(conn: sa.Connection, url: URL, request: PrivilegeRequest, command: str) -> None:
    """Refuse (:class:`PrivilegeError`, exit 127) unless every privilege is there."""
    found = missing(conn, request)
    if found:
        raise PrivilegeError(refusal(url, command, found))
