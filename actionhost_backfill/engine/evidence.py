"""Read what inference needs, a chunk of instances at a time, in a few set-based queries.

Nova's tables lack the indexes a per-instance lookup would need on every
backend (migrations lead with ``deleted``, events have no index at all on
PostgreSQL and SQLite, shadow tables have none anywhere), so each run first
takes an *evidence snapshot* into TEMPORARY tables on the runner's own
connection (nothing is written to the Nova or state schema, so a dry run
can take one too):

``ah_mig``   every migration, live and archived, indexed by instance;
``ah_ev``    every event, live and archived, with its instance and the host
             Nova recorded (values this toolkit wrote are blanked, so a
             resumed run sees exactly the evidence an uninterrupted one saw);
``ah_meta``  the ``shelved_host`` / ``shelved_at`` system metadata, any
             ``deleted`` value (Kilo soft-deleted them), live and archived;
``ah_vol``   volume attachments whose saved ``connection_info`` holds a
             connector, live, detached and archived;
``ah_sact``, ``ah_sinst``, ``ah_sfault``
             archived actions, instances and faults (shadow tables have no
             indexes).

Live instances, actions and faults are read fresh per chunk through Nova's
own indexes, and migrations changed since the snapshot are overlaid, so a move
that happens during a long run is seen.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from actionhost_backfill import dialects
from actionhost_backfill.clock import utcnow
from actionhost_backfill.dialects import bulk
from actionhost_backfill.dialects.bulk import chunks
from actionhost_backfill.engine import clocks
from actionhost_backfill.inference import (
    ActionRow,
    EventRow,
    FaultRow,
    InstanceHistory,
    InstanceRow,
    KnownHosts,
    MigrationRow,
    ShelveRecord,
    VolumeRecord,
    roles,
    skew,
)
from actionhost_backfill.inference import eras as eras_mod
from actionhost_backfill.nova.tables import EVENTS, EVIDENCE_BASES, columns_of, nova
from actionhost_backfill.state.location import StateLocation
from actionhost_backfill.state.tables import FILLED, state

#: Margin for clock skew when overlaying migrations changed since the snapshot.
SNAPSHOT_MARGIN = timedelta(minutes=10)
SHELVED_KEYS = ("shelved_host", "shelved_at")
#: How ``shelved_at`` was written: ``timeutils.strtime()`` (Kilo, Liberty) or
#: ``utcnow().isoformat()`` (Mitaka+), naive UTC.
_SHELVED_AT_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")


@dataclass
class BatchEvidence:
    actions: dict[int, ActionRow]
    histories: dict[str, InstanceHistory]
    hosts: KnownHosts


@dataclass
class SnapshotStats:
    migrations: int = 0
    events: int = 0
    shelve_records: int = 0
    volume_connectors: int = 0
    archived_actions: int = 0
    compute_hosts: int = 0
    seconds: float = 0.0
    taken_at: datetime | None = None
    details: dict = field(default_factory=dict)
    eras: eras_mod.Eras | None = None
    """Which releases may have written the rows (``inference.eras``)."""
    clock: dict = field(default_factory=dict)
    """nova-api's clock against the conductors' (``skew.SkewReport.to_dict``)."""
    clock_line: str = ""


def parse_shelved_at(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.strip().removesuffix("Z")
    for pattern in _SHELVED_AT_FORMATS:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None


def connector_host(connection_info: str | None) -> str | None:
    """The ``connector.host`` a legacy attachment saved (Mitaka+), or None."""
    if not connection_info:
        return None
    try:
        info = json.loads(connection_info)
    except ValueError:
        return None
    connector = info.get("connector") if isinstance(info, dict) else None
    host = connector.get("host") if isinstance(connector, dict) else None
    return host if isinstance(host, str) and host else None


class EvidenceSnapshot:
    """Temporary evidence tables on one connection, and per-chunk loading."""

    def __init__(
        self,
        conn: sa.Connection,
        location: StateLocation | None,
        *,
        audit_available: bool,
        releases: dict[str, date] | None = None,
    ):
        self.conn = conn
        self.releases = releases
        """The operator's upgrade history (``--releases``); None: detect the eras."""
        self.eras: eras_mod.Eras | None = None
        self.dialect = dialects.for_connection(conn)
        self.location = location
        self.audit_available = audit_available
        inspector = sa.inspect(conn)
        names = set(inspector.get_table_names())
        self.present = names
        self.has_services = "services" in names
        self.has_shadow = {t: f"shadow_{t}" in names for t in EVIDENCE_BASES}
        bdm_columns = (
            {c["name"] for c in inspector.get_columns("block_device_mapping")}
            if "block_device_mapping" in names
            else set()
        )
        self.has_bdm = {"connection_info", "created_at", "deleted_at"} <= bdm_columns
        self.bdm_attachment_id = "attachment_id" in bdm_columns
        # MySQL under REPEATABLE READ (statement-based binlog) would lock every
        # row CREATE ... SELECT reads: copy through the client instead.
        self.copy_through_client = self.dialect.copies_through_client(conn)
        self.stats = SnapshotStats()
        self.taken_at: datetime | None = None
        self.hosts = KnownHosts()
        self.skew_report = skew.SkewReport()
        meta = sa.MetaData()
        # Temporary copies of Nova's tables: the columns named here, Nova's types.
        self.t_mig = sa.Table(
            "ah_mig",
            meta,
            *columns_of(
                "migrations",
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
            ),
        )
        self.t_ev = sa.Table(
            "ah_ev",
            meta,
            *columns_of("instance_actions", "instance_uuid"),
            *columns_of(
                EVENTS,
                "action_id",
                "id",
                "event",
                "start_time",
                "finish_time",
                "result",
                "host",
            ),
        )
        self.t_meta = sa.Table(
            "ah_meta",
            meta,
            *columns_of("instance_system_metadata", "instance_uuid", "key", "value"),
        )
        self.t_vol = sa.Table(
            "ah_vol",
            meta,
            *columns_of(
                "block_device_mapping",
                "instance_uuid",
                "connection_info",
                "created_at",
                "deleted_at",
                "deleted",
            ),
        )
        self.t_sact = sa.Table(
            "ah_sact",
            meta,
            *columns_of(
                "instance_actions",
                "id",
                "instance_uuid",
                "action",
                "start_time",
                "request_id",
                "project_id",
            ),
        )
        self.t_sinst = sa.Table(
            "ah_sinst",
            meta,
            *columns_of("instances", "uuid", "host", "project_id", "launched_on", "launched_at"),
        )
        self.t_sfault = sa.Table(
            "ah_sfault",
            meta,
            *columns_of("instance_faults", "instance_uuid", "host", "created_at", "message"),
        )

    # ------------------------------------------------------------------ snapshot

    def _union(self, base: str, select_of) -> sa.Select | sa.CompoundSelect:
        """``select_of(table)`` over the live table and its shadow copy, if any."""
        parts = [select_of(nova(base))]
        if self.has_shadow.get(base):
            parts.append(select_of(nova(f"shadow_{base}")))
        return sa.union_all(*parts) if len(parts) > 1 else parts[0]

    def take(self, instances: list[str] | None = None) -> SnapshotStats:
        """Build (or rebuild) the temporary evidence tables.

        ``instances`` restricts them to those instances (``explain``); the
        backfill and ``validate`` take everything.
        """
        started = time.monotonic()
        self.taken_at = utcnow().replace(microsecond=0)
        conn = self.conn

        def only(column: sa.ColumnElement) -> sa.ColumnElement[bool]:
            return sa.true() if instances is None else column.in_(instances)

        self.create_temp(
            "ah_mig",
            self._union(
                "migrations",
                lambda t: sa.select(*_migration_columns(t)).where(only(t.c.instance_uuid)),
            ),
            ["instance_uuid"],
        )

        # Events carry their instance (through their action, live or archived)
        # so a chunk loads them by instance, like the rest.  Two primary-key
        # joins, not a join on a UNION: MariaDB has no hash join and would scan
        # the derived table per row.
        def events(t: sa.Table):
            joined, owner, action_name = self.with_owner(t, with_action=True)
            host = t.c.host
            if self.audit_available and self.location is not None:
                audit = state(self.location.schema).audit
                written = sa.exists().where(
                    audit.c.event_id == t.c.id,
                    audit.c.outcome == FILLED,
                    audit.c.reverted_by.is_(None),
                )
                host = sa.case((written, sa.null()), else_=t.c.host)
            return (
                sa.select(
                    owner.label("instance_uuid"),
                    t.c.action_id,
                    t.c.id,
                    t.c.event,
                    t.c.start_time,
                    t.c.finish_time,
                    t.c.result,
                    host.label("host"),
                )
                .select_from(joined)
                .where(owner.is_not(None), only(owner), _needed(t, action_name))
            )

        self.create_temp("ah_ev", self._union("instance_actions_events", events), ["instance_uuid"])

        if "instance_system_metadata" in self.present:
            self.create_temp(
                "ah_meta",
                self._union(
                    "instance_system_metadata",
                    lambda t: sa.select(t.c.instance_uuid, t.c.key, t.c.value).where(
                        t.c.key.in_(SHELVED_KEYS), only(t.c.instance_uuid)
                    ),
                ),
                ["instance_uuid"],
            )
        if self.has_bdm:

            def volumes(t: sa.Table):
                query = sa.select(
                    t.c.instance_uuid,
                    t.c.connection_info,
                    t.c.created_at,
                    t.c.deleted_at,
                    t.c.deleted,
                ).where(
                    t.c.connection_info.contains('"connector"', autoescape=True),
                    only(t.c.instance_uuid),
                )
                if self.bdm_attachment_id:
                    # New-style (Queens+) attachments store no connector.
                    query = query.where(t.c.attachment_id.is_(None))
                return query

            self.create_temp(
                "ah_vol", self._union("block_device_mapping", volumes), ["instance_uuid"]
            )

        if self.has_shadow["instance_actions"]:
            t = nova("shadow_instance_actions")
            self.create_temp(
                "ah_sact",
                sa.select(
                    t.c.id,
                    t.c.instance_uuid,
                    t.c.action,
                    t.c.start_time,
                    t.c.request_id,
                    t.c.project_id,
                ).where(only(t.c.instance_uuid)),
                ["id", "instance_uuid"],
            )
        if self.has_shadow["instances"]:
            t = nova("shadow_instances")
            self.create_temp(
                "ah_sinst",
                sa.select(
                    t.c.uuid, t.c.host, t.c.project_id, t.c.launched_on, t.c.launched_at
                ).where(only(t.c.uuid)),
                ["uuid"],
            )
        if self.has_shadow["instance_faults"]:
            t = nova("shadow_instance_faults")
            self.create_temp(
                "ah_sfault",
                sa.select(
                    t.c.instance_uuid,
                    t.c.host,
                    t.c.created_at,
                    sa.func.substr(t.c.message, 1, 255).label("message"),
                ).where(only(t.c.instance_uuid)),
                ["instance_uuid"],
            )
        self.eras = eras_mod.eras_for(self._era_proofs(), self.releases)
        self.skew_report = clocks.measure(conn, self.present, self.t_mig)
        self.hosts = replace(
            self._known_hosts(), untracked=self.eras.untracked, skew=self.skew_report.skew
        )

        count = lambda t: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0  # noqa: E731
        self.stats = SnapshotStats(
            migrations=count(self.t_mig),
            events=count(self.t_ev),
            shelve_records=count(self.t_meta) if "instance_system_metadata" in self.present else 0,
            volume_connectors=count(self.t_vol) if self.has_bdm else 0,
            archived_actions=count(self.t_sact) if self.has_shadow["instance_actions"] else 0,
            compute_hosts=len(self.hosts.compute),
            seconds=time.monotonic() - started,
            taken_at=self.taken_at,
            eras=self.eras,
            clock=self.skew_report.to_dict(),
            clock_line=self.skew_report.summary(),
        )
        conn.commit()
        return self.stats

    def _era_proofs(self) -> eras_mod.Proofs:
        """What the whole cell proves about its releases (never restricted to some instances)."""
        conn = self.conn

        def tables(base: str) -> list[sa.Table]:
            return [nova(base)] + ([nova(f"shadow_{base}")] if self.has_shadow.get(base) else [])

        kilo: dict[str, datetime] = {}
        old: dict[str, tuple[datetime, datetime]] = {}
        names = sorted(eras_mod.KILO_EVENTS + eras_mod.OLD_EVENTS)
        for t in tables("instance_actions_events"):
            query = (
                sa.select(t.c.event, sa.func.min(t.c.start_time), sa.func.max(t.c.start_time))
                .where(t.c.event.in_(names), t.c.start_time.is_not(None))
                .group_by(t.c.event)
            )
            for name, first, last in conn.execute(query):
                if name in eras_mod.OLD_EVENTS:
                    a, b = old.get(name, (first, last))
                    old[name] = (min(a, first), max(b, last))
                else:
                    key = f"{name} event"
                    kilo[key] = min(kilo.get(key, first), first)
        first_action: datetime | None = None
        for t in tables("instance_actions"):
            found = conn.execute(
                sa.select(sa.func.min(t.c.start_time)).where(t.c.action.in_(eras_mod.KILO_ACTIONS))
            ).scalar()
            if found is not None:
                kilo["live-migration action"] = min(kilo.get("live-migration action", found), found)
            earliest = conn.execute(sa.select(sa.func.min(t.c.start_time))).scalar()
            if earliest is not None and (first_action is None or earliest < first_action):
                first_action = earliest
        for t in tables("migrations"):
            found = conn.execute(
                sa.select(sa.func.min(t.c.created_at)).where(t.c.migration_type.is_not(None))
            ).scalar()
            if found is not None:
                kilo["typed migration row"] = min(kilo.get("typed migration row", found), found)
        kilo_at = min(kilo.values(), default=None)
        before = None
        if kilo_at is not None:
            before = sum(
                conn.execute(
                    sa.select(sa.func.count()).select_from(t).where(t.c.start_time < kilo_at)
                ).scalar()
                or 0
                for t in tables("instance_actions")
            )
        version = None
        if self.has_services and any(
            c["name"] == "version" for c in sa.inspect(conn).get_columns("services")
        ):
            services = sa.table("services", sa.column("version"))
            version = conn.execute(sa.select(sa.func.max(services.c.version))).scalar()
        return eras_mod.Proofs(
            first_action=first_action,
            kilo=tuple(sorted(kilo.items(), key=lambda kv: kv[1])),
            old=tuple((name, a, b) for name, (a, b) in sorted(old.items())),
            actions_before=before,
            services_version=int(version) if version else None,
        )

    def _known_hosts(self) -> KnownHosts:
        conn = self.conn
        hosts: set[str] = set()
        for column in (self.t_mig.c.source_compute, self.t_mig.c.dest_compute):
            hosts.update(r[0] for r in conn.execute(sa.select(column).distinct()) if r[0])
        # Hosts Nova recorded on generic compute events are computes.
        ev = self.t_ev
        hosts.update(
            r[0]
            for r in conn.execute(
                sa.select(ev.c.host)
                .where(
                    ev.c.host.is_not(None),
                    ev.c.event.startswith("compute_", autoescape=True),
                    ev.c.event.not_in(_MOVE_SIDED_EVENTS),
                )
                .distinct()
            )
            if r[0]
        )
        i = nova("instances")
        for column in (i.c.host, i.c.launched_on):
            hosts.update(r[0] for r in conn.execute(sa.select(column).distinct()) if r[0])
        if self.has_shadow["instances"]:
            hosts.update(
                r[0] for r in conn.execute(sa.select(self.t_sinst.c.host).distinct()) if r[0]
            )
        seen: dict[str, set[str]] = defaultdict(set)
        if "compute_nodes" in self.present:
            for name in ("compute_nodes", "shadow_compute_nodes"):
                if name in self.present:
                    t = nova(name)
                    for host, node in conn.execute(
                        sa.select(t.c.host, t.c.hypervisor_hostname).distinct()
                    ):
                        if host and node:
                            seen[node].add(host)
                            hosts.add(host)
        # The services table names every host that ran nova-compute, and the
        # conductors and schedulers whose faults (NoValidHost...) say nothing.
        computes: set[str] = set()
        others: set[str] = set()
        if self.has_services:
            for name in (
                ("services", "shadow_services") if self.has_shadow["services"] else ("services",)
            ):
                t = nova(name)
                for host, binary in conn.execute(sa.select(t.c.host, t.c.binary).distinct()):
                    if host:
                        (computes if binary == "nova-compute" else others).add(host)
        return known_hosts_from(hosts, seen, computes, others)

    # ------------------------------------------------------------------ temporary tables
    # (the planner keeps its own on this connection through these too)

    def create_temp(
        self,
        name: str,
        select: sa.Select | sa.CompoundSelect,
        index_columns: list[str],
        *,
        columns: sa.Table | None = None,
    ) -> None:
        """CREATE TEMPORARY TABLE ``name`` AS ``select``, indexed on ``index_columns``;
        ``columns``: its declaration, when it is not one of the snapshot's."""
        conn = self.conn
        self.drop_temp(name)
        conn.commit()
        if self.copy_through_client:
            self._copy_through_client(name, select, columns)
        else:
            compiled = select.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            # Compiled for the driver's paramstyle: exec_driver_sql un-doubles any %%.
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} AS {compiled}")
        for column in index_columns:
            conn.exec_driver_sql(f"CREATE INDEX {name}_{column}_ix ON {name} ({column})")
        self.dialect.analyze_temp(conn, name)
        conn.commit()

    def _copy_through_client(self, name: str, select, columns: sa.Table | None) -> None:
        """Non-locking reads on a second connection, inserted here in chunks."""
        target = columns if columns is not None else self.t_mig.metadata.tables[name]
        self.create_empty(target)
        keys = [c.name for c in target.columns]
        with self.conn.engine.connect() as reader:
            result = reader.execution_options(stream_results=True).execute(select)
            while rows := result.fetchmany(10_000):
                bulk.insert_rows(self.conn, name, keys, [tuple(row) for row in rows])
        self.conn.commit()

    def create_empty(self, table: sa.Table) -> None:
        """CREATE TEMPORARY TABLE with ``table``'s columns (and primary key)."""
        quote = self.conn.dialect.identifier_preparer.quote
        columns = ", ".join(
            f"{quote(c.name)} {c.type.compile(dialect=self.conn.dialect)}"
            + (" PRIMARY KEY" if c.primary_key else "")
            for c in table.columns
        )
        self.conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {table.name} ({columns})")

    def drop_temp(self, name: str) -> None:
        self.dialect.drop_temp(self.conn, name)

    def drop(self) -> None:
        for name in self.t_mig.metadata.tables:
            self.drop_temp(name)
        self.conn.commit()

    def with_owner(self, t: sa.Table, *, with_action: bool = False):
        """``t`` joined to its action (live, else archived), and the instance it belongs to
        (and, ``with_action``, the action's name)."""
        live = nova("instance_actions").alias("live_action")
        joined = t.outerjoin(live, live.c.id == t.c.action_id)
        owner, name = live.c.instance_uuid, live.c.action
        if self.has_shadow["instance_actions"]:
            shadow = nova("shadow_instance_actions").alias("archived_action")
            joined = joined.outerjoin(shadow, shadow.c.id == t.c.action_id)
            owner = sa.func.coalesce(live.c.instance_uuid, shadow.c.instance_uuid)
            name = sa.func.coalesce(live.c.action, shadow.c.action)
        return (joined, owner, name) if with_action else (joined, owner)

    # ------------------------------------------------------------------ per chunk

    def load(self, uuids: list[str]) -> BatchEvidence:
        """Everything inference needs for these instances (their actions, live and archived)."""
        # Instances first, then actions and the migration overlay: a move or
        # unshelve that changed instances.host before this read is then seen.
        instances = self._instances(uuids)
        overlay = self._recent_migrations(set(uuids))
        histories = self._load_histories(uuids, instances, overlay)
        actions = {a.id: a for h in histories.values() for a in h.actions}
        return BatchEvidence(actions, histories, self.hosts)

    def request_ids(self, action_ids: list[int]) -> dict[int, str | None]:
        """Request ids of these actions, live or archived (dry-run samples)."""
        found: dict[int, str | None] = {}
        ia = nova("instance_actions")
        sources = [ia] + ([self.t_sact] if self.has_shadow["instance_actions"] else [])
        for source in sources:
            for chunk in chunks([i for i in action_ids if i not in found]):
                found.update(
                    conn_row
                    for conn_row in self.conn.execute(
                        sa.select(source.c.id, source.c.request_id).where(
                            self._in(source.c.id, chunk)
                        )
                    ).all()
                )
        return found

    def histories(self, uuids: list[str]) -> dict[str, InstanceHistory]:
        """Whole histories of these instances (``explain``, ``validate``)."""
        return self._load_histories(
            uuids, self._instances(uuids), self._recent_migrations(set(uuids))
        )

    def _recent_migrations(self, uuids: set[str]) -> dict[str, list[MigrationRow]]:
        """Migrations updated since the snapshot (Nova keeps moving instances meanwhile)."""
        live = nova("migrations")
        since = (self.taken_at or utcnow()) - SNAPSHOT_MARGIN
        found: dict[str, list[MigrationRow]] = defaultdict(list)
        for r in self.conn.execute(
            sa.select(*_migration_columns(live)).where(live.c.updated_at >= since)
        ):
            if r.instance_uuid in uuids:
                found[r.instance_uuid].append(_migration(r))
        return found

    def _load_histories(
        self,
        uuids: list[str],
        instances: dict[str, InstanceRow],
        overlay: dict[str, list[MigrationRow]],
    ) -> dict[str, InstanceHistory]:
        if not uuids:
            return {}
        conn = self.conn
        all_actions: dict[int, ActionRow] = {}
        ia = nova("instance_actions")
        for chunk in chunks(uuids):
            for r in conn.execute(
                # The timeline needs no request or project ids: fewer bytes per row.
                sa.select(ia.c.id, ia.c.instance_uuid, ia.c.action, ia.c.start_time).where(
                    self._in(ia.c.instance_uuid, chunk)
                )
            ).all():
                all_actions.setdefault(r[0], ActionRow(*r))
            if self.has_shadow["instance_actions"]:
                s = self.t_sact
                for r in conn.execute(
                    sa.select(s.c.id, s.c.instance_uuid, s.c.action, s.c.start_time).where(
                        self._in(s.c.instance_uuid, chunk)
                    )
                ).all():
                    all_actions.setdefault(r[0], ActionRow(*r))

        migrations: dict[int, MigrationRow] = {}
        m = self.t_mig
        for chunk in chunks(uuids):
            for r in conn.execute(sa.select(m).where(self._in(m.c.instance_uuid, chunk))).all():
                migrations[r.id] = _migration(r)
        for uuid in uuids:
            for migration in overlay.get(uuid, ()):
                migrations[migration.id] = migration

        faults: dict[str, list[FaultRow]] = defaultdict(list)
        f = nova("instance_faults")
        for chunk in chunks(uuids):
            for r in conn.execute(
                sa.select(
                    f.c.instance_uuid, f.c.host, f.c.created_at, sa.func.substr(f.c.message, 1, 255)
                ).where(self._in(f.c.instance_uuid, chunk))
            ).all():
                faults[r[0]].append(FaultRow(r[1], r[2], r[3]))
            if self.has_shadow["instance_faults"]:
                s = self.t_sfault
                for r in conn.execute(
                    sa.select(s.c.instance_uuid, s.c.host, s.c.created_at, s.c.message).where(
                        self._in(s.c.instance_uuid, chunk)
                    )
                ).all():
                    faults[r[0]].append(FaultRow(r[1], r[2], r[3]))

        events: dict[int, list[EventRow]] = defaultdict(list)
        ev = self.t_ev
        for chunk in chunks(uuids):
            for r in conn.execute(
                sa.select(
                    ev.c.action_id,
                    ev.c.id,
                    ev.c.event,
                    ev.c.start_time,
                    ev.c.finish_time,
                    ev.c.result,
                    ev.c.host,
                ).where(self._in(ev.c.instance_uuid, chunk))
            ).all():
                events[r[0]].append(EventRow(r[1], r[0], r[2], r[3], r[4], r[5], r[6]))

        shelve: dict[str, dict[str, list]] = defaultdict(lambda: {"hosts": [], "times": []})
        if "instance_system_metadata" in self.present:
            t = self.t_meta
            for chunk in chunks(uuids):
                for uuid, key, value in conn.execute(
                    sa.select(t.c.instance_uuid, t.c.key, t.c.value).where(
                        self._in(t.c.instance_uuid, chunk)
                    )
                ).all():
                    if key == "shelved_host" and value:
                        shelve[uuid]["hosts"].append(value)
                    elif key == "shelved_at":
                        shelve[uuid]["times"].append(parse_shelved_at(value))

        volumes: dict[str, list[VolumeRecord]] = defaultdict(list)
        if self.has_bdm:
            t = self.t_vol
            for chunk in chunks(uuids):
                for uuid, info, created, deleted_at, deleted in conn.execute(
                    sa.select(
                        t.c.instance_uuid,
                        t.c.connection_info,
                        t.c.created_at,
                        t.c.deleted_at,
                        t.c.deleted,
                    ).where(self._in(t.c.instance_uuid, chunk))
                ).all():
                    host = connector_host(info)
                    if host is None or (deleted and deleted_at is None):
                        continue  # detached at an unknown time: no lifetime to place
                    volumes[uuid].append(VolumeRecord(host, created, deleted_at))

        histories: dict[str, InstanceHistory] = {}
        by_instance: dict[str, list[ActionRow]] = defaultdict(list)
        for action in all_actions.values():
            if action.instance_uuid:
                by_instance[action.instance_uuid].append(action)
        migs_by_instance: dict[str, list[MigrationRow]] = defaultdict(list)
        for migration in migrations.values():
            migs_by_instance[migration.instance_uuid].append(migration)
        for uuid in uuids:
            actions = sorted(by_instance[uuid], key=lambda a: (a.start or datetime.min, a.id))
            record = shelve.get(uuid)
            histories[uuid] = InstanceHistory(
                uuid=uuid,
                instance=instances.get(uuid),
                actions=actions,
                events={
                    a.id: sorted(events[a.id], key=lambda e: (e.start or datetime.min, e.id))
                    for a in actions
                    if a.id in events
                },
                migrations=sorted(
                    migs_by_instance[uuid], key=lambda x: (x.created or datetime.min, x.id)
                ),
                faults=sorted(faults[uuid], key=lambda x: x.created or datetime.min),
                shelve=ShelveRecord(
                    tuple(record["hosts"]), tuple(t for t in record["times"] if t is not None)
                )
                if record and record["hosts"]
                else None,
                volumes=volumes.get(uuid, []),
            )
        return histories

    def _in(self, column: sa.ColumnElement, values: list) -> sa.ColumnElement[bool]:
        return self.dialect.in_values(column, values)

    def _instances(self, uuids: list[str]) -> dict[str, InstanceRow]:
        conn = self.conn
        found: dict[str, InstanceRow] = {}
        i = nova("instances")
        for chunk in chunks(uuids):
            for r in conn.execute(
                sa.select(
                    i.c.uuid, i.c.host, i.c.project_id, i.c.launched_on, i.c.launched_at
                ).where(self._in(i.c.uuid, chunk))
            ).all():
                found[r[0]] = InstanceRow(*r)
        missing = [u for u in uuids if u not in found]
        if missing and self.has_shadow["instances"]:
            s = self.t_sinst
            for chunk in chunks(missing):
                for r in conn.execute(
                    sa.select(
                        s.c.uuid, s.c.host, s.c.project_id, s.c.launched_on, s.c.launched_at
                    ).where(self._in(s.c.uuid, chunk))
                ).all():
                    found.setdefault(r[0], InstanceRow(*r))
        return found


