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

from actionhost_backfill.schema import ddl

revision: str = "0001_host_column"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ddl.create_ledger()
    ddl.ensure_host_column(revision)


def downgrade() -> None:
    ddl.drop_host_column_if_added()
    ddl.drop_ledger()
