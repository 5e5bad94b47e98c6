"""backfill state: runs, checkpoints, audit, counts and the runner lease

All in the toolkit's state schema (never the Nova cell schema).  The audit
holds one row per examined event: the host written and the rule that
produced it, or the reason it was left NULL.

Revision ID: 0003_backfill_state
Revises: 0002_host_index
Create Date: 2026-11-24

"""

from __future__ import annotations

from collections.abc import Sequence

from actionhost_backfill.schema import ddl

revision: str = "0003_backfill_state"
down_revision: str | Sequence[str] | None = "0002_host_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ddl.create_backfill_state()


def downgrade() -> None:
    ddl.drop_backfill_state()
