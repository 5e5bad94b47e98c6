"""A real 3-node MariaDB Galera cluster: the backfill through node 1 while Nova records
hosts through node 2; batches within ``wsrep_max_ws_rows``; real flow control.

Node 2 records a host on a row of the backfill's first batch while that batch
is open on node 1: node 2's write set certifies first, node 1's batch is
aborted (a certification conflict, error 1213), rolled back and retried; the
retried batch leaves Nova's host alone.  A second runner on node 3 is refused
while the first holds the lease.  All three nodes end with the same hosts.

With ``wsrep_max_ws_rows`` set low on every node, the cluster refuses any
transaction writing more rows (error 1180): the backfill as shipped caps its
batches and completes, the same backfill without the cap is refused.  The same
with ``wsrep_max_ws_size`` (error 1105) and events carrying the longest traceback
Nova stores: each batch's write set is measured on node 1.

Node 3 stalls its applier (``FLUSH TABLES WITH READ LOCK``) while it takes
part in flow control: the cluster really pauses, and the backfill's Galera
throttle holds the run until the lock is released.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.dialects import mysql as mysql_dialect
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.engine.fill import PlanFill
from actionhost_backfill.engine.throttling import ThrottleOptions
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.history import HistoryBuilder
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from tests import scenarios
from tests.harness import Cell, cli, wait_until
from tests.logwatch import when_logged
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


# ------------------------------------------------------------------ shared

#: 1,005 live events, 742 of them NULL: enough batches to cap and to throttle.
HISTORY = SimulationOptions(seed=21, events=1000, hosts=8, days=200)
FLOW = (
    "wsrep_flow_control_active",
    "wsrep_flow_control_paused_ns",
    "wsrep_flow_control_recv",
    "wsrep_flow_control_sent",
    "wsrep_local_state_comment",
)


def _simulated_cell(node, database: str) -> Cell:
    """A simulated cell in ``database`` through ``node``, schema upgraded (before any limit)."""
    node.sql(f"CREATE DATABASE {database}")
    url = _url(node, database)
    simulate(parse_url(url), HISTORY)
    revisions.upgrade(parse_url(url))
    return Cell(url)


def _node_states(nodes, database: str) -> list[str]:
    """Each node's hosts (live and shadow) and checksums of the events and the audit,
    read causally (``wsrep_sync_wait``: the node first applies all the cluster committed)."""
    query = (
        "SET SESSION wsrep_sync_wait = 1; "
        f"SELECT id, host FROM {database}.instance_actions_events ORDER BY id; "
        f"SELECT id, host FROM {database}.shadow_instance_actions_events ORDER BY id; "
        f"CHECKSUM TABLE {database}.instance_actions_events, {database}_actionhost.audit"
    )
    return [node.sql(query) for node in nodes]


class _Status:
    """``SHOW GLOBAL STATUS`` of one node, over one connection kept open."""

    def __init__(self, node):
        self.engine = sa.create_engine(
            _url(node, "mysql"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        self.conn = self.engine.connect()

    def __call__(self, *names: str) -> dict[str, str]:
        listed = ", ".join(f"'{name}'" for name in names)
        rows = self.conn.exec_driver_sql(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({listed})")
        return {name: value for name, value in rows}

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


# ------------------------------------------------------------------ wsrep_max_ws_rows


@contextlib.contextmanager
def _on_every_node(nodes, variable: str):
    """``limit(value)`` sets the global ``variable`` on every node; the previous values come
    back on exit, whatever happened meanwhile."""
    before = [node.sql(f"SELECT @@GLOBAL.{variable}").strip() for node in nodes]

    def limit(value: int) -> None:
        for node in nodes:
            node.sql(f"SET GLOBAL {variable} = {value}")

    try:
        yield limit
    finally:
        for node, value in zip(nodes, before, strict=True):
            node.sql(f"SET GLOBAL {variable} = {value}")


def _refused_without_the_cap(cell: Cell, monkeypatch, error: str) -> None:
    """The backfill with galera_cap patched out: exit 2 with the server's error, nothing written."""
    hosts = "SELECT id, host FROM instance_actions_events ORDER BY id"
    before = cell.rows(hosts)
    monkeypatch.setattr(mysql_dialect, "galera_cap", lambda variables: None)
    uncapped = cli("backfill", "--db", cell.url, "--no-progress", "--json")
    monkeypatch.undo()
    assert uncapped.exit_code == ExitCode.INTERVENE, uncapped.output
    assert error in uncapped.stderr
    assert cell.rows(hosts) == before


