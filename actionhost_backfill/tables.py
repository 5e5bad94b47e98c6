"""Core ``Table`` objects for what the toolkit reads and writes.

Nova's tables are declared here with only the columns the toolkit uses (no
reflection at run time: one round trip less, and DateTime columns convert on
every backend, SQLite's text timestamps included).  The state schema's tables
are built per schema name, matching revision 0003.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa

EVENTS = "instance_actions_events"
SHADOW_EVENTS = "shadow_instance_actions_events"
EVENT_TABLES = (EVENTS, SHADOW_EVENTS)


@functools.cache
def nova(name: str) -> sa.Table:
    """A Nova table (or its ``shadow_`` copy) with the columns the toolkit uses."""
    base = name.removeprefix("shadow_")
    meta = sa.MetaData()
    if base == "instance_actions_events":
        columns = [
            sa.Column("id", sa.BigInteger, primary_key=True),
            sa.Column("event", sa.String(255)),
            sa.Column("action_id", sa.Integer),
            sa.Column("start_time", sa.DateTime),
            sa.Column("finish_time", sa.DateTime),
            sa.Column("result", sa.String(255)),
            sa.Column("traceback", sa.Text),
            sa.Column("host", sa.String(255)),
            sa.Column("details", sa.Text),
            sa.Column("deleted", sa.Integer),
        ]
    elif base == "instance_actions":
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("action", sa.String(255)),
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("request_id", sa.String(255)),
            sa.Column("user_id", sa.String(255)),
            sa.Column("project_id", sa.String(255)),
            sa.Column("start_time", sa.DateTime),
            sa.Column("finish_time", sa.DateTime),
            sa.Column("message", sa.String(255)),
            sa.Column("updated_at", sa.DateTime),
            sa.Column("deleted", sa.Integer),
        ]
    elif base == "migrations":
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("source_compute", sa.String(255)),
            sa.Column("dest_compute", sa.String(255)),
            sa.Column("source_node", sa.String(255)),
            sa.Column("dest_node", sa.String(255)),
            sa.Column("status", sa.String(255)),
            sa.Column("migration_type", sa.String(32)),
            sa.Column("old_instance_type_id", sa.Integer),
            sa.Column("new_instance_type_id", sa.Integer),
            sa.Column("created_at", sa.DateTime),
            sa.Column("updated_at", sa.DateTime),
            sa.Column("deleted", sa.Integer),
        ]
    elif base == "instance_faults":
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("host", sa.String(255)),
            sa.Column("code", sa.Integer),
            sa.Column("message", sa.String(255)),
            sa.Column("created_at", sa.DateTime),
            sa.Column("deleted", sa.Integer),
        ]
    elif base == "instances":
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("uuid", sa.String(36)),
            sa.Column("host", sa.String(255)),
            sa.Column("launched_on", sa.Text),
            sa.Column("launched_at", sa.DateTime),
            sa.Column("project_id", sa.String(255)),
            sa.Column("vm_state", sa.String(255)),
            sa.Column("deleted", sa.Integer),
        ]
    elif base == "services":
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("host", sa.String(255)),
            sa.Column("binary", sa.String(255)),
            sa.Column("deleted", sa.Integer),
        ]
    elif base == "instance_system_metadata":
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("key", sa.String(255)),
            sa.Column("value", sa.String(255)),
            sa.Column("created_at", sa.DateTime),
            sa.Column("deleted_at", sa.DateTime),
            sa.Column("deleted", sa.Integer),
        ]
    elif base == "block_device_mapping":
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("connection_info", sa.Text),
            sa.Column("attachment_id", sa.String(36)),
            sa.Column("created_at", sa.DateTime),
            sa.Column("deleted_at", sa.DateTime),
            sa.Column("deleted", sa.Integer),
        ]
    elif base == "compute_nodes":
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("host", sa.String(255)),
            sa.Column("hypervisor_hostname", sa.String(255)),
            sa.Column("deleted", sa.Integer),
        ]
    else:
        raise KeyError(name)
    return sa.Table(name, meta, *columns)


class StateTables:
    """The state schema's tables (revision 0003) for one schema name."""

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


@functools.cache
def state(schema: str) -> StateTables:
    return StateTables(schema)


# Outcomes recorded in the audit.
FILLED = "filled"
LEFT_NULL = "left-null"
SKIPPED = "skipped"
"""Nova recorded a host between our read and our write: not touched."""
