"""``schema upgrade --galera-rolling`` on a real 3-node MariaDB Galera cluster.

The host index built node by node (``wsrep_OSU_method=RSU``) while a Nova-like
writer inserts and updates events through node 2: the writer's longest insert
is measured during the rolling build and, on the same table, during a TOI
build (``--galera-toi``); rolling must stall it far less.  Every node ends
with the index, the version table records the revision once, the nodes hold
the same rows.  A node killed mid-build stops the run (exit 2, what to do);
the same command run again, once the node is back, completes.  A node not
``Synced`` at the start: refused, nothing built.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from actionhost_backfill.errors import ExitCode
from actionhost_backfill.nova.catalog import HOST_INDEX
from actionhost_backfill.nova.models import create_cell_schema
from actionhost_backfill.schema import galera_rolling
from actionhost_backfill.schema.revisions import head_revision
from tests.harness import cli, wait_until
from tests.topology.galera import galera_cluster

ROOT = Path(__file__).resolve().parent.parent
#: Events in the table both builds index: large enough that a TOI build stalls the
#: cluster well above the machine's noise (runbook 05: ~1.8 s per million).
EVENTS = 1_000_000


@pytest.fixture(scope="module")
def cluster():
    base = Path(tempfile.mkdtemp(prefix="ahb-rolling-"))
    os.chmod(base, 0o755)
    nodes = galera_cluster(base / "cluster")
    try:
        yield nodes
    finally:
        for node in reversed(nodes):
            node.remove()
        shutil.rmtree(base, ignore_errors=True)


def _url(node, database: str) -> str:
    return str(sa.engine.make_url(node.url).set(database=database))


def _fill(url: str, rows: int) -> None:
    """``rows`` events (no actions: foreign keys off), doubling in write sets Galera takes."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    create_cell_schema(engine, with_host=True, with_shadow=True)
    insert = "INSERT INTO instance_actions_events (id, event, action_id, start_time, deleted) "
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        conn.exec_driver_sql(insert + "VALUES (1, 'compute_reboot_instance', 1, '2017-01-01', 0)")
    have = 1
    while have < rows:
        step = min(have, rows - have, 100_000)
        with engine.begin() as conn:
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            conn.exec_driver_sql(
                insert + f"SELECT id + {have}, event, action_id, start_time, 0 "
                f"FROM instance_actions_events WHERE id <= {step}"
            )
        have += step
    engine.dispose()


def _index_on(node, database: str) -> bool:
    found = node.sql(  # causal: after the node applied all the cluster committed
        "SET SESSION wsrep_sync_wait = 1; "
        "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = "
        f"'{database}' AND table_name = 'instance_actions_events' AND index_name = '{HOST_INDEX}'"
    )
    return found.strip() != "0"


def _state(node) -> str:
    return node.sql("SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'").split()[1]


def _wait_synced(node) -> None:
    wait_until(lambda: _state(node) == "Synced", f"node on port {node.port} Synced", 300)


def _versions(node, database: str) -> list[str]:
    return node.sql(
        f"SET SESSION wsrep_sync_wait = 1; SELECT version_num FROM {database}_actionhost.actionhost_version"
    ).split()


def _identical(nodes, database: str) -> None:
    query = (
        "SET SESSION wsrep_sync_wait = 1; "
        f"CHECKSUM TABLE {database}.instance_actions_events; "
        f"SELECT COUNT(*), MAX(id) FROM {database}.instance_actions_events"
    )
    states = [node.sql(query).replace(f"{database}.", "") for node in nodes]
    assert states[0] == states[1] == states[2], states


