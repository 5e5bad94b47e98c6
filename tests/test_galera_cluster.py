"""A real 3-node MariaDB Galera cluster: the backfill through node 1 while Nova records
hosts through node 2.

Node 2 records a host on a row of the backfill's first batch while that batch
is open on node 1: node 2's write set certifies first, node 1's batch is
aborted (a certification conflict, error 1213), rolled back and retried; the
retried batch leaves Nova's host alone.  A second runner on node 3 is refused
while the first holds the lease.  All three nodes end with the same hosts.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.engine.fill import PlanFill
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.history import HistoryBuilder
from tests import scenarios
from tests.harness import Cell, cli
from tests.topology.galera import galera_cluster


@pytest.fixture(scope="module")
def cluster():
    base = Path(tempfile.mkdtemp(prefix="ahb-galera-"))
    os.chmod(base, 0o755)
    started = time.monotonic()
    nodes = galera_cluster(base / "cluster")
    up = time.monotonic() - started
    try:
        yield nodes, up
    finally:
        for node in reversed(nodes):
            node.remove()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def _url(node, database: str = "nova") -> str:
    return str(sa.engine.make_url(node.url).set(database=database))


@pytest.mark.backends("mysql")
def test_backfill_on_node1_while_nova_writes_on_node2(
    cluster, backend, monkeypatch, record_property
):
    nodes, up = cluster
    record_property("galera_up_seconds", round(up, 1))
    assert nodes[0].sql("SHOW STATUS LIKE 'wsrep_cluster_size'").split()[1] == "3"
    nodes[0].sql("CREATE DATABASE nova")
    cell = Cell(_url(nodes[0]))
    cell.build()
    builder = HistoryBuilder()
    scenarios.build_all(builder)
    with cell.engine().begin() as conn:
        builder.write(conn)
    revisions.upgrade(parse_url(cell.url))

    node2 = sa.create_engine(_url(nodes[1]), isolation_level="AUTOCOMMIT")
    seen: dict = {}
    original = PlanFill.apply

    def apply_while_nova_writes(self, conn, after, upto, batch):
        applied = original(self, conn, after, upto, batch)
        if "row" not in seen:
            a = self.st.audit
            seen["row"] = conn.execute(
                sa.select(sa.func.min(a.c.event_id)).where(
                    a.c.run_id == self.run_id, a.c.outcome == "filled", a.c.event_id > after
                )
            ).scalar()
            # A second runner through node 3 while this one holds the lease.
            seen["second"] = cli("backfill", "--db", _url(nodes[2]), "--no-progress")
            with node2.connect() as other:  # Nova records a host through node 2
                other.exec_driver_sql("SET SESSION wsrep_sync_wait = 1")
                other.exec_driver_sql(
                    "UPDATE instance_actions_events SET host = 'nova-recorded' WHERE id = %s",
                    (seen["row"],),
                )
        return applied

    monkeypatch.setattr(PlanFill, "apply", apply_while_nova_writes)
    result = run_backfill(parse_url(cell.url), BackfillOptions(batch_size=50))
    monkeypatch.undo()
    node2.dispose()

    assert seen["second"].exit_code == ExitCode.BUSY, seen["second"].output
    assert result.outcome == "complete"
    assert result.retries >= 1, "node 1's batch lost certification and was retried"
    record_property("certification_retries", result.retries)
    assert result.skipped >= 1
    row = seen["row"]
    audit = f"{cell.location.schema}.audit"
    assert cell.scalar(f"SELECT outcome FROM {audit} WHERE event_id = :i", {"i": row}) == "skipped"
    query = "SET SESSION wsrep_sync_wait = 1; SELECT id, host FROM nova.instance_actions_events ORDER BY id"
    states = [node.sql(query) for node in nodes]
    assert states[0] == states[1] == states[2]
    assert f"{row}\tnova-recorded" in states[2]
    cell.dispose()
