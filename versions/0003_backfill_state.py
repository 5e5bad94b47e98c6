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

import sqlalchemy as sa

from actionhost_backfill.schema import ddl

revision: str = "0003_backfill_state"
down_revision: str | Sequence[str] | None = "0002_host_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def state_tables() -> dict[str, list]:
    """The tables as this revision creates them, in creation order.

    Frozen: whatever ``state/tables.py`` (the runtime declaration) becomes, this
    stays what 0003 created; a change of shape is a new revision.
    """
    return {
        "runs": [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("target_run_id", sa.Integer),
            sa.Column("options", sa.Text),
            sa.Column("started_at", sa.DateTime, nullable=False),
            sa.Column("updated_at", sa.DateTime, nullable=False),
            sa.Column("finished_at", sa.DateTime),
            sa.Column("runner", sa.String(255)),
            sa.Column("toolkit_version", sa.String(32)),
            sa.Column("message", sa.Text),
        ],
        "checkpoints": [
            sa.Column("run_id", sa.Integer, primary_key=True),
            sa.Column("event_table", sa.String(64), primary_key=True),
            sa.Column("last_id", sa.BigInteger, nullable=False),
            sa.Column("horizon", sa.BigInteger, nullable=False),
            sa.Column("done", sa.Boolean, nullable=False),
            sa.Column("batches", sa.Integer, nullable=False),
            sa.Column("examined", sa.BigInteger, nullable=False),
            sa.Column("retries", sa.Integer, nullable=False),
            sa.Column("seconds", sa.Float, nullable=False),
            sa.Column("updated_at", sa.DateTime, nullable=False),
        ],
        "audit": [
            sa.Column("run_id", sa.Integer, primary_key=True),
            sa.Column("event_table", sa.String(64), primary_key=True),
            sa.Column("event_id", sa.BigInteger, primary_key=True),
            sa.Column("host", sa.String(255)),
            sa.Column("rule", sa.String(32), nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("batch", sa.Integer, nullable=False),
            sa.Column("reverted_by", sa.Integer),
            sa.Index("audit_event_idx", "event_id"),
        ],
        "run_counts": [
            sa.Column("run_id", sa.Integer, primary_key=True),
            sa.Column("event_table", sa.String(64), primary_key=True),
            sa.Column("outcome", sa.String(16), primary_key=True),
            sa.Column("rule", sa.String(32), primary_key=True),
            sa.Column("row_count", sa.BigInteger, nullable=False),
        ],
        "runner_lease": [
            sa.Column("name", sa.String(32), primary_key=True),
            sa.Column("run_id", sa.Integer),
            sa.Column("holder", sa.String(255)),
            sa.Column("hostname", sa.String(255)),
            sa.Column("pid", sa.Integer),
            sa.Column("token", sa.String(64)),
            sa.Column("acquired_at", sa.DateTime),
            sa.Column("heartbeat_at", sa.DateTime),
            sa.Column("expires_at", sa.DateTime),
        ],
    }


def upgrade() -> None:
    ddl.create_backfill_state(state_tables())


def downgrade() -> None:
    ddl.drop_backfill_state(state_tables())
