"""ensure instance_actions_events.host exists

Nova has had ``host VARCHAR(255) NULL`` on ``instance_actions_events`` since
Icehouse but only writes it since Rocky (microversion 2.62).  Make sure it is
there, with a compatible type, on the events table and its shadow copy (the
archiver copies columns by name, so both or neither).  Also creates the
toolkit's ledger, so a downgrade removes only what the toolkit added.

Revision ID: 0001_host_column
Revises:
Create Date: 2026-11-24

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from actionhost_backfill.schema import ddl

revision: str = "0001_host_column"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def ledger_columns() -> list[sa.Column]:
    """The ledger as this revision creates it: frozen, whatever ``state/tables.py`` becomes.

    Offline downgrades (0002's too) recreate it from here when a previous run dropped it.
    """
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("revision", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("object_name", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(255)),
        sa.Column(
            "created_at", sa.DateTime, nullable=False, server_default=sa.func.current_timestamp()
        ),
    ]


def upgrade() -> None:
    ddl.create_ledger(ledger_columns())
    ddl.ensure_host_column(revision)


def downgrade() -> None:
    ddl.drop_host_column_if_added()
    ddl.drop_ledger()
