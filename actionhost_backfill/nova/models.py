"""A Nova-shaped cell schema: the tables the toolkit reads, as Nova defines them.

Used by the test harness, ``simulate`` and ``demo`` to build a cell database
on SQLite, PostgreSQL or MySQL/MariaDB.  Column types, index names and
foreign keys follow Nova's ``nova/db/main/models.py`` (master, 2026) for the
tables declared below; shadow tables are column copies
without indexes, as Nova's archiver expects; Nova's own ``alembic_version``
is there too, holding Nova's head revision, so tests can prove the toolkit
never touches it.  Only the columns the toolkit or its tests use are kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

#: Nova's main-database head revision at the time of writing (ab450ba04102,
#: "add indexes for source/dest compute").
NOVA_HEAD_REVISION = "ab450ba04102"
_MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8"}
_MIGRATION_TYPES = ("migration", "resize", "live-migration", "evacuation")


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("deleted_at", sa.DateTime),
    ]


def build_metadata(*, with_host: bool = True, with_shadow: bool = True) -> sa.MetaData:
    """MetaData for a cell schema; ``with_host=False`` gives a pre-Icehouse events table."""
    meta = sa.MetaData()
    sa.Table(
        "instances",
        meta,
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(255)),
        sa.Column("project_id", sa.String(255)),
        sa.Column("image_ref", sa.String(255)),
        sa.Column("hostname", sa.String(255)),
        sa.Column("host", sa.String(255)),
        sa.Column("node", sa.String(255)),
        sa.Column("launched_on", sa.Text),
        sa.Column("launched_at", sa.DateTime),
        sa.Column("terminated_at", sa.DateTime),
        sa.Column("display_name", sa.String(255)),
        sa.Column("vm_state", sa.String(255)),
        sa.Column("task_state", sa.String(255)),
        sa.Column("power_state", sa.Integer),
        sa.Column("memory_mb", sa.Integer),
        sa.Column("vcpus", sa.Integer),
        sa.Column("instance_type_id", sa.Integer),
        sa.Column("availability_zone", sa.String(255)),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("cleaned", sa.Integer, default=0),
        sa.Column("hidden", sa.Boolean(create_constraint=False), default=False),
        sa.Column("deleted", sa.Integer),
        sa.Index("instances_project_id_deleted_idx", "project_id", "deleted"),
        sa.Index("instances_uuid_deleted_idx", "uuid", "deleted"),
        sa.Index("instances_host_node_deleted_idx", "host", "node", "deleted"),
        sa.Index("instances_host_deleted_cleaned_idx", "host", "deleted", "cleaned"),
        sa.Index("instances_deleted_created_at_idx", "deleted", "created_at"),
        sa.UniqueConstraint("uuid", name="uniq_instances0uuid"),
        **_MYSQL,
    )
    sa.Table(
        "instance_actions",
        meta,
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True, nullable=False, autoincrement=True),
        sa.Column("action", sa.String(255)),
        sa.Column(
            "instance_uuid",
            sa.String(36),
            sa.ForeignKey("instances.uuid", name="fk_instance_actions_instance_uuid"),
        ),
        sa.Column("request_id", sa.String(255)),
        sa.Column("user_id", sa.String(255)),
        sa.Column("project_id", sa.String(255)),
        sa.Column("start_time", sa.DateTime),
        sa.Column("finish_time", sa.DateTime),
        sa.Column("message", sa.String(255)),
        sa.Column("deleted", sa.Integer),
        sa.Index("instance_uuid_idx", "instance_uuid"),
        sa.Index("request_id_idx", "request_id"),
        sa.Index("instance_actions_instance_uuid_updated_at_idx", "instance_uuid", "updated_at"),
        **_MYSQL,
    )
    event_columns = [
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True, nullable=False, autoincrement=True),
        sa.Column("event", sa.String(255)),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("instance_actions.id")),
        sa.Column("start_time", sa.DateTime),
        sa.Column("finish_time", sa.DateTime),
        sa.Column("result", sa.String(255)),
        sa.Column("traceback", sa.Text),
        sa.Column("deleted", sa.Integer),
    ]
    if with_host:
        event_columns.append(sa.Column("host", sa.String(255)))
    event_columns.append(sa.Column("details", sa.Text))
    # Nova defines no index at all on this table (InnoDB adds one for the FK).
    sa.Table("instance_actions_events", meta, *event_columns, **_MYSQL)
    sa.Table(
        "migrations",
        meta,
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True, nullable=False),
        sa.Column("source_compute", sa.String(255)),
        sa.Column("dest_compute", sa.String(255)),
        sa.Column("dest_host", sa.String(255)),
        sa.Column("status", sa.String(255)),
        sa.Column(
            "instance_uuid",
            sa.String(36),
            sa.ForeignKey("instances.uuid", name="fk_migrations_instance_uuid"),
        ),
        sa.Column("old_instance_type_id", sa.Integer),
        sa.Column("new_instance_type_id", sa.Integer),
        sa.Column("source_node", sa.String(255)),
        sa.Column("dest_node", sa.String(255)),
        sa.Column("deleted", sa.Integer),
        sa.Column(
            "migration_type", sa.Enum(*_MIGRATION_TYPES, name="migration_type"), nullable=True
        ),
        sa.Column("hidden", sa.Boolean(create_constraint=False), default=False),
        sa.Column("uuid", sa.String(36)),
        sa.Column("cross_cell_move", sa.Boolean(create_constraint=False), default=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Index("migrations_uuid", "uuid", unique=True),
        sa.Index("migrations_instance_uuid_and_status_idx", "deleted", "instance_uuid", "status"),
        sa.Index("migrations_updated_at_idx", "updated_at"),
        sa.Index(
            "migrations_by_host_nodes_and_status_idx",
            "deleted",
            "source_compute",
            "dest_compute",
            "source_node",
            "dest_node",
            "status",
            mysql_length={
                "source_compute": 100,
                "dest_compute": 100,
                "source_node": 100,
                "dest_node": 100,
            },
        ),
        **_MYSQL,
    )
    sa.Table(
        "instance_faults",
        meta,
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True, nullable=False),
        sa.Column(
            "instance_uuid",
            sa.String(36),
            sa.ForeignKey("instances.uuid", name="fk_instance_faults_instance_uuid"),
        ),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("message", sa.String(255)),
        sa.Column("details", sa.Text),
        sa.Column("host", sa.String(255)),
        sa.Column("deleted", sa.Integer),
        sa.Index("instance_faults_host_idx", "host"),
        sa.Index(
            "instance_faults_instance_uuid_deleted_created_at_idx",
            "instance_uuid",
            "deleted",
            "created_at",
        ),
        **_MYSQL,
    )
    sa.Table(
        "services",
        meta,
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=True),
        sa.Column("host", sa.String(255)),
        sa.Column("binary", sa.String(255)),
        sa.Column("topic", sa.String(255)),
        sa.Column("report_count", sa.Integer, nullable=False, default=0),
        sa.Column("disabled", sa.Boolean(create_constraint=False), default=False),
        sa.Column("deleted", sa.Integer),
        sa.Column("version", sa.Integer, default=0),
        sa.Index("services_uuid_idx", "uuid", unique=True),
        sa.UniqueConstraint("host", "binary", "deleted", name="uniq_services0host0binary0deleted"),
        **_MYSQL,
    )
    # Evidence older releases left behind (see docs/accuracy.md): the shelving
    # host in system metadata, volume connectors in block device mappings, and
    # the compute nodes that map a migration's node back to its host.
    sa.Table(
        "instance_system_metadata",
        meta,
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255)),
        sa.Column(
            "instance_uuid",
            sa.String(36),
            sa.ForeignKey("instances.uuid", name="instance_system_metadata_ibfk_1"),
            nullable=False,
        ),
        sa.Column("deleted", sa.Integer),
        sa.Index("instance_uuid", "instance_uuid"),
        **_MYSQL,
    )
    sa.Table(
        "block_device_mapping",
        meta,
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "instance_uuid",
            sa.String(36),
            sa.ForeignKey("instances.uuid", name="block_device_mapping_instance_uuid_fkey"),
        ),
        sa.Column("uuid", sa.String(36)),
        sa.Column("source_type", sa.String(255)),
        sa.Column("destination_type", sa.String(255)),
        sa.Column("device_name", sa.String(255)),
        sa.Column("boot_index", sa.Integer),
        sa.Column("delete_on_termination", sa.Boolean(create_constraint=False), default=False),
        sa.Column("volume_id", sa.String(36)),
        sa.Column("connection_info", sa.Text),
        sa.Column("attachment_id", sa.String(36)),
        sa.Column("deleted", sa.Integer),
        sa.Index("volume_id", "volume_id"),
        sa.Index("block_device_mapping_instance_uuid_idx", "instance_uuid"),
        sa.UniqueConstraint("uuid", name="uniq_block_device_mapping0uuid"),
        **_MYSQL,
    )
    sa.Table(
        "compute_nodes",
        meta,
        *_timestamps(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("service_id", sa.Integer),
        sa.Column("host", sa.String(255)),
        sa.Column("uuid", sa.String(36)),
        sa.Column("hypervisor_hostname", sa.String(255)),
        sa.Column("hypervisor_type", sa.Text),
        sa.Column("deleted", sa.Integer),
        sa.Index("compute_nodes_uuid_idx", "uuid", unique=True),
        sa.UniqueConstraint(
            "host",
            "hypervisor_hostname",
            "deleted",
            name="uniq_compute_nodes0host0hypervisor_hostname0deleted",
        ),
        **_MYSQL,
    )
    if with_shadow:
        for name in list(meta.tables):
            _add_shadow(meta, meta.tables[name])
    sa.Table(
        "alembic_version",
        meta,
        sa.Column("version_num", sa.String(32), primary_key=True),
        **_MYSQL,
    )
    return meta


def _add_shadow(meta: sa.MetaData, table: sa.Table) -> None:
    """Nova's shadow tables: same columns and primary key, no indexes, no FKs."""
    columns = []
    for column in table.columns:
        col_type = column.type
        if isinstance(col_type, sa.Enum):
            # PostgreSQL shares the live table's enum type, as Nova does.
            col_type = postgresql.ENUM(
                *col_type.enums, name=col_type.name, create_type=False
            ).with_variant(
                sa.Enum(*col_type.enums, name=col_type.name), "mysql", "mariadb", "sqlite"
            )
        columns.append(
            sa.Column(
                column.name,
                col_type,
                primary_key=column.primary_key,
                nullable=column.nullable,
                autoincrement=False,
            )
        )
    sa.Table(f"shadow_{table.name}", meta, *columns, **_MYSQL)


def create_cell_schema(
    engine_or_conn: sa.Engine | sa.Connection, *, with_host: bool = True, with_shadow: bool = True
) -> sa.MetaData:
    """Create the Nova-shaped tables (and Nova's alembic_version row)."""
    meta = build_metadata(with_host=with_host, with_shadow=with_shadow)

    def _create(conn: sa.Connection) -> None:
        meta.create_all(conn)
        version = meta.tables["alembic_version"]
        if conn.execute(sa.select(sa.func.count()).select_from(version)).scalar() == 0:
            conn.execute(version.insert().values(version_num=NOVA_HEAD_REVISION))

    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.begin() as conn:
            _create(conn)
    else:
        _create(engine_or_conn)
    return meta