def _capped_backfill(cell: Cell, largest: int, null: int) -> dict:
    """The backfill as shipped: it logs the Galera cap, batches of ``largest`` events
    examine all ``null`` events, exit 0; returns its ``--json`` report."""
    with when_logged("actionhost_backfill.engine.applier", "Galera node:", lambda _m: None) as cap:
        capped = cli("backfill", "--db", cell.url, "--no-progress", "--json")
    assert capped.exit_code == 0, capped.output
    report = json.loads(capped.stdout)
    assert report["outcome"] == "complete" and report["remaining"] == 0
    assert cap == [f"Galera node: batches capped at {largest} events (write-set limits)"]
    assert report["examined"] == null
    assert report["batches"] == math.ceil(null / largest)
    return report


@pytest.fixture
def ws_row_limit(cluster):
    """``limit(rows)``: ``wsrep_max_ws_rows`` on every node, restored after the test."""
    with _on_every_node(cluster[0], "wsrep_max_ws_rows") as limit:
        yield limit


@pytest.mark.backends("mysql")
@pytest.mark.parametrize(
    "max_ws_rows",
    [
        # galera_cap: 200 // 8 = 25 events a batch, at most 25 + 25 rows plus counters
        # and checkpoint; the sizer's first batch (1,000 events) would write over 1,000.
        200,
        # 2 events a batch: below the sizer's floor of 10, which must not override the cap.
        16,
    ],
)
def test_batches_stay_within_wsrep_max_ws_rows(
    cluster, backend, max_ws_rows, ws_row_limit, monkeypatch, record_property
):
    nodes, _ = cluster
    database = f"nova_wsrows_{max_ws_rows}"
    cell = _simulated_cell(nodes[0], database)
    ws_row_limit(max_ws_rows)
    audit = f"{cell.location.schema}.audit"
    hosts = "SELECT id, host FROM instance_actions_events ORDER BY id"
    before = cell.rows(hosts)
    null = sum(1 for _, host in before if host is None)
    assert null > max_ws_rows  # one uncapped batch of the default sizer would not fit

    # The cluster counts every row a transaction writes: one more than the limit is refused.
    engine = sa.create_engine(cell.url, poolclass=sa.pool.NullPool)
    probe = (
        "UPDATE instance_actions_events SET host = 'probe' WHERE host IS NULL ORDER BY id LIMIT "
    )
    with engine.connect() as conn:
        assert conn.exec_driver_sql(probe + str(max_ws_rows)).rowcount == max_ws_rows
        conn.rollback()
        with pytest.raises(sa.exc.DBAPIError) as refused:
            conn.exec_driver_sql(probe + str(max_ws_rows + 1))
        conn.rollback()
    engine.dispose()
    assert refused.value.orig.args == (1180, "wsrep_max_ws_rows exceeded")
    record_property("server_error", f"{refused.value.orig.args}")

    # The same backfill without the cap: its first batch is refused, nothing is written.
    _refused_without_the_cap(cell, monkeypatch, "(1180, 'wsrep_max_ws_rows exceeded')")

    # As shipped: batches capped at a quarter of the limit, two rows per event; exit 0.
    largest = max_ws_rows // (4 * mysql_dialect.ROWS_PER_EVENT)
    report = _capped_backfill(cell, largest, null)
    # What each committed batch wrote: the hosts it filled, one audit row per event, one
    # counter row per (outcome, rule) and the checkpoint and run rows.
    batches: dict[int, dict] = {}
    for batch, outcome, _rule, rows in cell.rows(
        f"SELECT batch, outcome, rule, COUNT(*) FROM {audit} WHERE run_id = :run "
        "GROUP BY batch, outcome, rule",
        {"run": report["run_id"]},
    ):
        seen = batches.setdefault(batch, {"events": 0, "written": 2})
        seen["events"] += rows
        seen["written"] += rows + (rows if outcome == "filled" else 0) + 1
    assert len(batches) == report["batches"]
    assert max(b["events"] for b in batches.values()) == largest
    most = max(b["written"] for b in batches.values())
    assert most <= max_ws_rows
    record_property("cap_events", largest)
    record_property("batches", report["batches"])
    record_property("most_rows_in_a_batch", most)
    states = _node_states(nodes, database)
    assert states[0] == states[1] == states[2]
    assert cell.rows(hosts) != before

    # Revert writes through the same applier and cap: a host and an audit mark per event.
    undone = cli("revert", "--run", str(report["run_id"]), "--db", cell.url, "--no-progress")
    assert undone.exit_code == 0, undone.output
    assert cell.rows(hosts) == before
    states = _node_states(nodes, database)
    assert states[0] == states[1] == states[2]
    cell.dispose()


