"""Is the state schema ready: present, and at the toolkit's head revision.

The one answer every command asks before it reads or writes run state: the
backfill (a dry run may go on without it), ``status``, ``verify``,
``revert``, ``explain``, ``validate``, the operator views' provenance and the
accuracy report.
"""

from __future__ import annotations

import sqlalchemy as sa

from actionhost_backfill.errors import SchemaNotReady
from actionhost_backfill.nova import catalog
from actionhost_backfill.schema.revisions import current_revision, head_revision
from actionhost_backfill.state.location import StateLocation, state_schema_exists


def state_ready(conn: sa.Connection, location: StateLocation) -> bool:
    """Whether the state schema exists and is at the head revision."""
    return (
        state_schema_exists(conn, location) and current_revision(conn, location) == head_revision()
    )


def require_state(conn: sa.Connection, location: StateLocation) -> None:
    """Refuse unless this is a Nova cell with a ready state schema (a backfill ran)."""
    catalog.require_nova(conn, catalog.BACKFILL_TABLES)
    if not state_ready(conn, location):
        raise SchemaNotReady(
            f"no backfill state in {location.describe()}: run `actionhost-backfill schema upgrade` "
            "and a backfill first (or pass the --state-schema the backfill used)"
        )
