"""The evidence snapshot: what inference reads, copied once into TEMPORARY tables.

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

Reading a chunk of instances from them is ``engine.evidence``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime

import sqlalchemy as sa

from actionhost_backfill.clock import utcnow
from actionhost_backfill.engine import clocks
from actionhost_backfill.engine.temp_tables import TemporaryTables
from actionhost_backfill.inference import KnownHosts, skew
from actionhost_backfill.inference import eras as eras_mod
from actionhost_backfill.inference.reading import (
    ACTIONS_READ_WHOLE,
    EVENTS_READ,
    MOVE_SIDED_EVENTS,
    SHELVED_KEYS,
    known_hosts_from,
)
from actionhost_backfill.nova.tables import EVENTS, EVIDENCE_BASES, columns_of, nova
from actionhost_backfill.state.location import StateLocation
from actionhost_backfill.state.tables import FILLED, state


@dataclass(frozen=True)
class Share:
    """One planner's share of the instances (``backfill --workers N``,
    ``engine/workers.py``): those whose uuid, compared byte by byte, is at least
    ``low`` and below ``high`` (None: unbounded).  The share without a lower
    bound also holds the rows of no instance, so the shares together hold
    every row, each exactly once."""

    low: str | None = None
    high: str | None = None

    def holds(self, column: sa.ColumnElement, dialect) -> sa.ColumnElement[bool]:
        key = dialect.by_bytes(column)
        bounds = [key >= sa.literal(self.low, sa.String)] if self.low is not None else []
        if self.high is not None:
            bounds.append(key < sa.literal(self.high, sa.String))
        inside = sa.and_(*bounds) if bounds else sa.true()
        return inside if self.low is not None else sa.or_(inside, column.is_(None))


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


#: The counts of :class:`SnapshotStats` that the shares' tables add up to.
_SHARED_COUNTS = ("events", "shelve_records", "volume_connectors", "archived_actions")


class EvidenceTables(TemporaryTables):
    """The temporary evidence tables on one connection, and how they are taken."""

    def __init__(
        self,
        conn: sa.Connection,
        location: StateLocation | None,
        *,
        audit_available: bool,
        releases: dict[str, date] | None = None,
    ):
        super().__init__(conn)
        self.releases = releases
        """The operator's upgrade history (``--releases``); None: detect the eras."""
        self.eras: eras_mod.Eras | None = None
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
        self.stats = SnapshotStats()
        self.taken_at: datetime | None = None
        self.hosts = KnownHosts()
        self.skew_report = skew.SkewReport()
        meta = self.metadata
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

    def _union(self, base: str, select_of) -> sa.Select | sa.CompoundSelect:
        """``select_of(table)`` over the live table and its shadow copy, if any."""
        parts = [select_of(nova(base))]
        if self.has_shadow.get(base):
            parts.append(select_of(nova(f"shadow_{base}")))
        return sa.union_all(*parts) if len(parts) > 1 else parts[0]

    def take(self, instances: list[str] | None = None) -> SnapshotStats:
        """Build (or rebuild) the temporary evidence tables, and judge the cell.

        ``instances`` restricts the tables to those instances (``explain``); the
        backfill and ``validate`` take everything.  The eras are always the whole
        cell's.
        """
        started = time.monotonic()
        self.taken_at = utcnow().replace(microsecond=0)
        self._copy(lambda column: sa.true() if instances is None else column.in_(instances))
        self._judge_cell()
        self._set_hosts(self._recorded_hosts())
        self.stats = self._counted(started)
        self.conn.commit()
        return self.stats

    def take_share(self, share: Share) -> tuple[SnapshotStats, set[str]]:
        """The evidence tables of one planner's share of the instances
        (``engine/workers.py``): their counts, and the hosts they record.  The
        cell-wide facts are the coordinator's (:meth:`take_cell`), handed to
        :attr:`hosts` afterwards."""
        started = time.monotonic()
        self.taken_at = utcnow().replace(microsecond=0)
        self._copy(lambda column: share.holds(column, self.dialect))
        recorded = self._recorded_hosts()
        stats = self._counted(started)
        self.conn.commit()
        return stats, recorded

    def take_cell(
        self, gather: Callable[[], list[tuple[SnapshotStats, set[str]]]]
    ) -> SnapshotStats:
        """The cell-wide facts while planners take the evidence in shares
        (``engine/workers.py``): eras, clock skew (from a copy of every migration
        row) and the known hosts, with those the shares' tables record (what
        ``gather`` returns once they are taken, :meth:`take_share`); the shares'
        counts summed."""
        started = time.monotonic()
        self.taken_at = utcnow().replace(microsecond=0)
        self._copy_migrations(lambda _column: sa.true())
        self._judge_cell()
        shares = gather()
        self._set_hosts(set().union(*(hosts for _, hosts in shares)))
        self.stats = self._stats(
            started,
            migrations=self._count(self.t_mig),
            **{key: sum(getattr(s, key) for s, _ in shares) for key in _SHARED_COUNTS},
        )
        self.conn.commit()
        return self.stats

    def _count(self, table: sa.Table) -> int:
        return self.conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0

    def _counted(self, started: float) -> SnapshotStats:
        """:attr:`stats` of the tables this snapshot took."""
        count = self._count
        return self._stats(
            started,
            migrations=count(self.t_mig),
            events=count(self.t_ev),
            shelve_records=count(self.t_meta) if "instance_system_metadata" in self.present else 0,
            volume_connectors=count(self.t_vol) if self.has_bdm else 0,
            archived_actions=count(self.t_sact) if self.has_shadow["instance_actions"] else 0,
        )

    def _stats(self, started: float, **counts: int) -> SnapshotStats:
        return SnapshotStats(
            **counts,
            compute_hosts=len(self.hosts.compute),
            seconds=time.monotonic() - started,
            taken_at=self.taken_at,
            eras=self.eras,
            clock=self.skew_report.to_dict(),
            clock_line=self.skew_report.summary(),
        )

    def _judge_cell(self) -> None:
        """Which releases wrote the rows, and nova-api's clock against the conductors'."""
        self.eras = eras_mod.eras_for(self._era_proofs(), self.releases)
        self.skew_report = clocks.measure(self, self.present, self.t_mig)

    def _set_hosts(self, recorded: set[str]) -> None:
        self.hosts = replace(
            self._known_hosts(recorded),
            untracked=self.eras.untracked,
            skew=self.skew_report.skew,
        )

    def _copy_migrations(self, only: Callable[[sa.ColumnElement], sa.ColumnElement[bool]]) -> None:
        self.create_temp(
            "ah_mig",
            self._union(
                "migrations",
                lambda t: sa.select(*migration_columns(t)).where(only(t.c.instance_uuid)),
            ),
            ["instance_uuid"],
        )

    def _copy(self, only: Callable[[sa.ColumnElement], sa.ColumnElement[bool]]) -> None:
        """The temporary evidence tables, of the instances ``only`` holds."""
        self._copy_migrations(only)

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

        self.create_temp(
            "ah_ev",
            self._union("instance_actions_events", events),
            ["instance_uuid"],
            grouped_by="instance_uuid",
        )

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

    def _recorded_hosts(self) -> set[str]:
        """The hosts the evidence tables record acting as computes: both ends of every
        migration, the hosts of generic compute events, archived instances' hosts
        (a share's tables give its share of them; the shares' union is the cell's)."""
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
                    ev.c.event.not_in(MOVE_SIDED_EVENTS),
                )
                .distinct()
            )
            if r[0]
        )
        if self.has_shadow["instances"]:
            hosts.update(
                r[0] for r in conn.execute(sa.select(self.t_sinst.c.host).distinct()) if r[0]
            )
        return hosts

    def _known_hosts(self, recorded: set[str]) -> KnownHosts:
        """The cell's hosts: ``recorded`` (:meth:`_recorded_hosts`), live instances',
        compute nodes' and services'."""
        conn = self.conn
        hosts = set(recorded)
        i = nova("instances")
        for column in (i.c.host, i.c.launched_on):
            hosts.update(r[0] for r in conn.execute(sa.select(column).distinct()) if r[0])
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
            action_name.in_(ACTIONS_READ_WHOLE),
            t.c.event.in_(EVENTS_READ),
            t.c.host.is_not(None),
            t.c.result.is_(None),
            t.c.result != "Success",
        ),
    )


def migration_columns(t: sa.Table) -> list:
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