class _NovaWriter:
    """Nova through one node: insert an event, then update it (finish, result), one
    transaction each; records each insert's start and how long it took.  ``move(url)``
    is the proxy sending Nova to another node (HAProxy's active node changing)."""

    def __init__(self, url: str, first_id: int):
        self.url = url
        self.next_id = first_id
        self.inserts: list[tuple[float, float]] = []
        self.updates: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.failed: list[BaseException] = []
        self.moved: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def move(self, url: str) -> None:
        self.moved.append((time.monotonic(), url))
        self.url = url

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                url = self.url
                engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
                    while not self.stop.is_set() and self.url == url:
                        self._one(conn)
                engine.dispose()
        except BaseException as exc:  # reported by the test
            self.failed.append(exc)

    def _one(self, conn) -> None:
        t0 = time.monotonic()
        conn.exec_driver_sql(
            "INSERT INTO instance_actions_events (id, event, action_id, start_time, "
            "host, deleted) VALUES (%s, 'compute_reboot_instance', 1, NOW(), 'cmp-new', 0)",
            (self.next_id,),
        )
        self.inserts.append((t0, time.monotonic() - t0))
        t0 = time.monotonic()
        conn.exec_driver_sql(
            "UPDATE instance_actions_events SET finish_time = NOW(), "
            "result = 'Success' WHERE id = %s",
            (self.next_id,),
        )
        self.updates.append((t0, time.monotonic() - t0))
        self.next_id += 1

    def longest(self, start: float, end: float) -> float:
        """The longest write (insert or update: a stall holds whichever is in flight)."""
        writes = self.inserts + self.updates
        return max((lat for t, lat in writes if start <= t <= end), default=0.0)

    def count(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.inserts if start <= t <= end)


def _timed(*args: str):
    t0 = time.monotonic()
    result = cli(*args)
    return result, t0, time.monotonic()


@pytest.mark.backends("mysql")
def test_a_node_not_synced_at_the_start_is_refused_and_nothing_is_built(cluster, backend):
    nodes = cluster
    database = "nova_unsynced"
    nodes[0].sql(f"CREATE DATABASE {database}")
    _fill(_url(nodes[0], database), 1000)
    nodes[2].sql("SET GLOBAL wsrep_desync = ON")
    try:
        wait_until(lambda: _state(nodes[2]) == "Donor/Desynced", "node 3 desynced")
        refused = cli("schema", "upgrade", "--galera-rolling", "--db", _url(nodes[0], database))
    finally:
        nodes[2].sql("SET GLOBAL wsrep_desync = OFF")
    assert refused.exit_code == ExitCode.INTERVENE, refused.output
    line = refused.stderr.strip()
    assert "\n" not in line
    assert line.startswith("error: refused before the first node: node3 (127.0.0.1:")
    assert "is Donor/Desynced, not Synced" in line
    _wait_synced(nodes[2])
    assert not any(_index_on(node, database) for node in nodes)
    exists = nodes[0].sql(f"SHOW DATABASES LIKE '{database}_actionhost'")
    assert exists.strip() == "", "no state schema, no revision: nothing was applied"