#: Events whose host is a move's source or destination, not simply a compute.
_MOVE_SIDED_EVENTS = sorted(roles.SOURCE_EVENTS | roles.DEST_SELECTION | roles.DEST_TARGETED)
#: Actions whose every event inference reads (their time spans bound host changes).
_ACTIONS_READ_WHOLE = sorted(
    roles.MOVE_ACTIONS
    | roles.COLD_PARTNERS
    | roles.LIVE_PARTNERS
    | {roles.CREATE, roles.UNSHELVE, roles.SHELVE, roles.SHELVE_OFFLOAD}
)
#: Events inference reads wherever they are.
_EVENTS_READ = sorted(
    roles.SOURCE_EVENTS
    | roles.DEST_SELECTION
    | roles.DEST_TARGETED
    | roles.BUILD_EVENTS
    | {roles.REBUILD_EVENT, roles.UNSHELVE_EVENT, roles.SHELVE_EVENT}
)


def known_hosts_from(
    hosts: set[str], node_owners: dict[str, set[str]], computes: set[str], others: set[str]
) -> KnownHosts:
    """:class:`KnownHosts` from what the rows say: ``hosts`` seen acting as computes,
    the hosts each node name was seen on, and the ``services`` hosts running
    nova-compute (``computes``) or anything else (``others``).

    A node name that maps to two hosts maps to none; a services host that never
    acts as a compute is control plane.
    """
    nodes = {node: next(iter(owners)) for node, owners in node_owners.items() if len(owners) == 1}
    hosts = hosts | computes
    control = others - hosts
    return KnownHosts(frozenset(hosts - control), frozenset(control), nodes)


