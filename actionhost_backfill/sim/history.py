"""Write Nova-shaped history rows the way Nova's DB API wrote them.

Used by ``simulate`` (generated histories) and by tests (hand-built ones).
Rows get explicit ids and whole-second timestamps (as MySQL keeps them);
an archived instance's rows go to the ``shadow_*`` tables, as
``nova-manage db archive_deleted_rows`` would have moved them.  Inserts are
bulk (``bulk.insert_rows``, rows kept as lists in column order) and in
foreign-key order; a change to a row that was already written becomes an
``UPDATE`` at the next :meth:`HistoryBuilder.write`.

Two DB API behaviours matter to anyone reading the history back, and are
reproduced here (verified at every tag from Kilo to Queens, see
docs/accuracy.md §1, ``DB:action_event_finish`` and the event-host row):

* ``action_event_start`` always inserts a new row, but ``action_event_finish``
  updates ``filter_by(action_id=..., event=...).first()``: when a step repeats
  in one action (a reschedule), the *first* row of that name receives every
  later finish time, result and traceback, and the later rows keep them NULL
  (:meth:`HistoryBuilder.event_start` / :meth:`HistoryBuilder.event_finish`).
* Every Kilo ... Queens event row has ``host`` NULL; Nova writes it from Rocky.
"""

from __future__ import annotations

import itertools
import uuid as uuidlib
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa

from actionhost_backfill.sim.batches import BatchWriting
from actionhost_backfill.sim.columns import POSITION
from actionhost_backfill.sim.connection_info import connection_info

_EVENT = POSITION["instance_actions_events"]
_E_FINISH, _E_RESULT, _E_TRACEBACK, _E_UPDATED = (
    _EVENT["finish_time"],
    _EVENT["result"],
    _EVENT["traceback"],
    _EVENT["updated_at"],
)
TRACEBACK = "Traceback (most recent call last):\n..."
_UNSET = object()


def whole(moment: datetime | None) -> datetime | None:
    if moment is None or moment.microsecond == 0:
        return moment
    return moment.replace(microsecond=0)