@pytest.mark.backends("mysql")
def test_rolling_build_stalls_nova_far_less_than_toi(cluster, backend, record_property):
    nodes = cluster
    database = "nova_rolling"
    nodes[0].sql(f"CREATE DATABASE {database}")
    url1, url2 = _url(nodes[0], database), _url(nodes[1], database)
    _fill(url1, EVENTS)
    nodes[0].sql(f"ANALYZE TABLE {database}.instance_actions_events")

    # Without a choice: the TOI estimate (~1.8 s here) is over a 1 s threshold: refused.
    refused = cli("schema", "upgrade", "--db", url1, "--galera-max-toi-stall", "1")
    assert refused.exit_code == ExitCode.BAD_INPUT, refused.output
    assert "--galera-rolling" in refused.stderr and "--galera-toi" in refused.stderr
    assert not any(_index_on(node, database) for node in nodes)

    writer = _NovaWriter(url2, EVENTS + 1)
    writer.thread.start()
    try:
        wait_until(lambda: len(writer.inserts) >= 50, "the writer's steady state")
        toi, toi_start, toi_end = _timed("schema", "upgrade", "--galera-toi", "--db", url1)
        assert toi.exit_code == 0, toi.output
        assert all(_index_on(node, database) for node in nodes)
        # Back to no index (the downgrade drops it under TOI: instant), then node by node.
        down = cli("schema", "downgrade", "base", "--db", url1)
        assert down.exit_code == 0, down.output
        assert not any(_index_on(node, database) for node in nodes)
        between = time.monotonic()
        wait_until(lambda: writer.count(between, time.monotonic()) >= 50, "writer resumed")
        said: list[str] = []

        def say(line: str) -> None:  # the operator reading the steps
            said.append(line)
            if "takes no writes" in line:  # told to: the proxy sends Nova to node 1
                writer.move(url1)

        roll_start = time.monotonic()
        rolling = galera_rolling.rolling_upgrade(sa.engine.make_url(url1), say=say)
        roll_end = time.monotonic()
    finally:
        writer.stop.set()
        writer.thread.join(60)
    assert not writer.failed, writer.failed
    toi_stall = writer.longest(toi_start, toi_end)
    rolling_stall = writer.longest(roll_start, roll_end)
    baseline = writer.longest(0, toi_start)
    record_property("events", EVENTS)
    record_property("toi_seconds", round(toi_end - toi_start, 2))
    record_property("toi_longest_write_ms", round(1000 * toi_stall))
    record_property("rolling_seconds", round(roll_end - roll_start, 2))
    record_property("rolling_longest_write_ms", round(1000 * rolling_stall))
    record_property("before_longest_write_ms", round(1000 * baseline))
    assert writer.count(roll_start, roll_end) > 0 and writer.count(toi_start, toi_end) > 0
    record_property("rolling_steps", json.dumps(said))
    assert rolling_stall * 3 < toi_stall, (rolling_stall, toi_stall)

    report = rolling.to_dict()
    # Node 2 (Nova's) last, after its clients moved: RSU pauses its commits while it builds.
    assert [b["node"].split(" ")[0] for b in report["built"]][2] == "node2", said
    assert [url for _, url in writer.moved] == [url1], said
    assert report["already"] == []
    assert report["after"] == head_revision()
    assert all(node["index"] == HOST_INDEX for node in report["nodes"])
    record_property("rolling_builds", json.dumps(report["built"]))
    assert all(_index_on(node, database) for node in nodes)
    assert _versions(nodes[2], database) == [head_revision()]
    ledger = nodes[2].sql(
        f"SELECT revision, kind, object_name FROM {database}_actionhost.schema_changes "
        "WHERE kind = 'index'"
    )
    assert ledger.split("\n")[:-1] == [f"0002_host_index\tindex\t{HOST_INDEX}"]
    _identical(nodes, database)

    status = cli("schema", "status", "--db", url1)
    assert status.exit_code == 0, status.output
    shown = [line for line in status.stdout.splitlines() if line.startswith("galera node:")]
    assert len(shown) == 3
    assert all(
        "Synced, Primary; index actionhost_events_host_idx present, valid" in s for s in shown
    )

    # Run again: every node has it, nothing is built, the revision stays recorded once.
    again = cli("schema", "upgrade", "--galera-rolling", "--db", url1, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["built"] == []
    assert _versions(nodes[0], database) == [head_revision()]


@pytest.mark.backends("mysql")
def test_a_node_killed_mid_build_stops_the_run_and_a_rerun_completes(
    cluster, backend, record_property
):
    nodes = cluster
    database = "nova_killed"
    nodes[0].sql(f"CREATE DATABASE {database}")
    url1 = _url(nodes[0], database)
    _fill(url1, 20_000)
    order = galera_rolling.discover(sa.engine.make_url(url1), [])
    by_port = {node.port: node for node in nodes}
    # The second node to build that is not the bootstrap node (restarted, it must join).
    victim = next(by_port[u.port] for u in order[1:] if u.port != nodes[0].port)
    after = [
        by_port[u.port]
        for u in order[order.index(next(u for u in order if u.port == victim.port)) + 1 :]
    ]
    first = by_port[order[0].port]

    # A reader on the victim holds the table's metadata lock: its ALTER waits, mid-build.
    holder = sa.create_engine(_url(victim, database), poolclass=sa.pool.NullPool)
    hold = holder.connect()
    hold.exec_driver_sql("SELECT id FROM instance_actions_events LIMIT 1").all()
    command = [
        sys.executable,
        "-m",
        "actionhost_backfill",
        "schema",
        "upgrade",
        "--galera-rolling",
        "--db",
        url1,
        "--lock-timeout",
        "120",
        "--sample-seconds",
        "0.5",
    ]
    run = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        waiting = (
            "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE "
            "'ALTER TABLE `instance_actions_events` ADD INDEX%' "
            "AND state = 'Waiting for table metadata lock'"
        )
        wait_until(lambda: victim.sql(waiting).strip() == "1", "the victim's ALTER waiting", 120)
        desynced = _state(victim)
        others = [_state(node) for node in nodes if node is not victim]
        victim.stop(signal.SIGKILL)
        _out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
        hold.invalidate()  # its server was killed: nothing to roll back
        holder.dispose()
    assert desynced == "Donor/Desynced"  # RSU: the building node is desynced...
    assert others == ["Synced", "Synced"]  # ...and only it
    assert run.returncode == ExitCode.INTERVENE, err
    line = err.strip().splitlines()[-1]
    assert "failed while building the index" in line
    assert "run the same command again" in line
    assert _index_on(first, database)
    assert not any(_index_on(node, database) for node in after)
    assert _versions(first, database) == ["0001_host_column"]  # not recorded

    # While the node is down: refused, nothing more built.
    down = cli("schema", "upgrade", "--galera-rolling", "--db", url1)
    assert down.exit_code == ExitCode.INTERVENE, down.output
    assert "refused before the first node" in down.stderr
    assert not any(_index_on(node, database) for node in after)

    victim.start()
    _wait_synced(victim)
    rerun = cli("schema", "upgrade", "--galera-rolling", "--db", url1, "--json")
    assert rerun.exit_code == 0, rerun.output

    report = json.loads(rerun.stdout)
    built = [b["node"] for b in report["built"]]
    record_property("rerun_built", json.dumps(built))
    record_property("rerun_already", json.dumps(report["already"]))
    assert len(built) + len(report["already"]) == 3
    assert first.port in {int(a.rsplit(":", 1)[1].rstrip(")")) for a in report["already"]}
    assert all(_index_on(node, database) for node in nodes)
    assert _versions(nodes[1], database) == [head_revision()]
    _identical(nodes, database)


@pytest.mark.backends("mysql")
def test_the_printed_procedure_builds_the_index_on_every_node(cluster, backend):
    nodes = cluster
    database = "nova_by_hand"
    nodes[0].sql(f"CREATE DATABASE {database}")
    url1 = _url(nodes[0], database)
    _fill(url1, 5000)
    printed = cli("schema", "sql", "--galera-rolling", "--db", url1)
    assert printed.exit_code == 0, printed.output
    for node in nodes:  # as a DBA would, one node after the other
        _wait_synced(node)
        node.sql(printed.stdout)
        assert _index_on(node, database)
    nodes[0].sql(printed.stdout)  # run twice: the guard skips the ALTER
    recorded = cli("schema", "upgrade", "--db", url1)
    assert recorded.exit_code == 0, recorded.output
    assert "already present: nothing to do" in recorded.stdout
    assert _versions(nodes[2], database) == [head_revision()]
    status = cli("schema", "status", "--db", url1)
    assert status.exit_code == 0, status.output

    # One node loses the index (dropped there alone): status says so, exit 4; the
    # rolling upgrade builds it on that node only.
    nodes[2].sql(
        f"SET SESSION wsrep_OSU_method = 'RSU'; "
        f"ALTER TABLE {database}.instance_actions_events DROP INDEX {HOST_INDEX}"
    )
    _wait_synced(nodes[2])
    drift = cli("schema", "status", "--db", url1)
    assert drift.exit_code == ExitCode.DRIFT, drift.output
    assert f"node3 (127.0.0.1:{nodes[2].port}) Synced, Primary; index MISSING" in drift.stdout
    rebuilt = cli("schema", "upgrade", "--galera-rolling", "--db", url1, "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert [b["node"] for b in json.loads(rebuilt.stdout)["built"]] == [
        f"node3 (127.0.0.1:{nodes[2].port})"
    ]
    assert all(_index_on(node, database) for node in nodes)

    # A user with a password, the nodes named with --node: the password is never printed.
    secret = "Rsu-S3cret-pw"
    nodes[0].sql(
        f"CREATE USER 'dba'@'127.0.0.1' IDENTIFIED BY '{secret}'; "
        "GRANT ALL PRIVILEGES ON *.* TO 'dba'@'127.0.0.1'"
    )
    urls = [
        sa.engine.make_url(_url(node, database))
        .set(username="dba", password=secret)
        .render_as_string(hide_password=False)
        for node in nodes
    ]
    named = [arg for url in urls for arg in ("--node", url)]
    again = cli("schema", "upgrade", "--galera-rolling", "--db", urls[0], *named)
    assert again.exit_code == 0, again.output
    shown = cli("schema", "status", "--db", urls[0], *named, "--json")
    assert shown.exit_code == 0, shown.output
    assert len(json.loads(shown.stdout)["galera_nodes"]) == 3
    for output in (again.output, again.stderr, shown.output):
        assert secret not in output
    assert "dba:***@127.0.0.1" in again.stdout
