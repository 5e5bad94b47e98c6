"""Hand-written Nova histories for the inference rules, no database involved.

A :class:`Story` is one instance's life written as the cell database holds it:
rows keyed by Nova's column names (``instance_actions.action``,
``instance_actions_events.event``, ``migrations.source_compute``...), with
Nova's own quirks where they matter (a repeated step's finish and result go to
the *first* row of that name, ``nova/db/sqlalchemy/api.py``
``action_event_finish``, Kilo ... Queens).  :meth:`Story.decide` turns those
rows into the model rows ``engine.evidence`` builds from the same columns
and runs :func:`actionhost_backfill.inference.infer` on the NULL-host events,
exactly as a backfill batch does.

Only the translation from rows to model rows lives here; the rules, timeline
and steps under test are the production ones.  The model rows are built by
keyword, so a new model field with a default does not break the builder.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from actionhost_backfill.inference import (
    ActionRow,
    Decision,
    EventRow,
    FaultRow,
    InstanceHistory,
    InstanceRow,
    KnownHosts,
    MigrationRow,
    ShelveRecord,
    VolumeRecord,
    infer,
    roles,
)
from actionhost_backfill.inference.reading import (
    ACTIONS_READ_WHOLE,
    EVENTS_READ,
    MOVE_SIDED_EVENTS,
    connector_host,
    known_hosts_from,
    parse_shelved_at,
)

S = timedelta(seconds=1)
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)
T0 = datetime(2017, 1, 1)
CONDUCTOR = "ctl-1"


class Story:
    """One instance's rows, built in time order, and the decisions inference takes on them.

    ``computes`` and ``control`` are the hosts the ``services`` table names as
    ``nova-compute`` and as anything else (a conductor); hosts found in the
    instance, migration and recorded-event rows count as computes too, as in
    ``EvidenceSnapshot._known_hosts``.
    """

    def __init__(
        self,
        uuid: str = "11111111-2222-3333-4444-555555555555",
        *,
        start: datetime = T0,
        computes: tuple[str, ...] = (),
        control: tuple[str, ...] = (CONDUCTOR,),
        instance: bool = True,
    ):
        self.uuid = uuid
        self.t = start
        self.computes = set(computes)
        self.control = set(control)
        self.instance: dict | None = None
        if instance:
            self.instance = {
                "uuid": uuid,
                "host": None,
                "project_id": "project-1",
                "launched_on": None,
                "launched_at": None,
            }
        self.actions: list[dict] = []
        self.events: list[dict] = []
        self.migrations: list[dict] = []
        self.faults: list[dict] = []
        self._ids = {name: count(1) for name in ("action", "event", "migration")}

    # ------------------------------------------------------------------ time

    def at(self, delta: timedelta) -> datetime:
        """Move the clock on by ``delta`` (whole seconds, as MySQL keeps them)."""
        self.t = (self.t + delta).replace(microsecond=0)
        return self.t

    # ------------------------------------------------------------------ rows

    def action(self, name: str, *, gap: timedelta = DAY) -> int:
        """An ``instance_actions`` row (the API writes it when the request arrives)."""
        row_id = next(self._ids["action"])
        self.actions.append(
            {"id": row_id, "instance_uuid": self.uuid, "action": name, "start_time": self.at(gap)}
        )
        return row_id

    def event(
        self,
        action_id: int,
        name: str,
        *,
        took: timedelta = 10 * S,
        result: str = "Success",
        host: str | None = None,
        fault: str | None = None,
        message: str = "Operation failed",
    ) -> int:
        """A step that starts 2s from now and finishes ``took`` later.

        ``host``: the host Nova recorded (Rocky+), else NULL.  ``fault``: a host
        that recorded an ``instance_faults`` row a second before the step finished.
        """
        row_id = self.begin(action_id, name, host=host)
        self.at(took)
        if fault:
            self.fault(fault, self.t - S, message=message)
        self.end(action_id, name, result=result, gap=timedelta(0))
        return row_id

    def begin(self, action_id: int, name: str, *, host: str | None = None) -> int:
        """``action_event_start``: a new ``instance_actions_events`` row, 2s from now."""
        row_id = next(self._ids["event"])
        self.events.append(
            {
                "id": row_id,
                "action_id": action_id,
                "event": name,
                "start_time": self.at(2 * S),
                "finish_time": None,
                "result": None,
                "host": host,
            }
        )
        return row_id

    def end(self, action_id: int, name: str, *, result: str = "Success", gap=2 * S) -> None:
        """``action_event_finish``: finish and result go to the *first* row of that name.

        A repeated step (a rescheduled build or prep_resize) therefore leaves
        its later rows with NULL finish and result.
        """
        first = next(e for e in self.events if e["action_id"] == action_id and e["event"] == name)
        first["finish_time"], first["result"] = self.at(gap), result

    def migration(
        self,
        migration_type: str | None,
        source: str | None,
        dest: str | None,
        status: str,
        *,
        created: datetime,
        updated: datetime | None = None,
        old_flavor: int = 1,
        new_flavor: int = 1,
    ) -> int:
        """A ``migrations`` row; ``migration_type`` None as Kilo wrote it (no such column yet)."""
        row_id = next(self._ids["migration"])
        self.migrations.append(
            {
                "id": row_id,
                "instance_uuid": self.uuid,
                "source_compute": source,
                "dest_compute": dest,
                "source_node": f"{source}.nova.local" if source else None,
                "dest_node": f"{dest}.nova.local" if dest else None,
                "status": status,
                "migration_type": migration_type,
                "old_instance_type_id": old_flavor,
                "new_instance_type_id": new_flavor,
                "created_at": created,
                "updated_at": updated or created,
            }
        )
        return row_id

    def fault(self, host: str, created: datetime, *, message: str = "Operation failed") -> None:
        """An ``instance_faults`` row recorded by ``host`` (a compute or a conductor)."""
        self.faults.append({"host": host, "created_at": created, "message": message})

    def done(self, *, host: str | None, launched_on: str | None) -> Story:
        """The instance row as Nova left it (``instances.host``, ``launched_on``)."""
        assert self.instance is not None
        self.instance.update(host=host, launched_on=launched_on)
        return self

    # ------------------------------------------------------------------ inference

    def tables(self) -> dict[str, list[dict]]:
        """The rows, by Nova table name, as :func:`decide_rows` takes them."""
        services = [{"host": h, "binary": "nova-compute"} for h in sorted(self.computes)]
        services += [{"host": h, "binary": "nova-conductor"} for h in sorted(self.control)]
        return {
            "instances": [self.instance] if self.instance is not None else [],
            "instance_actions": self.actions,
            "instance_actions_events": self.events,
            "migrations": self.migrations,
            "instance_faults": [{"instance_uuid": self.uuid, **f} for f in self.faults],
            "services": services,
        }

    def decisions(self) -> dict[int, Decision]:
        """Every NULL-host event's decision, by event id, as one backfill batch takes them."""
        return decisions_of(self.tables())

    def decide(self) -> dict[int, tuple[str | None, str]]:
        """``{event id: (host, rule)}``; host None means NULL and ``rule`` is the reason."""
        return {i: (d.host, d.rule) for i, d in self.decisions().items()}

    def known_hosts(self) -> KnownHosts:
        return known_hosts_of(self.tables())