class HistoryBuilder(BatchWriting):
    """Accumulates rows; :meth:`write` inserts them and clears the buffer.

    Rows stay changeable after they were written: the change is kept and
    applied as an ``UPDATE`` by the next :meth:`write` (``archived`` says which
    of ``table``/``shadow_table`` holds a row the builder no longer buffers).
    """

    def __init__(self) -> None:
        self.counters: dict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))
        self.rows: dict[str, list[list]] = defaultdict(list)
        self.archived: set[str] = set()
        #: Newton+'s archiver flags actions and events ``deleted = id`` before
        #: moving them (14.0.0 ``nova/db/sqlalchemy/api.py:_archive_deleted_rows_for_table``);
        #: off for hand-built histories.
        self.archive_flags = False
        # action id -> event name -> [first row of that name, its table] (what
        # ``.first()`` finds); after a write the row is replaced by its id.
        self._open_events: dict[int, dict[str, list]] = {}
        #: Actions whose finishes go to the row their attempt started, as no Nova
        #: release does (a patched Nova, rows repaired by hand): ``simulate
        #: --contradiction-rate``.  action id -> event name -> [latest row, table].
        self.own_finishes: set[int] = set()
        self._latest_events: dict[int, dict[str, list]] = {}
        self._buffered: dict[tuple[str, int], list] = {}
        self._instances: dict[str, tuple[str, int]] = {}
        self._buffered_instances: dict[str, list] = {}
        self._updates: dict[str, dict[int, dict[str, object]]] = defaultdict(dict)
        self._soft_deletes: list[tuple[str, str, datetime | None]] = []
        # instance uuid -> table -> rows kept back from write() (see hold()).
        self._held: dict[str, dict[str, list[list]]] = {}
        self._held_rows: dict[tuple[str, int], list] = {}
        self._meta: sa.MetaData | None = None
        self._present: set[str] = set()
        self._layouts: dict[str, tuple[tuple[str, ...], list[int] | None]] = {}

    def next_id(self, base: str) -> int:
        return next(self.counters[base])

    def _table(self, base: str, instance_uuid: str | None, archived: bool | None) -> str:
        if archived is None:
            archived = instance_uuid in self.archived
        return f"shadow_{base}" if archived else base

    def _change(self, table: str, row_id: int, values: dict) -> None:
        """Set ``values`` on a row, buffered or already written (then an UPDATE)."""
        base = table.removeprefix("shadow_")
        row = self._buffered.get((table, row_id)) or self._held_rows.get((table, row_id))
        if row is not None:
            position = POSITION[base]
            for key, value in values.items():
                row[position[key]] = whole(value) if isinstance(value, datetime) else value
            return
        pending = self._updates[table].setdefault(row_id, {})
        for key, value in values.items():
            pending[key] = whole(value) if isinstance(value, datetime) else value

    def _append(self, table: str, instance_uuid: str, row: list) -> None:
        """Buffer a changeable row (held back if its instance is held)."""
        held = self._held.get(instance_uuid)
        if held is None:
            self.rows[table].append(row)
            self._buffered[(table, row[0])] = row
        else:
            held.setdefault(table, []).append(row)
            self._held_rows[(table, row[0])] = row

    # ------------------------------------------------------------------ rows

    def instance(
        self,
        uuid: str | None = None,
        *,
        host: str | None,
        project_id: str = "project-1",
        user_id: str = "user-1",
        created_at: datetime | None = None,
        deleted: bool = False,
        archived: bool = False,
        vm_state: str = "active",
        node: str | None = None,
        launched_on: str | None = "host",
        launched_at: datetime | None = None,
        deleted_at: datetime | None = None,
    ) -> str:
        """An instance row; ``launched_on="host"`` (the default) copies ``host``."""
        uuid = uuid or str(uuidlib.uuid4())
        row_id = self.next_id("instances")
        if archived:
            self.archived.add(uuid)
        created = whole(created_at)
        table = self._table("instances", uuid, archived)
        row = [
            row_id,
            uuid,
            host,
            node or host,
            host if launched_on == "host" else launched_on,
            whole(launched_at),
            None,
            project_id,
            user_id,
            "deleted" if deleted else vm_state,
            created,
            created,
            whole(deleted_at or created) if deleted else None,
            row_id if deleted else 0,
            1 if deleted else 0,
            False,
        ]
        self.rows[table].append(row)
        self._instances[uuid] = (table, row_id)
        self._buffered_instances[uuid] = row
        return uuid

    def update_instance(self, uuid: str, **values) -> None:
        """Change an instance row (its final host, launch columns...), written or not.

        ``deleted=True`` marks it deleted the way Nova does (``deleted = id``).
        """
        table, row_id = self._instances[uuid]
        if values.get("deleted"):
            values["deleted"] = row_id
            values["vm_state"] = "deleted"
        row = self._buffered_instances.get(uuid)
        if row is not None:
            position = POSITION["instances"]
            for key, value in values.items():
                row[position[key]] = whole(value) if isinstance(value, datetime) else value
            return
        self._change(table, row_id, values)

    def action(
        self,
        instance_uuid: str,
        name: str,
        start: datetime,
        *,
        request_id: str | None = None,
        project_id: str | None = "project-1",
        user_id: str | None = "user-1",
        archived: bool | None = None,
    ) -> int:
        """``action_start``: ``user_id`` is NULL when ``project_id`` is (admin contexts)."""
        action_id = self.next_id("instance_actions")
        table = self._table("instance_actions", instance_uuid, archived)
        start = whole(start)
        row = [
            action_id,
            name,
            instance_uuid,
            request_id or f"req-{uuidlib.UUID(int=action_id)}",
            user_id if project_id else None,
            project_id,
            start,
            None,
            None,
            start,
            None,
            action_id if self.archive_flags and table != "instance_actions" else 0,
        ]
        self.rows[table].append(row)
        self._buffered[(table, action_id)] = row
        return action_id

    def update_action(
        self,
        action_id: int,
        *,
        instance_uuid: str | None = None,
        archived: bool | None = None,
        **values,
    ) -> None:
        """Set ``message``/``updated_at`` (what ``action_event_*`` change) on an action."""
        table = self._table("instance_actions", instance_uuid, archived)
        self._change(table, action_id, values)

    def event_start(
        self,
        instance_uuid: str,
        action_id: int,
        name: str,
        start: datetime,
        *,
        host: str | None = None,
        archived: bool | None = None,
    ) -> int:
        """``action_event_start``: always a new row (``host`` only from Rocky)."""
        event_id = self.next_id("instance_actions_events")
        table = self._table("instance_actions_events", instance_uuid, archived)
        start = whole(start)
        row = [
            event_id,
            name,
            action_id,
            start,
            None,
            None,
            None,
            host,
            None,
            start,
            None,
            event_id if self.archive_flags and table != "instance_actions_events" else 0,
        ]
        self.rows[table].append(row)
        names = self._open_events.get(action_id)
        if names is None:
            self._open_events[action_id] = {name: [row, table]}
        elif name not in names:
            names[name] = [row, table]
        if action_id in self.own_finishes:
            self._latest_events.setdefault(action_id, {})[name] = [row, table]
        return event_id

    def event_finish(
        self, action_id: int, name: str, finish: datetime, *, result: str = "Success"
    ) -> None:
        """``action_event_finish``: updates the *first* row of that name in the action."""
        if action_id in self.own_finishes:
            row, table = self._latest_events[action_id][name]
        else:
            row, table = self._open_events[action_id][name]
        finish = whole(finish)
        traceback = TRACEBACK if result == "Error" else None
        if isinstance(row, list):
            row[_E_FINISH] = finish
            row[_E_UPDATED] = finish
            row[_E_RESULT] = result
            row[_E_TRACEBACK] = traceback
        else:  # that first row is already in the database
            self._change(
                table,
                row,
                {
                    "finish_time": finish,
                    "updated_at": finish,
                    "result": result,
                    "traceback": traceback,
                },
            )

    def forget(self, action_id: int) -> None:
        """Drop a finished action's open events (no later finish can reach them)."""
        self._open_events.pop(action_id, None)
        if self.own_finishes:
            self.own_finishes.discard(action_id)
            self._latest_events.pop(action_id, None)

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
        """A step that started and finished (start then finish, through the DB API)."""
        event_id = self.event_start(
            instance_uuid, action_id, name, start, host=host, archived=archived
        )
        self.event_finish(action_id, name, finish or start, result=result)
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
        source_node: str | None = "host",
        dest_node: str | None = "host",
        dest_host: str | None = None,
        deleted_at: datetime | None = None,
        row_id: int | None = None,
        user_id: str | None = "user-1",
        project_id: str | None = "project-1",
    ) -> int:
        """A migration row; ``*_node="host"`` (the default) copies the host name.

        ``row_id``: an id taken earlier with ``next_id("migrations")`` (a row
        written once its final values are known keeps its creation order).
        """
        migration_id = row_id if row_id is not None else self.next_id("migrations")
        table = self._table("migrations", instance_uuid, archived)
        row = [
            migration_id,
            str(uuidlib.UUID(int=(1 << 100) + migration_id)),
            instance_uuid,
            source,
            dest,
            source if source_node == "host" else source_node,
            dest if dest_node == "host" else dest_node,
            dest_host,
            status,
            kind,
            old_flavor,
            new_flavor,
            False,
            False,
            whole(created),
            whole(updated),
            migration_id if deleted else 0,
            whole(deleted_at or updated or created) if deleted else None,
            user_id,
            project_id,
        ]
        self._append(table, instance_uuid, row)
        return migration_id

    def update_migration(
        self, migration_id: int, *, archived: bool | None = None, **values
    ) -> None:
        """Change a migration row; once written, ``archived`` must say where it is."""
        for table in ("migrations", "shadow_migrations"):
            key = (table, migration_id)
            if key in self._buffered or key in self._held_rows:
                self._change(table, migration_id, values)
                return
        if archived is None:
            raise KeyError(migration_id)
        self._change("shadow_migrations" if archived else "migrations", migration_id, values)

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
        fault_id = self.next_id("instance_faults")
        self._append(
            self._table("instance_faults", instance_uuid, archived),
            instance_uuid,
            [fault_id, instance_uuid, code, message, None, host, whole(at), None, 0],
        )
        return fault_id

    def system_metadata(
        self,
        instance_uuid: str,
        key: str,
        value: str | None,
        created: datetime,
        *,
        deleted_at: datetime | None = None,
        archived: bool | None = None,
        row_id: int | None = None,
    ) -> int:
        """An ``instance_system_metadata`` row (``deleted_at``: soft-deleted then)."""
        row_id = row_id if row_id is not None else self.next_id("instance_system_metadata")
        deleted_at = whole(deleted_at)
        self._append(
            self._table("instance_system_metadata", instance_uuid, archived),
            instance_uuid,
            [
                row_id,
                instance_uuid,
                key,
                value,
                whole(created),
                deleted_at,
                deleted_at,
                row_id if deleted_at else 0,
            ],
        )
        return row_id

    def volume_attachment(
        self,
        instance_uuid: str,
        created: datetime,
        *,
        connector_host: str | None,
        deleted_at: datetime | None = None,
        attachment_id: str | None = None,
        archived: bool | None = None,
        row_id: int | None = None,
        updated: datetime | None = None,
        boot_index: int | None = None,
        connection_info_json: str | object | None = _UNSET,
    ) -> int:
        """A volume ``block_device_mapping`` row with its saved connection_info.

        ``connection_info_json`` overrides the generated JSON (None: never connected).
        """
        row_id = row_id if row_id is not None else self.next_id("block_device_mapping")
        volume_id = str(uuidlib.UUID(int=(3 << 100) + row_id))
        if connection_info_json is _UNSET:
            saved = None if attachment_id else connection_info(connector_host, volume_id)
        else:
            saved = connection_info_json
        table = self._table("block_device_mapping", instance_uuid, archived)
        deleted_at = whole(deleted_at)
        row = [
            row_id,
            instance_uuid,
            str(uuidlib.UUID(int=(4 << 100) + row_id)),
            "volume",
            "volume",
            "/dev/vda" if boot_index == 0 else f"/dev/vd{'bcdefghijklmnop'[row_id % 15]}",
            boot_index,
            boot_index == 0,
            volume_id,
            saved,
            attachment_id,
            whole(created),
            whole(updated or created),
            deleted_at,
            row_id if deleted_at else 0,
        ]
        self.rows[table].append(row)
        self._buffered[(table, row_id)] = row
        return row_id

    def update_volume_attachment(
        self, row_id: int, *, archived: bool | None = None, **values
    ) -> None:
        """Change a BDM row (``connector_host=`` rebuilds its legacy connection_info)."""
        table = None
        for name in ("block_device_mapping", "shadow_block_device_mapping"):
            if (name, row_id) in self._buffered:
                table = name
        if table is None:
            if archived is None:
                raise KeyError(row_id)
            table = "shadow_block_device_mapping" if archived else "block_device_mapping"
        if "connector_host" in values:
            volume_id = str(uuidlib.UUID(int=(3 << 100) + row_id))
            values["connection_info"] = connection_info(values.pop("connector_host"), volume_id)
        if "deleted_at" in values:
            values["deleted"] = row_id if values["deleted_at"] else 0
        self._change(table, row_id, values)

    def soft_delete_children(
        self, base: str, instance_uuid: str, at: datetime | None, *, archived: bool | None = None
    ) -> None:
        """``instance_destroy``'s query ``soft_delete()`` of one instance's rows.

        ``deleted = id`` and ``deleted_at = at`` on every live row; ``updated_at``
        is kept (oslo.db ``Query.soft_delete``, called by ``DB:instance_destroy``).  ``at=None`` is the
        Newton+ archiver's flag (``deleted = id``, ``deleted_at`` NULL).
        """
        table = self._table(base, instance_uuid, archived)
        at = whole(at)
        held = self._held.get(instance_uuid)
        if held is not None:  # still in memory: no UPDATE needed
            position = POSITION[base]
            deleted, deleted_at = position["deleted"], position.get("deleted_at")
            for row in held.get(table, ()):
                if not row[deleted]:
                    row[deleted] = row[0]
                    if deleted_at is not None:
                        row[deleted_at] = at
            return
        self._soft_deletes.append((table, instance_uuid, at))

    def hold(self, instance_uuid: str) -> None:
        """Keep this instance's migrations, faults and system metadata out of write().

        For an instance whose delete is due soon: ``soft_delete_children`` then
        changes them in memory instead of by an UPDATE per table (shadow tables
        have no index on instance_uuid).  :meth:`release` hands them to write().
        """
        self._held.setdefault(instance_uuid, {})

    def release(self, instance_uuid: str) -> None:
        for table, rows in self._held.pop(instance_uuid, {}).items():
            self.rows[table].extend(rows)
            for row in rows:
                key = (table, row[0])
                self._held_rows.pop(key, None)
                self._buffered[key] = row

    def service(
        self, host: str, binary: str = "nova-compute", *, created_at: datetime | None = None
    ) -> int:
        """A service registration, as every nova-compute and nova-conductor makes."""
        service_id = self.next_id("services")
        topic = binary.removeprefix("nova-")
        self.rows["services"].append(
            [
                service_id,
                str(uuidlib.UUID(int=(2 << 100) + service_id)),
                host,
                binary,
                topic,
                0,
                False,
                0,
                66,
                whole(created_at),
            ]
        )
        return service_id

    def compute_node(
        self,
        host: str,
        hypervisor_hostname: str,
        *,
        service_id: int | None = None,
        created_at: datetime | None = None,
    ) -> int:
        """A ``compute_nodes`` row: the node names migrations carry map to hosts here."""
        node_id = self.next_id("compute_nodes")
        self.rows["compute_nodes"].append(
            [
                node_id,
                service_id,
                host,
                str(uuidlib.UUID(int=(5 << 100) + node_id)),
                hypervisor_hostname,
                "QEMU",
                0,
                whole(created_at),
            ]
        )
        return node_id
