"""The state schema's tables, built per schema name: the one runtime declaration."""

from __future__ import annotations

import functools

import sqlalchemy as sa


class StateTables:
    """The state schema's tables for one schema name, as the revisions leave them.

    The revision scripts (``versions/0001_host_column.py`` for the ledger,
    ``versions/0003_backfill_state.py`` for the rest) carry their own frozen
    copies, on purpose: a revision describes the schema as it was at that
    revision and must not change when these models do.
    ``tests/test_state_models.py`` compares the two on every backend (Alembic's
    ``compare_metadata``, as Nova's models/migrations sync test).
    """

    def __init__(self, schema: str):
        meta = sa.MetaData(schema=schema)
        self.schema = schema
        self.runs = sa.Table(
            "runs",
            meta,
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
        )
        self.checkpoints = sa.Table(
            "checkpoints",
            meta,
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
        )
        self.audit = sa.Table(
            "audit",
            meta,
            sa.Column("run_id", sa.Integer, primary_key=True),
            sa.Column("event_table", sa.String(64), primary_key=True),
            sa.Column("event_id", sa.BigInteger, primary_key=True),
            sa.Column("host", sa.String(255)),
            sa.Column("rule", sa.String(32), nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("batch", sa.Integer, nullable=False),
            sa.Column("reverted_by", sa.Integer),
            sa.Index("audit_event_idx", "event_id"),
        )
        self.run_counts = sa.Table(
            "run_counts",
            meta,
            sa.Column("run_id", sa.Integer, primary_key=True),
            sa.Column("event_table", sa.String(64), primary_key=True),
            sa.Column("outcome", sa.String(16), primary_key=True),
            sa.Column("rule", sa.String(32), primary_key=True),
            sa.Column("row_count", sa.BigInteger, nullable=False),
        )
        self.lease = sa.Table(
            "runner_lease",
            meta,
            sa.Column("name", sa.String(32), primary_key=True),
            sa.Column("run_id", sa.Integer),
            sa.Column("holder", sa.String(255)),
            sa.Column("hostname", sa.String(255)),
            sa.Column("pid", sa.Integer),
            sa.Column("token", sa.String(64)),
            sa.Column("acquired_at", sa.DateTime),
            sa.Column("heartbeat_at", sa.DateTime),
            sa.Column("expires_at", sa.DateTime),
        )
        # Revision 0001: what the toolkit created, read by downgrades.
        self.ledger = sa.Table(
            "schema_changes",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("revision", sa.String(32), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("table_name", sa.String(64), nullable=False),
            sa.Column("object_name", sa.String(64), nullable=False),
            sa.Column("detail", sa.String(255)),
            sa.Column(
                "created_at",
                sa.DateTime,
                nullable=False,
                server_default=sa.func.current_timestamp(),
            ),
        )
        self.metadata = meta


@functools.cache
def state(schema: str) -> StateTables:
    return StateTables(schema)


# Outcomes recorded in the audit.
FILLED = "filled"
LEFT_NULL = "left-null"
SKIPPED = "skipped"
"""Nova recorded a host between our read and our write: not touched."""