# ------------------------------------------------------------------ wsrep_max_ws_size

#: The byte limit set on every node: 2 MiB.  galera_cap: 2,097,152 // (4 * 132,000) = 3 events.
MAX_WS_SIZE = 2 << 20
#: The longest traceback Nova can store (``traceback`` is TEXT).
TRACEBACK_BYTES = 65_535
#: NULL-host events given such a traceback: the first ones in id order, so that whole
#: batches hold nothing else (Nova writes a traceback only when an event fails).
LONG_TRACEBACKS = 40
WRITE_SETS = (
    "wsrep_replicated",
    "wsrep_replicated_bytes",
    "wsrep_repl_data_bytes",
    "wsrep_repl_keys_bytes",
)


@pytest.fixture
def ws_size_limit(cluster):
    """``limit(bytes)``: ``wsrep_max_ws_size`` on every node, restored after the test."""
    with _on_every_node(cluster[0], "wsrep_max_ws_size") as limit:
        yield limit


def _delta(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    return {name: int(after[name]) - int(before[name]) for name in before}


@pytest.mark.backends("mysql")
def test_batches_stay_within_wsrep_max_ws_size(
    cluster, backend, ws_size_limit, monkeypatch, record_property
):
    nodes, _ = cluster
    database = "nova_wssize"
    cell = _simulated_cell(nodes[0], database)
    engine = sa.create_engine(cell.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:  # one event a statement: each write set stays small
        for (event,) in conn.exec_driver_sql(
            f"SELECT id FROM instance_actions_events WHERE host IS NULL ORDER BY id "
            f"LIMIT {LONG_TRACEBACKS}"
        ).all():
            conn.exec_driver_sql(
                "UPDATE instance_actions_events SET traceback = REPEAT('x', %s) WHERE id = %s",
                (TRACEBACK_BYTES, event),
            )
    # Galera replicates the row events: with the default FULL row image an UPDATE carries
    # the whole row twice (before and after), the traceback included.
    assert nodes[0].sql("SELECT @@GLOBAL.binlog_row_image").strip() == "FULL"
    ws_size_limit(1)  # below the server's minimum: raised to it
    minimum = {node.sql("SELECT @@GLOBAL.wsrep_max_ws_size").strip() for node in nodes}
    assert minimum == {"1024"}
    ws_size_limit(MAX_WS_SIZE)
    hosts = "SELECT id, host FROM instance_actions_events ORDER BY id"
    before = cell.rows(hosts)
    null = sum(1 for _, host in before if host is None)
    node1 = _Status(nodes[0])

    def write_set(conn: sa.Connection, statement: str) -> int:
        """Bytes of the one write set ``statement`` (autocommit) replicated from node 1."""
        start = node1(*WRITE_SETS)
        conn.exec_driver_sql(statement)
        done = _delta(start, node1(*WRITE_SETS))
        assert done["wsrep_replicated"] == 1
        return done["wsrep_replicated_bytes"]

    # The cluster counts the bytes of the write set: the most long-traceback rows that fit
    # pass, one more is refused at commit.
    fill = "UPDATE instance_actions_events SET host = 'probe' WHERE host IS NULL ORDER BY id LIMIT "
    undo = "UPDATE instance_actions_events SET host = NULL WHERE host = 'probe'"
    with engine.connect() as conn:
        one = write_set(conn, fill + "1")
        write_set(conn, undo)
        conn.exec_driver_sql("SET SESSION binlog_row_image = MINIMAL")
        one_minimal = write_set(conn, fill + "1")
        write_set(conn, undo)
        conn.exec_driver_sql("SET SESSION binlog_row_image = FULL")
        rows = MAX_WS_SIZE // one
        fits = write_set(conn, fill + str(rows))
        write_set(conn, undo)
        with pytest.raises(sa.exc.DBAPIError) as refused:
            conn.exec_driver_sql(fill + str(rows + 1))
    engine.dispose()
    assert 2 * TRACEBACK_BYTES < one < 2 * TRACEBACK_BYTES + 1024  # two images of the row
    assert one_minimal < 1024  # the primary key and the new host only
    assert rows > 1 and fits <= MAX_WS_SIZE < fits + one
    assert refused.value.orig.args == (1105, "Maximum writeset size exceeded")
    assert cell.rows(hosts) == before
    record_property("server_error", f"{refused.value.orig.args}")
    record_property("one_row_write_set_full", one)
    record_property("one_row_write_set_minimal", one_minimal)
    record_property("rows_that_fit", rows)
    record_property("write_set_that_fits", fits)

    # The same backfill without the cap: its first batch (1,000 events) is refused.
    _refused_without_the_cap(cell, monkeypatch, "(1105, 'Maximum writeset size exceeded')")

    # As shipped: node 1's write sets between the starts of two batches are the first
    # batch's (and, after the last, the run's closing writes).
    marks: list[dict[str, str]] = []
    original = PlanFill.apply

    def apply_measured(self, conn, after, upto, batch):
        marks.append(node1(*WRITE_SETS))  # the previous batch has committed
        return original(self, conn, after, upto, batch)

    monkeypatch.setattr(PlanFill, "apply", apply_measured)
    largest = MAX_WS_SIZE // (4 * mysql_dialect.BYTES_PER_EVENT)
    report = _capped_backfill(cell, largest, null)
    monkeypatch.undo()
    marks.append(node1(*WRITE_SETS))
    node1.close()
    assert report["batches"] == len(marks) - 1
    # A lease heartbeat (every 20 s) may share an interval: such intervals are not counted.
    batches = [_delta(a, b) for a, b in itertools.pairwise(marks)]
    alone = [b for b in batches[:-1] if b["wsrep_replicated"] == 1]
    assert len(alone) >= len(batches) - 3
    most = max(alone, key=lambda b: b["wsrep_replicated_bytes"])
    # Measured on a batch of events that all carried the longest traceback, all filled...
    assert most["wsrep_replicated_bytes"] >= largest * 2 * TRACEBACK_BYTES
    # ...and it keeps to the quarter of the limit galera_cap promises.
    assert most["wsrep_replicated_bytes"] <= MAX_WS_SIZE // 4
    record_property("cap_events", largest)
    record_property("batches", report["batches"])
    record_property("largest_write_set", json.dumps(most))
    record_property("smallest_write_set", min(b["wsrep_replicated_bytes"] for b in alone))
    states = _node_states(nodes, database)
    assert states[0] == states[1] == states[2]
    assert cell.rows(hosts) != before
    cell.dispose()


# ------------------------------------------------------------------ flow control

#: How long the test keeps the cluster paused (nanoseconds of node 1's
#: wsrep_flow_control_paused_ns) before it releases node 3: three throttle polls.
HOLD_NS = 1_500_000_000


class _ApplierStall:
    """``FLUSH TABLES WITH READ LOCK`` on one node.  MariaDB then desyncs the node and
    pauses its applier: write sets queue up on it.  A desynced node sends no flow
    control unless ``gcs.sync_donor=YES``; with it, and ``gcs.fc_limit=1`` (a queue
    over round(1 * sqrt(3)) = 2 write sets), the node stops the whole cluster."""

    def __init__(self, node):
        self.node = node
        self.engine = sa.create_engine(
            _url(node, "mysql"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        self.conn: sa.Connection | None = None
        options = node.sql("SELECT @@GLOBAL.wsrep_provider_options")
        found = {}
        for part in options.split(";"):
            name, _, value = part.partition("=")
            found[name.strip()] = value.strip()
        self.before: str | None = (
            f"gcs.fc_limit={found['gcs.fc_limit']};gcs.sync_donor={found['gcs.sync_donor']}"
        )

    def lock(self) -> None:
        self.node.sql("SET GLOBAL wsrep_provider_options = 'gcs.fc_limit=1;gcs.sync_donor=YES'")
        self.conn = self.engine.connect()
        self.conn.exec_driver_sql("FLUSH TABLES WITH READ LOCK")

    def unlock(self) -> None:
        if self.conn is not None:
            self.conn.exec_driver_sql("UNLOCK TABLES")
            self.conn.close()
            self.conn = None

    def restore(self) -> None:
        """Back to the node's own flow control, once it is in sync again."""
        self.unlock()
        if self.before is None:
            return
        status = _Status(self.node)
        try:
            wait_until(
                lambda: (
                    status("wsrep_local_state_comment")["wsrep_local_state_comment"] == "Synced"
                ),
                "node 3 back in sync",
            )
        finally:
            status.close()
        self.node.sql(f"SET GLOBAL wsrep_provider_options = '{self.before}'")
        self.before = None
        self.engine.dispose()


@pytest.fixture
def stall_node3(cluster):
    nodes, _ = cluster
    stall = _ApplierStall(nodes[2])
    yield stall
    stall.restore()


class _Bar:
    """The run's progress output: ``on_batch(n)`` after each committed batch."""

    def __init__(self, on_batch):
        self.on_batch = on_batch
        self.batches = 0
        self.shown: list[str] = []

    def update(self, n: int) -> None:
        self.batches += 1
        self.on_batch(self.batches)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.shown.append(s)

    def close(self) -> None:
        pass


@pytest.mark.backends("mysql")
def test_real_flow_control_pauses_the_backfill_until_node3_resumes(
    cluster, backend, stall_node3, record_property
):
    nodes, _ = cluster
    cell = _simulated_cell(nodes[0], "nova_fc")
    nodes[0].sql(
        "CREATE TABLE nova_fc.fc_writes (id INT PRIMARY KEY, n INT); "
        "INSERT INTO nova_fc.fc_writes VALUES (1, 0)"
    )
    node1, node3 = _Status(nodes[0]), _Status(nodes[2])
    checkpoints = f"SELECT SUM(batches) FROM {cell.location.schema}.checkpoints"
    before = {1: node1(*FLOW), 3: node3(*FLOW)}
    facts: dict = {}
    failures: list[BaseException] = []
    throttled = threading.Event()
    logs = contextlib.ExitStack()
    threads: list[threading.Thread] = []

    def fc_active() -> bool:
        return node1("wsrep_flow_control_active")["wsrep_flow_control_active"] == "true"

    def paused_ns() -> int:
        return int(node1("wsrep_flow_control_paused_ns")["wsrep_flow_control_paused_ns"])

    def writes_through_node2(stop: threading.Event) -> None:
        # Small commits, as any client: once node 3's queue is over its limit it
        # sends FC_STOP, and the commit in flight waits like every other.
        engine = sa.create_engine(_url(nodes[1], "nova_fc"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            while not stop.is_set():
                conn.exec_driver_sql("UPDATE fc_writes SET n = n + 1 WHERE id = 1")
        engine.dispose()

    def on_throttled(_message: str) -> None:  # in the runner, at its throttle's look
        facts["logged_at"] = time.monotonic()
        facts["fc_active_when_logged"] = fc_active()
        facts["paused_ns_when_logged"] = paused_ns()
        facts["batches_when_logged"] = cell.scalar(checkpoints)
        throttled.set()

    def release_node3() -> None:
        try:
            if not throttled.wait(30):
                facts["never_throttled"] = True
                return
            # Keep the cluster paused for three throttle polls, measured by the cluster.
            wait_until(
                lambda: paused_ns() - facts["paused_ns_when_logged"] >= HOLD_NS,
                "the cluster paused by flow control for 1.5 s",
            )
            facts["batches_before_release"] = cell.scalar(checkpoints)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
        finally:
            stall_node3.unlock()
            facts["released_at"] = time.monotonic()
        try:
            wait_until(lambda: not fc_active(), "flow control over after the release")
            facts["fc_over_at"] = time.monotonic()
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    def between_batches(done: int) -> None:  # in the runner, after a committed batch
        if done != 2:
            return
        stall_node3.lock()
        stop = threading.Event()
        writer = threading.Thread(target=writes_through_node2, args=(stop,), daemon=True)
        writer.start()
        try:
            wait_until(fc_active, "node 3 stopping the cluster (flow control)")
        finally:
            stop.set()
            threads.append(writer)
        facts["batches_at_fc"] = cell.scalar(checkpoints)
        facts["logged"] = logs.enter_context(
            when_logged("actionhost_backfill.engine.throttling", "throttled: ", on_throttled)
        )
        helper = threading.Thread(target=release_node3, daemon=True)
        helper.start()
        threads.append(helper)

    bars: dict[str, _Bar] = {}

    def progress(total, description):
        # "run N": the applier's bar, one update per committed batch; "plan ...": the planner's.
        bars[description] = _Bar(
            between_batches if description.startswith("run ") else lambda _n: None
        )
        return bars[description]

    try:
        with logs:
            result = run_backfill(
                parse_url(cell.url),
                BackfillOptions(batch_size=50, throttle=ThrottleOptions(max_lag=60)),
                progress=progress,
            )
    finally:
        stall_node3.unlock()
        for thread in threads:
            thread.join(60)
    after = {1: node1(*FLOW), 3: node3(*FLOW)}
    node1.close()
    node3.close()

    assert not failures, failures
    assert "never_throttled" not in facts, "the Galera throttle never paused the run"
    # Real flow control: node 3 sent FC_STOP, node 1 received it and was paused.
    sent = int(after[3]["wsrep_flow_control_sent"]) - int(before[3]["wsrep_flow_control_sent"])
    received = int(after[1]["wsrep_flow_control_recv"]) - int(before[1]["wsrep_flow_control_recv"])
    paused = (
        int(after[1]["wsrep_flow_control_paused_ns"])
        - int(before[1]["wsrep_flow_control_paused_ns"])
    ) / 1e9
    assert sent >= 1 and received >= 1 and paused >= HOLD_NS / 1e9
    # The throttle saw it between batches, while the cluster was paused, and held the run:
    # no batch committed from the moment flow control began until node 3 was released.
    assert (
        facts["logged"][0]
        == "throttled: Galera flow control paused the cluster since the last batch"
    )
    assert facts["fc_active_when_logged"]
    assert facts["batches_at_fc"] == facts["batches_when_logged"] == facts["batches_before_release"]
    (run_bar,) = [bar for name, bar in bars.items() if name.startswith("run ")]
    assert run_bar.shown[:2] == [facts["logged"][0], ""]  # the progress output said why
    # The run's own report (what --json prints): the pause, by the Galera check only, at
    # least as long as the flow control the test saw; then the run resumed and completed.
    report = result.to_dict()
    throttle = report["throttled"]
    assert set(throttle["by_check"]) == {"galera flow control"}
    assert throttle["pauses"] >= 1
    assert throttle["seconds"] >= facts["fc_over_at"] - facts["logged_at"]
    assert report["outcome"] == "complete" and report["remaining"] == 0
    assert report["batches"] > facts["batches_before_release"]
    record_property("fc_stop_sent_by_node3", sent)
    record_property("fc_received_by_node1", received)
    record_property("cluster_paused_seconds", round(paused, 3))
    record_property("throttled", json.dumps(throttle))
    record_property(
        "flow_control_after_release_seconds", round(facts["fc_over_at"] - facts["released_at"], 3)
    )
    stall_node3.restore()  # node 3 in sync again, its own flow-control settings back
    states = _node_states(nodes, "nova_fc")
    assert states[0] == states[1] == states[2]
    cell.dispose()
