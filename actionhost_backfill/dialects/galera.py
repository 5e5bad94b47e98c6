"""What a Galera node says about itself, and the SQL of an index build on one node (RSU).

MariaDB Galera Cluster and Percona XtraDB Cluster share these ``wsrep_*``
status variables and ``wsrep_OSU_method``.  Everything here runs over a
direct connection to one node: a proxy in front of the cluster would send
each statement to a node of its choosing.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

#: ``SHOW GLOBAL STATUS`` variables a rolling build looks at.
STATUS = (
    "wsrep_local_state_comment",
    "wsrep_cluster_status",
    "wsrep_cluster_size",
    "wsrep_cluster_state_uuid",
    "wsrep_ready",
    "wsrep_local_recv_queue",
    "wsrep_incoming_addresses",
    "wsrep_replicated",
    "wsrep_replicated_bytes",
    "wsrep_received_bytes",
)

#: A node's receive queue counts as drained at or below this many write sets
#: (under steady writes it is rarely 0); the backfill's Galera throttle and the
#: node-by-node index build both wait for it.
RECV_QUEUE_DRAINED = 100


def add_index_sql(table: str, index: str) -> str:
    """The statement that builds the index on one node: online (concurrent DML goes
    on), never a table copy.  Under ``wsrep_OSU_method=RSU`` it is not replicated:
    each node builds its own."""
    return f"ALTER TABLE `{table}` ADD INDEX `{index}` (host), ALGORITHM=INPLACE, LOCK=NONE"


def node_status(conn: sa.Connection) -> dict[str, str]:
    """The node's ``wsrep_*`` status (missing names absent), plus its ``wsrep_node_name``."""
    listed = ", ".join(f"'{name}'" for name in STATUS)
    rows = conn.exec_driver_sql(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({listed})")
    found = {str(name).lower(): str(value) for name, value in rows}
    row = conn.exec_driver_sql("SHOW GLOBAL VARIABLES LIKE 'wsrep_node_name'").first()
    found["wsrep_node_name"] = str(row[1]) if row else ""
    return found


def cluster_address(conn: sa.Connection) -> str:
    row = conn.exec_driver_sql("SHOW GLOBAL VARIABLES LIKE 'wsrep_cluster_address'").first()
    return str(row[1]) if row else ""


def provider_options(conn: sa.Connection) -> dict[str, str]:
    row = conn.exec_driver_sql("SHOW GLOBAL VARIABLES LIKE 'wsrep_provider_options'").first()
    found = {}
    for part in (str(row[1]) if row else "").split(";"):
        name, _, value = part.partition("=")
        if name.strip():
            found[name.strip()] = value.strip()
    return found


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """``gcache.size`` as Galera writes it (``128M``, ``1G``, ``134217728``) in bytes."""
    match = _SIZE.match(text or "")
    if not match:
        return None
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(float(match.group(1)) * scale[match.group(2).upper()])


def gcache_size(conn: sa.Connection) -> int | None:
    return parse_size(provider_options(conn).get("gcache.size", ""))


def addresses(text: str) -> list[tuple[str, int | None]]:
    """``host:port`` pairs of ``wsrep_incoming_addresses`` (or a ``gcomm://`` address list).

    ``AUTO`` and empty entries (a node that does not accept clients) are left out.
    """
    text = text.strip()
    if text.startswith("gcomm://"):
        text = text[len("gcomm://") :].split("?", 1)[0]
    found: list[tuple[str, int | None]] = []
    for part in text.split(","):
        part = part.strip()
        if not part or part.upper() == "AUTO":
            continue
        if part.startswith("["):  # [ipv6]:port
            host, _, port = part[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = part.rpartition(":") if part.count(":") == 1 else (part, "", "")
        found.append((host, int(port) if port.isdigit() else None))
    return found


def build_on_this_node(conn: sa.Connection, table: str, index: str, lock_wait_timeout: int) -> None:
    """Build the index on this node only (RSU, this session only), then back to TOI.

    While the statement runs the node is desynced (``Donor/Desynced``) and its
    replication paused: it sends no flow control, so the other nodes commit on;
    its own clients' commits wait, write sets for it queue and it applies them
    after.
    """
    conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {lock_wait_timeout}")
    conn.exec_driver_sql("SET SESSION wsrep_OSU_method = 'RSU'")
    conn.exec_driver_sql(
        add_index_sql(table, index)
    )  # failing, the caller closes the session (RSU with it)
    conn.exec_driver_sql("SET SESSION wsrep_OSU_method = 'TOI'")


def table_rows(conn: sa.Connection, table: str) -> int:
    """InnoDB's estimate of ``table``'s row count (no scan)."""
    value = conn.exec_driver_sql(
        "SELECT table_rows FROM information_schema.tables "
        f"WHERE table_schema = DATABASE() AND table_name = '{table}'"
    ).scalar()
    return int(value or 0)


def procedure(database: str, table: str, index: str, lock_wait_timeout: int) -> str:
    """The per-node procedure for a DBA who builds the index by hand (``schema sql --galera-rolling``)."""
    guard = (
        "SELECT COUNT(*) = 0 INTO @ahb_missing FROM information_schema.statistics "
        f"WHERE table_schema = '{database}' AND table_name = '{table}' "
        "AND column_name = 'host' AND seq_in_index = 1;"
    )
    return f"""\
-- Build {index} on {table}(host) node by node (wsrep_OSU_method=RSU).
-- RSU DDL is not replicated: run this on EVERY node, one node at a time, each over a
-- direct connection to that node (never through a proxy or VIP).
--
-- Before each node, on every node:
--   SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment';   -- Synced on every node
--   SHOW GLOBAL STATUS LIKE 'wsrep_cluster_status';        -- Primary
--   SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size';          -- the size you expect
--   SHOW GLOBAL STATUS LIKE 'wsrep_local_recv_queue';      -- near 0 (the previous node caught up)
-- Never start a node while another one is Donor/Desynced or Joining.
-- Move this node's clients away first (HAProxy: drain it, or make another node the
-- active one): RSU pauses its commits for the whole build, and a client commit waiting
-- there holds the table's metadata lock the ALTER needs (it then fails with 1205).
-- gcache.size (wsrep_provider_options) must hold the write sets of one build:
--   bytes/s of wsrep_replicated_bytes + wsrep_received_bytes, times the build time.

USE `{database}`;
SET SESSION lock_wait_timeout = {lock_wait_timeout};
{guard}
SET SESSION wsrep_OSU_method = 'RSU';
SET @ahb_sql = IF(@ahb_missing, '{add_index_sql(table, index)}', 'DO 0');
PREPARE ahb_stmt FROM @ahb_sql;
EXECUTE ahb_stmt;
DEALLOCATE PREPARE ahb_stmt;
SET SESSION wsrep_OSU_method = 'TOI';
-- While it builds this node shows Donor/Desynced; wait until it is Synced again and
-- wsrep_local_recv_queue is near 0 before the next node.
-- A node that restarts mid-build comes back without the index (InnoDB drops the
-- unfinished one): run this block on it again.  A node that later joins by SST gets
-- the donor's copy of the table, index included; by IST it keeps its own.
--
-- After the last node, record the revision (through any node; it finds the index on
-- that node and builds nothing):
--   actionhost-backfill schema upgrade --db mysql+pymysql://USER:PASS@NODE/{database}
"""