def _needed(t: sa.Table, action_name: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """The events inference reads: compute events, but not the bulk of history, a
    successful step of an ordinary action whose host nobody recorded.

    Those are still decided (from ``ah_null``); as evidence they say nothing: a
    generic step settles a segment only through its recorded host or its
    failure's fault, and a repeated step shows itself by rows 2..n, whose
    result is NULL.
    """
    return sa.and_(
        t.c.event.startswith("compute_", autoescape=True),
        sa.or_(
            action_name.in_(_ACTIONS_READ_WHOLE),
            t.c.event.in_(_EVENTS_READ),
            t.c.host.is_not(None),
            t.c.result.is_(None),
            t.c.result != "Success",
        ),
    )


def _migration_columns(t: sa.Table) -> list:
    return [
        t.c.id,
        t.c.instance_uuid,
        t.c.source_compute,
        t.c.dest_compute,
        t.c.source_node,
        t.c.dest_node,
        t.c.status,
        sa.cast(t.c.migration_type, sa.String(32)).label("migration_type"),
        t.c.old_instance_type_id,
        t.c.new_instance_type_id,
        t.c.created_at,
        t.c.updated_at,
    ]


def _migration(r) -> MigrationRow:
    kind = roles.migration_type(r.migration_type, r.old_instance_type_id, r.new_instance_type_id)
    return MigrationRow(
        r.id,
        r.instance_uuid,
        r.source_compute,
        r.dest_compute,
        r.status,
        kind,
        r.created_at,
        r.updated_at,
        r.source_node,
        r.dest_node,
        bool(r.migration_type),
    )
