"""Nova's tables, with only the columns the toolkit reads or writes.

A projection of :mod:`actionhost_backfill.nova.models`, the one declaration of
Nova's tables: only the column names are chosen here, the types are the
models'.  No reflection at run time (one round trip less, and DateTime columns
convert on every backend, SQLite's text timestamps included).
"""

from __future__ import annotations

import functools

import sqlalchemy as sa

from actionhost_backfill.nova import models

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


#: The columns the toolkit reads or writes, per table (their types are Nova's, from
#: :func:`actionhost_backfill.nova.models.build_metadata`).
READ_COLUMNS: dict[str, tuple[str, ...]] = {
    "instance_actions_events": (
        "id",
        "event",
        "action_id",
        "start_time",
        "finish_time",
        "result",
        "traceback",
        "host",
        "details",
        "deleted",
    ),
    "instance_actions": (
        "id",
        "action",
        "instance_uuid",
        "request_id",
        "user_id",
        "project_id",
        "start_time",
        "finish_time",
        "message",
        "updated_at",
        "deleted",
    ),
    "migrations": (
        "id",
        "instance_uuid",
        "source_compute",
        "dest_compute",
        "source_node",
        "dest_node",
        "status",
        "migration_type",
        "old_instance_type_id",
        "new_instance_type_id",
        "created_at",
        "updated_at",
        "deleted",
    ),
    "instance_faults": (
        "id",
        "instance_uuid",
        "host",
        "code",
        "message",
        "created_at",
        "deleted",
    ),
    "instances": (
        "id",
        "uuid",
        "host",
        "launched_on",
        "launched_at",
        "project_id",
        "vm_state",
        "deleted",
    ),
    "services": ("id", "host", "binary", "deleted"),
    "instance_system_metadata": (
        "id",
        "instance_uuid",
        "key",
        "value",
        "created_at",
        "deleted_at",
        "deleted",
    ),
    "block_device_mapping": (
        "id",
        "instance_uuid",
        "connection_info",
        "attachment_id",
        "created_at",
        "deleted_at",
        "deleted",
    ),
    "compute_nodes": ("id", "host", "hypervisor_hostname", "deleted"),
}


@functools.cache
def _models() -> sa.MetaData:
    return models.build_metadata(with_shadow=False)


def column_type(base: str, column: str) -> sa.types.TypeEngine:
    """The type Nova declares for ``base.column``, as a plain type to read it with.

    Enums read as strings: a value outside the enum must not fail a read, and
    temporary copies must not create PostgreSQL enum types.
    """
    declared = _models().tables[base].c[column].type
    if isinstance(declared, sa.Enum):
        return sa.String(32)
    return declared


def columns_of(base: str, *names: str) -> list[sa.Column]:
    """New columns (name and Nova's type only) for a projection or a temporary copy."""
    return [sa.Column(name, column_type(base, name)) for name in names]


@functools.cache
def nova(name: str) -> sa.Table:
    """A Nova table (or its ``shadow_`` copy) with the columns the toolkit uses."""
    base = name.removeprefix("shadow_")
    declared = _models().tables[base].c
    columns = [
        sa.Column(c, column_type(base, c), primary_key=declared[c].primary_key)
        for c in READ_COLUMNS[base]
    ]
    return sa.Table(name, sa.MetaData(), *columns)
