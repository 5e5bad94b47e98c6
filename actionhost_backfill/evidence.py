"""Fetch the evidence inference needs, per batch, in a few set-based queries.

Nova's tables lack the indexes a per-instance lookup would need on every
backend (migrations lead with ``deleted``, events have no index at all on
PostgreSQL and SQLite, shadow tables have none anywhere), so each pass first
takes an *evidence snapshot* into TEMPORARY tables on the runner's own
connection (nothing is written to the Nova or state schema, so a dry run
can take one too):

``ah_mig``     every migration, live and archived, indexed by instance;
``ah_named``   every destination-side or build event (reschedules repeat them);
``ah_rec``     per action, the host Nova itself recorded on its generic compute
               events (values the toolkit wrote are excluded, so a resumed run
               sees exactly the evidence an uninterrupted one saw);
``ah_sact``, ``ah_sinst``, ``ah_sfault``
               archived actions, instances and faults (shadow tables have no
               indexes).

Live instances, actions and faults are read fresh per batch through Nova's
own indexes, and migrations changed since the snapshot are overlaid, so a move
that happens during a long run is seen.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from . import bulk, db
from . import event_roles as roles
from .bulk import chunks
from .inference import (
    ActionRow,
    EventRow,
    FaultRow,
    InstanceHistory,
    InstanceRow,
    KnownHosts,
    MigrationRow,
    NamedEvent,
    RecordedPoint,
)
from .state import StateLocation, backend_of
from .tables import FILLED, nova, state

#: Margin for clock skew when overlaying migrations changed since the snapshot.
SNAPSHOT_MARGIN = timedelta(minutes=10)

_ROLE_NAMES = sorted(
    roles.DEST_SELECTION
    | roles.DEST_TARGETED
    | roles.SOURCE_EVENTS
    | {roles.BUILD_EVENT, roles.REBUILD_EVENT}
)


@dataclass
class BatchEvidence:
    actions: dict[int, ActionRow]
    histories: dict[str, InstanceHistory]
    hosts: KnownHosts


@dataclass
class SnapshotStats:
    migrations: int = 0
    named_events: int = 0
    recorded_actions: int = 0
    archived_actions: int = 0
    compute_hosts: int = 0
    seconds: float = 0.0
    taken_at: datetime | None = None
    details: dict = field(default_factory=dict)


class EvidenceSnapshot:
    """Temporary evidence tables on one connection, and per-batch loading."""

    def __init__(
        self, conn: sa.Connection, location: StateLocation | None, *, audit_available: bool
    ):
        self.conn = conn
        self.backend = backend_of(conn.dialect.name)
        self.location = location
        self.audit_available = audit_available
        names = set(sa.inspect(conn).get_table_names())
        self.has_services = "services" in names
        self.has_shadow = {
            t: f"shadow_{t}" in names
            for t in (
                "instances",
                "instance_actions",
                "instance_actions_events",
                "migrations",
                "instance_faults",
                "services",
            )
        }
        # MySQL under REPEATABLE READ (statement-based binlog) would lock every
        # row CREATE ... SELECT reads: copy through the client instead.
        self.copy_through_client = (
            self.backend == "mysql" and "READ-COMMITTED" not in db.mysql_isolation(conn)
        )
        self.stats = SnapshotStats()
        self.taken_at: datetime | None = None
        self.hosts = KnownHosts()
        meta = sa.MetaData()
        self.t_mig = sa.Table(
            "ah_mig",
            meta,
            sa.Column("id", sa.Integer),
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("source_compute", sa.String(255)),
            sa.Column("dest_compute", sa.String(255)),
            sa.Column("status", sa.String(255)),
            sa.Column("migration_type", sa.String(32)),
            sa.Column("old_instance_type_id", sa.Integer),
            sa.Column("new_instance_type_id", sa.Integer),
            sa.Column("created_at", sa.DateTime),
            sa.Column("updated_at", sa.DateTime),
        )
        self.t_named = sa.Table(
            "ah_named",
            meta,
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("action_id", sa.Integer),
            sa.Column("id", sa.BigInteger),
            sa.Column("event", sa.String(255)),
            sa.Column("start_time", sa.DateTime),
            sa.Column("finish_time", sa.DateTime),
            sa.Column("result", sa.String(255)),
        )
        self.t_rec = sa.Table(
            "ah_rec",
            meta,
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("action_id", sa.Integer),
            sa.Column("host_min", sa.String(255)),
            sa.Column("host_max", sa.String(255)),
            sa.Column("first_time", sa.DateTime),
        )
        self.t_sact = sa.Table(
            "ah_sact",
            meta,
            sa.Column("id", sa.Integer),
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("action", sa.String(255)),
            sa.Column("start_time", sa.DateTime),
            sa.Column("request_id", sa.String(255)),
            sa.Column("project_id", sa.String(255)),
        )
        self.t_sinst = sa.Table(
            "ah_sinst",
            meta,
            sa.Column("uuid", sa.String(36)),
            sa.Column("host", sa.String(255)),
            sa.Column("project_id", sa.String(255)),
        )
        self.t_null = sa.Table(
            "ah_null",
            meta,
            sa.Column("id", sa.BigInteger),
            sa.Column("action_id", sa.Integer),
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("event", sa.String(255)),
            sa.Column("start_time", sa.DateTime),
            sa.Column("finish_time", sa.DateTime),
            sa.Column("result", sa.String(255)),
        )
        self.t_plan = sa.Table(
            "ah_plan",
            meta,
            sa.Column("event_id", sa.BigInteger, primary_key=True),
            sa.Column("host", sa.String(255)),
            sa.Column("rule", sa.String(32)),
        )
        self.t_sfault = sa.Table(
            "ah_sfault",
            meta,
            sa.Column("instance_uuid", sa.String(36)),
            sa.Column("host", sa.String(255)),
            sa.Column("created_at", sa.DateTime),
        )

    # ------------------------------------------------------------------ snapshot

    def take(self) -> SnapshotStats:
        """Build (or rebuild) the temporary evidence tables."""
        started = time.monotonic()
        self.taken_at = datetime.utcnow().replace(microsecond=0)
        conn = self.conn
        m = nova("migrations")
        mig_cols = lambda t: [  # noqa: E731
            t.c.id,
            t.c.instance_uuid,
            t.c.source_compute,
            t.c.dest_compute,
            t.c.status,
            sa.cast(t.c.migration_type, sa.String(32)).label("migration_type"),
            t.c.old_instance_type_id,
            t.c.new_instance_type_id,
            t.c.created_at,
            t.c.updated_at,
        ]
        parts = [sa.select(*mig_cols(m))]
        if self.has_shadow["migrations"]:
            parts.append(sa.select(*mig_cols(nova("shadow_migrations"))))
        self._create(
            "ah_mig", sa.union_all(*parts) if len(parts) > 1 else parts[0], ["instance_uuid"]
        )

        # Named and recorded events carry their instance (through their action,
        # live or archived) so a batch loads them by instance, like the rest.
        # Two primary-key joins, not a join on a UNION: MariaDB has no hash
        # join and would scan the derived table per row.
        def named(t):
            joined, owner = self._with_owner(t)
            return (
                sa.select(
                    owner.label("instance_uuid"),
                    t.c.action_id,
                    t.c.id,
                    t.c.event,
                    t.c.start_time,
                    t.c.finish_time,
                    t.c.result,
                )
                .select_from(joined)
                .where(t.c.event.in_(sorted(roles.REPEAT_SENSITIVE)), owner.is_not(None))
            )

        parts = [named(nova("instance_actions_events"))]
        if self.has_shadow["instance_actions_events"]:
            parts.append(named(nova("shadow_instance_actions_events")))
        self._create(
            "ah_named", sa.union_all(*parts) if len(parts) > 1 else parts[0], ["instance_uuid"]
        )

        def recorded(t):
            joined, owner = self._with_owner(t)
            query = (
                sa.select(owner.label("instance_uuid"), t.c.action_id, t.c.host, t.c.start_time)
                .select_from(joined)
                .where(
                    t.c.host.is_not(None),
                    t.c.event.startswith("compute_", autoescape=True),
                    t.c.event.not_in(_ROLE_NAMES),
                    owner.is_not(None),
                )
            )
            if self.audit_available and self.location is not None:
                audit = state(self.location.schema).audit
                query = query.where(
                    ~sa.exists().where(
                        audit.c.event_id == t.c.id,
                        audit.c.outcome == FILLED,
                        audit.c.reverted_by.is_(None),
                    )
                )
            return query

        parts = [recorded(nova("instance_actions_events"))]
        if self.has_shadow["instance_actions_events"]:
            parts.append(recorded(nova("shadow_instance_actions_events")))
        source = (sa.union_all(*parts) if len(parts) > 1 else parts[0]).subquery("r")
        grouped = sa.select(
            sa.func.min(source.c.instance_uuid).label("instance_uuid"),
            source.c.action_id,
            sa.func.min(source.c.host).label("host_min"),
            sa.func.max(source.c.host).label("host_max"),
            sa.func.min(source.c.start_time).label("first_time"),
        ).group_by(source.c.action_id)
        self._create("ah_rec", grouped, ["instance_uuid"])

        if self.has_shadow["instance_actions"]:
            t = nova("shadow_instance_actions")
            self._create(
                "ah_sact",
                sa.select(
                    t.c.id,
                    t.c.instance_uuid,
                    t.c.action,
                    t.c.start_time,
                    t.c.request_id,
                    t.c.project_id,
                ),
                ["id", "instance_uuid"],
            )
        if self.has_shadow["instances"]:
            t = nova("shadow_instances")
            self._create("ah_sinst", sa.select(t.c.uuid, t.c.host, t.c.project_id), ["uuid"])
        if self.has_shadow["instance_faults"]:
            t = nova("shadow_instance_faults")
            self._create(
                "ah_sfault",
                sa.select(t.c.instance_uuid, t.c.host, t.c.created_at),
                ["instance_uuid"],
            )

        hosts: set[str] = set()
        for column in (self.t_mig.c.source_compute, self.t_mig.c.dest_compute):
            hosts.update(r[0] for r in conn.execute(sa.select(column).distinct()) if r[0])
        hosts.update(
            r[0] for r in conn.execute(sa.select(self.t_rec.c.host_min).distinct()) if r[0]
        )
        i = nova("instances")
        hosts.update(r[0] for r in conn.execute(sa.select(i.c.host).distinct()) if r[0])
        if self.has_shadow["instances"]:
            hosts.update(
                r[0] for r in conn.execute(sa.select(self.t_sinst.c.host).distinct()) if r[0]
            )
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
        hosts |= computes
        control = others - hosts
        self.hosts = KnownHosts(frozenset(hosts - control), frozenset(control))

        count = lambda t: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0  # noqa: E731
        self.stats = SnapshotStats(
            migrations=count(self.t_mig),
            named_events=count(self.t_named),
            recorded_actions=count(self.t_rec),
            archived_actions=count(self.t_sact) if self.has_shadow["instance_actions"] else 0,
            compute_hosts=len(self.hosts.compute),
            seconds=time.monotonic() - started,
            taken_at=self.taken_at,
        )
        return self.stats

    def _create(
        self, name: str, select: sa.Select | sa.CompoundSelect, index_columns: list[str]
    ) -> None:
        conn = self.conn
        self._drop(name)
        conn.commit()
        if self.copy_through_client:
            self._copy_through_client(name, select)
        else:
            compiled = select.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            # Compiled for the driver's paramstyle: exec_driver_sql un-doubles any %%.
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} AS {compiled}")
        for column in index_columns:
            conn.exec_driver_sql(f"CREATE INDEX {name}_{column}_ix ON {name} ({column})")
        if self.backend == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {name}")
        conn.commit()

    def _copy_through_client(self, name: str, select) -> None:
        """Non-locking reads on a second connection, inserted here in chunks."""
        target = self.t_mig.metadata.tables[name]
        self._create_empty(target)
        keys = [c.name for c in target.columns]
        with self.conn.engine.connect() as reader:
            result = reader.execution_options(stream_results=True).execute(select)
            while rows := result.fetchmany(10_000):
                bulk.insert_rows(self.conn, name, keys, [tuple(row) for row in rows])
        self.conn.commit()

    def _create_empty(self, table: sa.Table) -> None:
        """CREATE TEMPORARY TABLE with ``table``'s columns (and primary key)."""
        columns = ", ".join(
            f"{c.name} {c.type.compile(dialect=self.conn.dialect)}"
            + (" PRIMARY KEY" if c.primary_key else "")
            for c in table.columns
        )
        self.conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {table.name} ({columns})")

    def _drop(self, name: str) -> None:
        if self.backend == "mysql":
            self.conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {name}")
        elif self.backend == "sqlite":
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")
        else:
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{name}")

    def drop(self) -> None:
        for name in (
            "ah_mig",
            "ah_named",
            "ah_rec",
            "ah_sact",
            "ah_sinst",
            "ah_sfault",
            "ah_null",
            "ah_plan",
        ):
            self._drop(name)
        self.conn.commit()

    # ------------------------------------------------------------------ planning

    def _with_owner(self, t: sa.Table):
        """``t`` joined to its action (live, else archived), and the instance it belongs to."""
        live = nova("instance_actions").alias("live_action")
        joined = t.outerjoin(live, live.c.id == t.c.action_id)
        owner = live.c.instance_uuid
        if self.has_shadow["instance_actions"]:
            shadow = nova("shadow_instance_actions").alias("archived_action")
            joined = joined.outerjoin(shadow, shadow.c.id == t.c.action_id)
            owner = sa.func.coalesce(live.c.instance_uuid, shadow.c.instance_uuid)
        return joined, owner

    def prepare_plan(self, events_table: str, after: int, upper: int) -> int:
        """Copy the NULL-host events of ``(after, upper]`` with their instance; empty the plan.

        Returns how many events there are to decide.
        """
        t = nova(events_table)
        joined, owner = self._with_owner(t)
        select = (
            sa.select(
                t.c.id,
                t.c.action_id,
                owner.label("instance_uuid"),
                t.c.event,
                t.c.start_time,
                t.c.finish_time,
                t.c.result,
            )
            .select_from(joined)
            .where(t.c.id > after, t.c.id <= upper, t.c.host.is_(None))
        )
        self._create("ah_null", select, ["instance_uuid", "id"])
        self._drop("ah_plan")
        self._create_empty(self.t_plan)
        self.conn.commit()
        count = self.conn.execute(sa.select(sa.func.count()).select_from(self.t_null)).scalar()
        self.conn.commit()
        return int(count or 0)

    def null_chunks(self, instances: int) -> Iterator[list[EventRow]]:
        """The NULL-host events, a chunk of whole instances at a time (uuid order),
        then the events whose action is gone (id order)."""
        n = self.t_null
        columns = (n.c.id, n.c.action_id, n.c.event, n.c.start_time, n.c.finish_time, n.c.result)
        # The instance list is read once (tens of bytes per instance): asking
        # the server for "the next 500 after X" each time made MariaDB group
        # the whole rest of the table per chunk.
        everyone = [
            r[0]
            for r in self.conn.execute(
                sa.select(n.c.instance_uuid)
                .where(n.c.instance_uuid.is_not(None))
                .distinct()
                .order_by(n.c.instance_uuid)
            )
        ]
        self.conn.commit()
        for uuids in chunks(everyone, instances):
            # Sorted here: "ORDER BY id" lets MariaDB walk the whole id index
            # instead of looking the instances up.
            rows = sorted(
                self.conn.execute(
                    sa.select(*columns).where(self._in(n.c.instance_uuid, uuids))
                ).all(),
                key=lambda r: r[0],
            )
            self.conn.commit()
            yield [EventRow(*r) for r in rows]
        after = 0
        while True:
            rows = self.conn.execute(
                sa.select(*columns)
                .where(n.c.instance_uuid.is_(None), n.c.id > after)
                .order_by(n.c.id)
                .limit(instances * 20)
            ).all()
            self.conn.commit()
            if not rows:
                break
            yield [EventRow(*r) for r in rows]
            after = rows[-1][0]

    # ------------------------------------------------------------------ per batch

    def load(self, events: list[EventRow], events_table: str) -> BatchEvidence:
        """Everything inference needs for these events' instances."""
        action_ids = sorted({e.action_id for e in events if e.action_id is not None})
        batch_actions = self._actions_by_id(
            action_ids, prefer_shadow=events_table.startswith("shadow_")
        )
        uuids = sorted({a.instance_uuid for a in batch_actions.values() if a.instance_uuid})
        # Instances first, then actions and the migration overlay: a move or
        # unshelve that changed instances.host before this read is then seen.
        instances = self._instances(uuids)
        overlay = self._recent_migrations(set(uuids))
        histories = self._load_histories(uuids, instances, batch_actions, overlay)
        return BatchEvidence(batch_actions, histories, self.hosts)

    def _recent_migrations(self, uuids: set[str]) -> dict[str, list[MigrationRow]]:
        """Migrations updated since the snapshot (Nova keeps moving instances meanwhile)."""
        live = nova("migrations")
        since = (self.taken_at or datetime.utcnow()) - SNAPSHOT_MARGIN
        found: dict[str, list[MigrationRow]] = defaultdict(list)
        for r in self.conn.execute(
            sa.select(
                live.c.id,
                live.c.instance_uuid,
                live.c.source_compute,
                live.c.dest_compute,
                live.c.status,
                sa.cast(live.c.migration_type, sa.String(32)).label("migration_type"),
                live.c.old_instance_type_id,
                live.c.new_instance_type_id,
                live.c.created_at,
                live.c.updated_at,
            ).where(live.c.updated_at >= since)
        ):
            if r.instance_uuid in uuids:
                found[r.instance_uuid].append(_migration(r))
        return found

    def _load_histories(
        self,
        uuids: list[str],
        instances: dict[str, InstanceRow],
        batch_actions: dict[int, ActionRow],
        overlay: dict[str, list[MigrationRow]],
    ) -> dict[str, InstanceHistory]:
        if not uuids:
            return {}
        conn = self.conn
        all_actions: dict[int, ActionRow] = dict(batch_actions)
        ia = nova("instance_actions")
        for chunk in chunks(uuids):
            for r in conn.execute(
                # The timeline needs no request or project ids: fewer bytes per row.
                sa.select(ia.c.id, ia.c.instance_uuid, ia.c.action, ia.c.start_time).where(
                    self._in(ia.c.instance_uuid, chunk)
                )
            ):
                all_actions.setdefault(r[0], ActionRow(*r))
            if self.has_shadow["instance_actions"]:
                s = self.t_sact
                for r in conn.execute(
                    sa.select(s.c.id, s.c.instance_uuid, s.c.action, s.c.start_time).where(
                        self._in(s.c.instance_uuid, chunk)
                    )
                ):
                    all_actions.setdefault(r[0], ActionRow(*r))

        migrations: dict[int, MigrationRow] = {}
        m = self.t_mig
        for chunk in chunks(uuids):
            for r in conn.execute(sa.select(m).where(self._in(m.c.instance_uuid, chunk))):
                migrations[r.id] = _migration(r)
        for uuid in uuids:
            for migration in overlay.get(uuid, ()):
                migrations[migration.id] = migration

        faults: dict[str, list[FaultRow]] = defaultdict(list)
        f = nova("instance_faults")
        for chunk in chunks(uuids):
            for r in conn.execute(
                sa.select(f.c.instance_uuid, f.c.host, f.c.created_at).where(
                    self._in(f.c.instance_uuid, chunk)
                )
            ):
                faults[r[0]].append(FaultRow(r[1], r[2]))
            if self.has_shadow["instance_faults"]:
                s = self.t_sfault
                for r in conn.execute(
                    sa.select(s.c.instance_uuid, s.c.host, s.c.created_at).where(
                        self._in(s.c.instance_uuid, chunk)
                    )
                ):
                    faults[r[0]].append(FaultRow(r[1], r[2]))

        points: dict[int, RecordedPoint] = {}
        named: dict[int, list[NamedEvent]] = defaultdict(list)
        rec, nm = self.t_rec, self.t_named
        for chunk in chunks(uuids):
            for r in conn.execute(sa.select(rec).where(self._in(rec.c.instance_uuid, chunk))):
                if r.host_min == r.host_max and r.first_time is not None:
                    points[r.action_id] = RecordedPoint(r.host_min, r.first_time)
            for r in conn.execute(sa.select(nm).where(self._in(nm.c.instance_uuid, chunk))):
                named[r.action_id].append(
                    NamedEvent(r.id, r.event, r.start_time, r.finish_time, r.result)
                )

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
            histories[uuid] = InstanceHistory(
                uuid=uuid,
                instance=instances.get(uuid),
                actions=actions,
                migrations=sorted(
                    migs_by_instance[uuid], key=lambda x: (x.created or datetime.min, x.id)
                ),
                faults=sorted(faults[uuid], key=lambda x: x.created or datetime.min),
                points={a.id: points[a.id] for a in actions if a.id in points},
                named={a.id: named[a.id] for a in actions if a.id in named},
            )
        return histories

    def _in(self, column: sa.ColumnElement, values: list) -> sa.ColumnElement[bool]:
        return db.in_values(column, values, self.backend)

    def _actions_by_id(self, ids: list[int], *, prefer_shadow: bool) -> dict[int, ActionRow]:
        conn = self.conn
        found: dict[int, ActionRow] = {}
        ia = nova("instance_actions")
        sources = [ia]
        if self.has_shadow["instance_actions"]:
            sources = [self.t_sact, ia] if prefer_shadow else [ia, self.t_sact]
        for source in sources:
            missing = [i for i in ids if i not in found]
            for chunk in chunks(missing):
                query = sa.select(
                    source.c.id,
                    source.c.instance_uuid,
                    source.c.action,
                    source.c.start_time,
                    source.c.request_id,
                    source.c.project_id,
                ).where(self._in(source.c.id, chunk))
                for r in conn.execute(query):
                    found[r[0]] = ActionRow(*r)
        return found

    def _instances(self, uuids: list[str]) -> dict[str, InstanceRow]:
        conn = self.conn
        found: dict[str, InstanceRow] = {}
        i = nova("instances")
        for chunk in chunks(uuids):
            for r in conn.execute(
                sa.select(i.c.uuid, i.c.host, i.c.project_id).where(self._in(i.c.uuid, chunk))
            ):
                found[r[0]] = InstanceRow(*r)
        missing = [u for u in uuids if u not in found]
        if missing and self.has_shadow["instances"]:
            s = self.t_sinst
            for chunk in chunks(missing):
                for r in conn.execute(
                    sa.select(s.c.uuid, s.c.host, s.c.project_id).where(self._in(s.c.uuid, chunk))
                ):
                    found.setdefault(r[0], InstanceRow(*r))
        return found


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
    )
