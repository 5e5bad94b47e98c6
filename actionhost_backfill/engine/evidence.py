"""Read what inference needs, a chunk of instances at a time, in a few set-based queries.

Each instance's history is assembled from the evidence snapshot's temporary
tables (``engine.evidence_tables``) and Nova's live tables: live instances,
actions and faults are read fresh per chunk through Nova's own indexes, and
migrations changed since the snapshot are overlaid, so a move that happens
during a long run is seen.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from actionhost_backfill.clock import utcnow
from actionhost_backfill.dialects.bulk import chunks
from actionhost_backfill.engine.evidence_tables import (
    EvidenceTables,
    SnapshotStats,
    migration_columns,
)
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
)
from actionhost_backfill.inference.reading import connector_host, migration_row, parse_shelved_at
from actionhost_backfill.nova.tables import nova

__all__ = ["BatchEvidence", "EvidenceSnapshot", "SnapshotStats"]

#: Margin for clock skew when overlaying migrations changed since the snapshot.
SNAPSHOT_MARGIN = timedelta(minutes=10)


@dataclass
class BatchEvidence:
    actions: dict[int, ActionRow]
    histories: dict[str, InstanceHistory]
    hosts: KnownHosts


class EvidenceSnapshot(EvidenceTables):
    """Temporary evidence tables on one connection, and per-chunk loading."""

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
            sa.select(*migration_columns(live)).where(live.c.updated_at >= since)
        ):
            if r.instance_uuid in uuids:
                found[r.instance_uuid].append(migration_row(r))
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
                migrations[r.id] = migration_row(r)
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
                # In EventRow's order: a row becomes one without being indexed
                # column by column (about two rows per event decided).
                sa.select(
                    ev.c.id,
                    ev.c.action_id,
                    ev.c.event,
                    ev.c.start_time,
                    ev.c.finish_time,
                    ev.c.result,
                    ev.c.host,
                ).where(self._in(ev.c.instance_uuid, chunk))
            ).all():
                event = EventRow(*r)
                events[event.action_id].append(event)

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