# --------------------------------------------------------------------------- rows -> model
#
# What ``engine.evidence`` does with the rows it reads, column by column,
# minus the SQL: live and archived (``shadow_*``) rows are passed together.

#: Actions and events the evidence snapshot reads whole (``engine.evidence_tables._needed``);
#: a successful ordinary compute step nobody recorded says nothing and is left out.
#: The very sets the snapshot's SQL uses, so the two cannot drift apart.
_READ_WHOLE = frozenset(ACTIONS_READ_WHOLE)
_EVENTS_READ = frozenset(EVENTS_READ)
_MOVE_SIDED = frozenset(MOVE_SIDED_EVENTS)


def _needed(event: dict, action_name: str | None) -> bool:
    name = event["event"] or ""
    return name.startswith("compute_") and (
        action_name in _READ_WHOLE
        or name in _EVENTS_READ
        or event["host"] is not None
        or event["result"] is None
        or event["result"] != "Success"
    )


def _both(t: dict[str, list[dict]], base: str) -> list[dict]:
    """Live rows, then archived ones (a live row wins where both exist)."""
    return [*t.get(base, ()), *t.get(f"shadow_{base}", ())]


def _by_start(rows, key=lambda r: r.start):
    return sorted(rows, key=lambda r: (key(r) or datetime.min, getattr(r, "id", 0)))


def batch_of(
    tables: dict[str, list[dict]],
) -> tuple[list[EventRow], dict[int, ActionRow], dict[str, InstanceHistory], KnownHosts]:
    """``infer``'s arguments for every NULL-host event in ``tables`` (Nova table name ->
    rows as dicts, ``shadow_*`` tables included): the events in id order, the actions,
    the histories and the known hosts."""
    t = tables
    uuids = sorted({a["instance_uuid"] for a in _both(t, "instance_actions") if a["instance_uuid"]})
    histories = {uuid: history_of(uuid, t) for uuid in uuids}
    actions = {a.id: a for h in histories.values() for a in h.actions}
    null = sorted(
        (_event_row(e) for e in _both(t, "instance_actions_events") if e["host"] is None),
        key=lambda e: e.id,
    )
    return null, actions, histories, known_hosts_of(t)


def decisions_of(tables: dict[str, list[dict]]) -> dict[int, Decision]:
    """Decisions for every NULL-host event in ``tables``.

    One batch of every instance, as ``run_backfill`` takes it with
    ``include_shadow``: the same ``infer`` call on the same model rows.
    """
    return {d.event_id: d for d in infer(*batch_of(tables))}


