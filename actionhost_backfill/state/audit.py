"""The audit as the engine reads it: what a run wrote, and where those events are now.

Every event a backfill run examined has an audit row (``state.tables``); a
run's writes are undone only by ``revert``, which marks its rows.  The
reports built on it (``status``, ``verify``) are in
:mod:`actionhost_backfill.reports.status`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from actionhost_backfill import dialects
from actionhost_backfill.dialects.bulk import chunks
from actionhost_backfill.nova import catalog
from actionhost_backfill.nova.tables import EVENTS, SHADOW_EVENTS, nova
from actionhost_backfill.state.tables import FILLED, StateTables


def other_table(table: str) -> str:
    return SHADOW_EVENTS if table == EVENTS else EVENTS


@dataclass
class Unwritten:
    """Events a run's audit says it filled that are NULL now (a sample of its last writes)."""

    table: str
    checked: int
    null_ids: list[int]


def unwritten(
    conn: sa.Connection, st: StateTables, run_id: int, tables: list[str], sample: int = 1000
) -> list[Unwritten]:
    """Check the last ``sample`` values run ``run_id`` wrote to each table are still there.

    A run's writes are never undone except by ``revert`` (which marks its audit
    rows), so a NULL where the audit says the run wrote a host means the cell
    database is another copy than the one the run worked on: restored from a
    backup or re-created, while the state schema outlived it.  Its last writes
    are the first a restore loses, so they are the ones checked (a PK range read
    of the audit, whatever the run's size).  Rows in neither table were purged
    and prove nothing.
    """
    names = catalog.list_tables(conn)
    audit = st.audit
    found = []
    for table in tables:
        ids = [
            r[0]
            for r in conn.execute(
                sa.select(audit.c.event_id)
                .where(*written_by(st, run_id, table))
                .order_by(audit.c.event_id.desc())
                .limit(sample)
            )
        ]
        now = hosts_now(conn, table, ids, names, lock=False)
        null_ids = sorted(i for i, (_where, host) in now.items() if host is None)
        found.append(Unwritten(table, len(now), null_ids))
    return found


def written_by(st: StateTables, run_id: int, table: str) -> list:
    """The audit rows of what run ``run_id`` wrote to ``table`` that nothing reverted."""
    audit = st.audit
    return [
        audit.c.run_id == run_id,
        audit.c.event_table == table,
        audit.c.outcome == FILLED,
        audit.c.reverted_by.is_(None),
    ]


def hosts_now(
    conn: sa.Connection, table: str, ids: list[int], names: set[str], *, lock: bool
) -> dict[int, tuple[str, str | None]]:
    """Where each of these events of ``table`` is now and its host: ``table``, or its
    other copy (an archived row moves to the shadow table with its id); purged ones
    are absent.  Locked FOR UPDATE with ``lock``."""
    here = locked_hosts(conn, table, ids, names, lock=lock)
    moved = other_table(table)
    there = locked_hosts(conn, moved, [i for i in ids if i not in here], names, lock=lock)
    return {
        **{i: (moved, host) for i, host in there.items()},
        **{i: (table, host) for i, host in here.items()},
    }


def locked_hosts(
    conn: sa.Connection, table: str, ids: list[int], names: set[str], *, lock: bool
) -> dict[int, str | None]:
    """The current host of these events of ``table`` (locked FOR UPDATE with ``lock``)."""
    if not ids or table not in names:
        return {}
    t = nova(table)
    found: dict[int, str | None] = {}
    for chunk in chunks(ids):
        query = sa.select(t.c.id, t.c.host).where(t.c.id.in_(chunk))
        if lock:
            query = dialects.for_connection(conn).for_update(query)
        found.update((r[0], r[1]) for r in conn.execute(query))
    return found
