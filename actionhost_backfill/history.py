"""Write Nova-shaped history rows: instances, actions, events, migrations, faults.

Used by ``simulate`` (generated histories) and by tests (hand-built ones).
Rows get explicit ids and whole-second timestamps (as MySQL keeps them);
an archived instance's rows go to the ``shadow_*`` tables, as
``nova-manage db archive_deleted_rows`` would have moved them.  Inserts are
bulk and in foreign-key order.
"""

from __future__ import annotations

import itertools
import uuid as uuidlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from .novamodel import build_metadata

_ORDER = (
    "services",
    "instances",
    "instance_actions",
    "instance_actions_events",
    "migrations",
    "instance_faults",
)


def whole(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


@dataclass
class HistoryBuilder:
    """Accumulates rows; :meth:`write` inserts them and clears the buffer."""

    next_action: itertools.count = field(default_factory=lambda: itertools.count(1))
    next_event: itertools.count = field(default_factory=lambda: itertools.count(1))
    next_migration: itertools.count = field(default_factory=lambda: itertools.count(1))
    next_fault: itertools.count = field(default_factory=lambda: itertools.count(1))
    next_instance: itertools.count = field(default_factory=lambda: itertools.count(1))
    next_service: itertools.count = field(default_factory=lambda: itertools.count(1))
    rows: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    archived: set[str] = field(default_factory=set)
    _meta: sa.MetaData | None = None

    def _table(self, base: str, instance_uuid: str, archived: bool | None) -> str:
        if archived is None:
            archived = instance_uuid in self.archived
        return f"shadow_{base}" if archived else base

    def instance(
        self,
        uuid: str | None = None,
        *,
        host: str | None,
        project_id: str = "project-1",
        created_at: datetime | None = None,
        deleted: bool = False,
        archived: bool = False,
        vm_state: str = "active",
        node: str | None = None,
    ) -> str:
        uuid = uuid or str(uuidlib.uuid4())
        row_id = next(self.next_instance)
        if archived:
            self.archived.add(uuid)
        created = whole(created_at) if created_at else None
        self.rows[self._table("instances", uuid, archived)].append(
            {
                "id": row_id,
                "uuid": uuid,
                "host": host,
                "node": node or host,
                "launched_on": host,
                "project_id": project_id,
                "user_id": "user-1",
                "vm_state": "deleted" if deleted else vm_state,
                "created_at": created,
                "updated_at": created,
                "deleted": row_id if deleted else 0,
                "deleted_at": created if deleted else None,
                "cleaned": 1 if deleted else 0,
                "hidden": False,
            }
        )
        return uuid

    def action(
        self,
        instance_uuid: str,
        name: str,
        start: datetime,
        *,
        request_id: str | None = None,
        project_id: str = "project-1",
        archived: bool | None = None,
    ) -> int:
        action_id = next(self.next_action)
        self.rows[self._table("instance_actions", instance_uuid, archived)].append(
            {
                "id": action_id,
                "action": name,
                "instance_uuid": instance_uuid,
                "request_id": request_id or f"req-{uuidlib.UUID(int=action_id)}",
                "user_id": "user-1",
                "project_id": project_id,
                "start_time": whole(start),
                "finish_time": None,
                "message": None,
                "created_at": whole(start),
                "updated_at": None,
                "deleted": 0,
            }
        )
        return action_id

    def event(
        self,
        instance_uuid: str,
        action_id: int,
        name: str,
        start: datetime,
        finish: datetime | None = None,
        *,
        result: str = "Success",
        host: str | None = None,
        archived: bool | None = None,
    ) -> int:
        event_id = next(self.next_event)
        finish = finish or start
        self.rows[self._table("instance_actions_events", instance_uuid, archived)].append(
            {
                "id": event_id,
                "event": name,
                "action_id": action_id,
                "start_time": whole(start),
                "finish_time": whole(finish),
                "result": result,
                "traceback": "Traceback (most recent call last):\n..."
                if result == "Error"
                else None,
                "host": host,
                "details": None,
                "created_at": whole(start),
                "updated_at": whole(finish),
                "deleted": 0,
            }
        )
        return event_id

    def migration(
        self,
        instance_uuid: str,
        *,
        kind: str | None,
        source: str | None,
        dest: str | None,
        status: str,
        created: datetime,
        updated: datetime | None,
        deleted: bool = False,
        archived: bool | None = None,
        old_flavor: int = 1,
        new_flavor: int = 1,
    ) -> int:
        migration_id = next(self.next_migration)
        self.rows[self._table("migrations", instance_uuid, archived)].append(
            {
                "id": migration_id,
                "uuid": str(uuidlib.UUID(int=(1 << 100) + migration_id)),
                "instance_uuid": instance_uuid,
                "source_compute": source,
                "dest_compute": dest,
                "source_node": source,
                "dest_node": dest,
                "dest_host": None,
                "status": status,
                "migration_type": kind,
                "old_instance_type_id": old_flavor,
                "new_instance_type_id": new_flavor,
                "hidden": False,
                "cross_cell_move": False,
                "created_at": whole(created),
                "updated_at": whole(updated) if updated else None,
                "deleted": migration_id if deleted else 0,
                "deleted_at": whole(updated or created) if deleted else None,
                "user_id": "user-1",
                "project_id": "project-1",
            }
        )
        return migration_id

    def fault(
        self,
        instance_uuid: str,
        host: str | None,
        at: datetime,
        *,
        code: int = 500,
        message: str = "Build of instance aborted",
        archived: bool | None = None,
    ) -> int:
        fault_id = next(self.next_fault)
        self.rows[self._table("instance_faults", instance_uuid, archived)].append(
            {
                "id": fault_id,
                "instance_uuid": instance_uuid,
                "code": code,
                "message": message,
                "details": None,
                "host": host,
                "created_at": whole(at),
                "deleted": 0,
            }
        )
        return fault_id

    def service(
        self, host: str, binary: str = "nova-compute", *, created_at: datetime | None = None
    ) -> int:
        """A service registration, as every nova-compute and nova-conductor makes."""
        service_id = next(self.next_service)
        topic = binary.removeprefix("nova-")
        self.rows["services"].append(
            {
                "id": service_id,
                "uuid": str(uuidlib.UUID(int=(2 << 100) + service_id)),
                "host": host,
                "binary": binary,
                "topic": topic,
                "report_count": 0,
                "disabled": False,
                "deleted": 0,
                "version": 66,
                "created_at": whole(created_at) if created_at else None,
            }
        )
        return service_id

    def pending(self) -> int:
        return sum(len(v) for v in self.rows.values())

    def write(self, conn: sa.Connection, *, chunk: int = 5000) -> dict[str, int]:
        """Insert everything buffered (foreign-key order) and clear the buffer."""
        if self._meta is None:
            names = set(sa.inspect(conn).get_table_names())
            self._meta = build_metadata(
                with_host="host"
                in {c["name"] for c in sa.inspect(conn).get_columns("instance_actions_events")},
                with_shadow="shadow_instances" in names,
            )
        written: dict[str, int] = {}
        for base in _ORDER:
            for name in (base, f"shadow_{base}"):
                rows = self.rows.pop(name, None)
                if not rows:
                    continue
                table = self._meta.tables[name]
                columns = set(table.c.keys())
                for start in range(0, len(rows), chunk):
                    part = [
                        {k: v for k, v in row.items() if k in columns}
                        for row in rows[start : start + chunk]
                    ]
                    conn.execute(table.insert(), part)
                written[name] = len(rows)
        return written
