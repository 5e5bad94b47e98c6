"""Nova's tables, with only the columns the toolkit reads or writes.

No reflection at run time (one round trip less, and DateTime columns convert on
every backend, SQLite's text timestamps included).  The full schema the
simulator creates is in :mod:`actionhost_backfill.nova.models`.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa

EVENTS = "instance_actions_events"
SHADOW_EVENTS = "shadow_instance_actions_events"
EVENT_TABLES = (EVENTS, SHADOW_EVENTS)
#: The Nova tables the evidence snapshot reads, each possibly with its ``shadow_`` copy.
EVIDENCE_BASES = (
    "instances",
    "instance_actions",
    "instance_actions_events",
    "migrations",
    "instance_faults",
    "services",
    "instance_system_metadata",
    "block_device_mapping",
    "compute_nodes",
)


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
