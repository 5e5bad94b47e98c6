"""ensure an index on instance_actions_events(host)

Nova defines no index on ``instance_actions_events``, so "which host failed
these events?" scans the whole table.  Build one online (PostgreSQL
``CREATE INDEX CONCURRENTLY``; MySQL/MariaDB ``ALGORITHM=INPLACE, LOCK=NONE``),
unless an index led by ``host`` already exists (Nova may add one some day).

Revision ID: 0002_host_index
Revises: 0001_host_column
Create Date: 2026-11-24

"""

from __future__ import annotations

from collections.abc import Sequence

from actionhost_backfill.schema import ddl

revision: str = "0002_host_index"
down_revision: str | Sequence[str] | None = "0001_host_column"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ddl.ensure_host_index(revision)


def downgrade() -> None:
    ddl.drop_host_index_if_ours()
