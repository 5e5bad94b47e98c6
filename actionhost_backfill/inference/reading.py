"""What inference reads of Nova's rows, and how their raw values become model values.

Which events the evidence snapshot keeps (``engine.evidence_tables``), how a
``shelved_at`` or a saved volume connector is parsed, how the hosts seen in
the rows become :class:`KnownHosts`, and how a migration row becomes a
:class:`MigrationRow`.  No database here: the unit tests feed the same
functions hand-written rows (``tests/unit/histories.py``).
"""

from __future__ import annotations

import json
from datetime import datetime

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import KnownHosts, MigrationRow

SHELVED_KEYS = ("shelved_host", "shelved_at")
#: How ``shelved_at`` was written: ``timeutils.strtime()`` (Kilo, Liberty) or
#: ``utcnow().isoformat()`` (Mitaka+), naive UTC.
_SHELVED_AT_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")


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


#: Events whose host is a move's source or destination, not simply a compute.
MOVE_SIDED_EVENTS = sorted(roles.SOURCE_EVENTS | roles.DEST_SELECTION | roles.DEST_TARGETED)
#: Actions whose every event inference reads (their time spans bound host changes).
ACTIONS_READ_WHOLE = sorted(
    roles.MOVE_ACTIONS
    | roles.COLD_PARTNERS
    | roles.LIVE_PARTNERS
    | {roles.CREATE, roles.UNSHELVE, roles.SHELVE, roles.SHELVE_OFFLOAD}
)
#: Events inference reads wherever they are.
EVENTS_READ = sorted(
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


def migration_row(r) -> MigrationRow:
    """A ``migrations`` row (its columns by name) as inference reads it."""
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