def history_of(uuid: str, t: dict[str, list[dict]]) -> InstanceHistory:
    """One instance's :class:`InstanceHistory`, from its rows."""
    actions = _by_start(
        ActionRow(id=a["id"], instance_uuid=uuid, name=a["action"], start=a["start_time"])
        for a in _both(t, "instance_actions")
        if a["instance_uuid"] == uuid
    )
    names = {a.id: a.name for a in actions}
    events: dict[int, list[EventRow]] = {}
    for e in _both(t, "instance_actions_events"):
        if e["action_id"] in names and _needed(e, names[e["action_id"]]):
            events.setdefault(e["action_id"], []).append(_event_row(e))
    instance = next((i for i in _both(t, "instances") if i["uuid"] == uuid), None)
    shelve_hosts, shelve_times = [], []
    for m in _both(t, "instance_system_metadata"):
        if m["instance_uuid"] == uuid and m["key"] == "shelved_host" and m["value"]:
            shelve_hosts.append(m["value"])
        elif m["instance_uuid"] == uuid and m["key"] == "shelved_at":
            shelve_times.append(parse_shelved_at(m["value"]))
    volumes = []
    for b in _both(t, "block_device_mapping"):
        host = connector_host(b.get("connection_info"))
        if b["instance_uuid"] != uuid or b.get("attachment_id") or host is None:
            continue
        if b["deleted"] and b["deleted_at"] is None:
            continue  # detached at an unknown time
        volumes.append(VolumeRecord(host, b["created_at"], b["deleted_at"]))
    return InstanceHistory(
        uuid=uuid,
        instance=InstanceRow(
            uuid=instance["uuid"],
            host=instance["host"],
            project_id=instance["project_id"],
            launched_on=instance["launched_on"],
            launched_at=instance["launched_at"],
        )
        if instance is not None
        else None,
        actions=actions,
        events={a: _by_start(rows) for a, rows in events.items()},
        migrations=_by_start(
            (_migration_row(m) for m in _both(t, "migrations") if m["instance_uuid"] == uuid),
            key=lambda m: m.created,
        ),
        faults=sorted(
            (
                FaultRow(host=f["host"], created=f["created_at"], message=f["message"])
                for f in _both(t, "instance_faults")
                if f["instance_uuid"] == uuid
            ),
            key=lambda f: f.created or datetime.min,
        ),
        shelve=ShelveRecord(tuple(shelve_hosts), tuple(x for x in shelve_times if x))
        if shelve_hosts
        else None,
        volumes=volumes,
    )


def known_hosts_of(t: dict[str, list[dict]]) -> KnownHosts:
    """Computes, control-plane hosts and node names, as ``EvidenceSnapshot._known_hosts``
    (the rows gathered here, the verdict by the same ``known_hosts_from``)."""
    hosts: set[str] = set()
    for m in _both(t, "migrations"):
        hosts.update(h for h in (m["source_compute"], m["dest_compute"]) if h)
    hosts.update(
        e["host"]
        for e in _both(t, "instance_actions_events")
        if e["host"] and (e["event"] or "").startswith("compute_") and e["event"] not in _MOVE_SIDED
    )
    for i in t.get("instances", ()):
        hosts.update(h for h in (i["host"], i["launched_on"]) if h)
    hosts.update(i["host"] for i in t.get("shadow_instances", ()) if i["host"])
    owners: dict[str, set[str]] = {}
    for n in _both(t, "compute_nodes"):
        if n["host"] and n["hypervisor_hostname"]:
            owners.setdefault(n["hypervisor_hostname"], set()).add(n["host"])
            hosts.add(n["host"])
    computes = {s["host"] for s in _both(t, "services") if s["binary"] == "nova-compute"}
    others = {s["host"] for s in _both(t, "services") if s["binary"] != "nova-compute"}
    return known_hosts_from(hosts, owners, computes, others)


def _event_row(e: dict) -> EventRow:
    return EventRow(
        id=e["id"],
        action_id=e["action_id"],
        name=e["event"],
        start=e["start_time"],
        finish=e["finish_time"],
        result=e["result"],
        host=e["host"],
    )


def _migration_row(m: dict) -> MigrationRow:
    return MigrationRow(
        id=m["id"],
        instance_uuid=m["instance_uuid"],
        source=m["source_compute"],
        dest=m["dest_compute"],
        status=m["status"],
        # Nova's rule for rows without migration_type (Kilo), as evidence applies it.
        kind=roles.migration_type(
            m["migration_type"], m["old_instance_type_id"], m["new_instance_type_id"]
        ),
        created=m["created_at"],
        updated=m["updated_at"],
        source_node=m["source_node"],
        dest_node=m["dest_node"],
        typed=bool(m["migration_type"]),
    )
