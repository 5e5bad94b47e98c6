"""The nodes of a Galera cluster as a rolling index build sees them.

Each node over a direct connection (:func:`node_engine`): found from the
cluster's own addresses (:func:`discover`), looked at (:func:`look`: its wsrep
state and whether it has the host index) and checked before each build
(:func:`check_cluster`, which refuses with :class:`GaleraUnsafe`).
``schema status`` lists them (:func:`node_report`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from actionhost_backfill import db
from actionhost_backfill.dialects import for_connection, galera
from actionhost_backfill.dialects.base import CONNECT_TIMEOUT
from actionhost_backfill.errors import ActionHostError, BadInput, ExitCode
from actionhost_backfill.nova import catalog
from actionhost_backfill.redact import mask_url


class GaleraUnsafe(ActionHostError):
    """The cluster is not in a state where the next node may build (nothing more was built)."""

    exit_code = ExitCode.INTERVENE


@dataclass
class NodeView:
    """One node as seen over a direct connection."""

    url: URL
    name: str = ""
    state: str = "unreachable"
    cluster_status: str = ""
    cluster_size: int = 0
    cluster_uuid: str = ""
    recv_queue: int = 0
    index: str | None = None
    """The name of the index led by host on this node (None: none)."""
    error: str | None = None

    @property
    def address(self) -> str:
        return f"{self.url.host}:{self.url.port or 3306}"

    def describe(self) -> str:
        return f"{self.name or '?'} ({self.address})"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "address": self.address,
            "state": self.state,
            "cluster_status": self.cluster_status,
            "cluster_size": self.cluster_size,
            "recv_queue": self.recv_queue,
            "index": self.index,
            "valid": self.index is not None,
            "error": self.error,
        }


def node_engine(url: URL) -> sa.Engine:
    return sa.create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": CONNECT_TIMEOUT, "charset": "utf8mb4"},
    )


def look(url: URL) -> NodeView:
    """A node's wsrep state and whether it has an index led by host; never raises."""
    view = NodeView(url)
    engine = node_engine(url)
    try:
        with engine.connect() as conn:
            status = galera.node_status(conn)
            view.name = status.get("wsrep_node_name", "")
            view.state = status.get("wsrep_local_state_comment", "not Galera")
            view.cluster_status = status.get("wsrep_cluster_status", "")
            view.cluster_size = int(status.get("wsrep_cluster_size", "0") or 0)
            view.cluster_uuid = status.get("wsrep_cluster_state_uuid", "")
            view.recv_queue = int(status.get("wsrep_local_recv_queue", "0") or 0)
            if catalog.EVENTS in catalog.list_tables(conn):
                found = [ix for ix in catalog.host_indexes(conn) if ix.valid]
                ours = [ix for ix in found if ix.ours]
                view.index = (ours or found)[0].name if found else None
    except sa.exc.DBAPIError as exc:
        view.state = "unreachable"
        view.error = str(db.translate_error(exc, url))
    finally:
        engine.dispose()
    return view


def discover(url: URL, given: list[str]) -> list[URL]:
    """The node URLs: ``given`` (``--node``), else the cluster's incoming addresses
    (else its ``wsrep_cluster_address`` with the client port of ``url``), each with
    the credentials and database of ``url``."""
    if given:
        urls = [db.parse_url(u, option="--node", need_database=False) for u in given]
        return [u if u.database else u.set(database=url.database) for u in urls]
    engine = node_engine(url)
    try:
        with engine.connect() as conn:
            if not for_connection(conn).is_galera(conn):
                raise BadInput(
                    f"{mask_url(url)} is not a Galera node (wsrep_on is not ON): "
                    "run schema upgrade without --galera-rolling"
                )
            status = galera.node_status(conn)
            size = int(status.get("wsrep_cluster_size", "0") or 0)
            found = galera.addresses(status.get("wsrep_incoming_addresses", ""))
            if len(found) < size:  # AUTO: the hosts of the cluster address, this port
                found = [(h, None) for h, _ in galera.addresses(galera.cluster_address(conn))]
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
    urls = [url.set(host=host, port=port or url.port) for host, port in found]
    if not urls or len({(u.host, u.port) for u in urls}) < len(urls):
        raise BadInput(
            f"cannot tell the nodes of the cluster behind {mask_url(url)} apart "
            "(wsrep_incoming_addresses says AUTO): name each with --node URL"
        )
    return urls


def configured_size(url: URL) -> int | None:
    """How many nodes ``wsrep_cluster_address`` lists (None: none, as on a bootstrap
    node's ``gcomm://``).  A node that is down is missing from the incoming
    addresses, never from this list: it is the size a rolling build expects."""
    engine = node_engine(url)
    try:
        with engine.connect() as conn:
            listed = galera.addresses(galera.cluster_address(conn))
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()
    return len(listed) or None


def check_cluster(views: list[NodeView], size: int, what: str) -> None:
    """Refuse (one line) unless every node is reachable, Synced, primary, in one cluster
    of ``size`` nodes, with nothing queued."""
    if len(views) != size:
        raise GaleraUnsafe(
            f"{what}: {len(views)} nodes found ({', '.join(v.address for v in views)}), "
            f"{size} expected (wsrep_cluster_address or --cluster-size): bring the missing "
            "node back and wait until it is Synced, or name the nodes with --node and "
            "--cluster-size"
        )
    for view in views:
        if view.error:
            raise GaleraUnsafe(f"{what}: node {view.address} unreachable: {view.error}")
    problems = []
    for view in views:
        if view.cluster_status != "Primary":
            problems.append(
                f"{view.describe()} is not in the primary component ({view.cluster_status or 'no wsrep status'})"
            )
        elif view.state != "Synced":
            problems.append(f"{view.describe()} is {view.state}, not Synced")
        elif view.cluster_size != size:
            problems.append(f"{view.describe()} sees {view.cluster_size} nodes, {size} expected")
        elif view.recv_queue > galera.RECV_QUEUE_DRAINED:
            problems.append(
                f"{view.describe()} has {view.recv_queue} write sets queued "
                f"(over {galera.RECV_QUEUE_DRAINED})"
            )
    if len({v.cluster_uuid for v in views}) > 1:
        problems.append("the nodes belong to different clusters (wsrep_cluster_state_uuid differs)")
    if problems:
        raise GaleraUnsafe(
            f"{what}: {'; '.join(problems)}: wait until every node is Synced "
            "(SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment') and run the same command again"
        )


def node_report(url: URL, given: list[str] | None = None) -> list[dict]:
    """Per node: wsrep state and whether the index is there (``schema status``); [] when
    ``url`` is not a Galera node."""
    try:
        urls = discover(url, given or [])
    except BadInput:
        return []
    return [look(u).to_dict() for u in urls]
