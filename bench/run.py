"""Benchmark the backfill against the database's own limit and a naive loop, side by side.

One command, per backend and per size, in the same run on the same data:

* **toolkit**: ``actionhost-backfill backfill --include-shadow --json`` with default
  settings, end to end, in a child process (its peak RSS and CPU time read from
  ``wait4``: wall time on a shared machine swings more between identical runs
  than the CPU time the runner spends);
* **limit**: one set-based ``UPDATE`` writing the same hosts to the same rows from a
  precomputed id -> host table (no batching, no resumability, no inference);
* **naive**: a per-row loop on a sample (select the event, look up its instance's
  migrations and host, update it, commit), reported per row.

On MySQL/MariaDB the rows and bytes the server sent the toolkit (global
``Rows_sent``/``Bytes_sent`` around its run) are reported per NULL event: what
crossed the client, planning reads and everything else.

Between measurements the written rows are set back to NULL, so each starts from
the same table.  On PostgreSQL the loaded history is vacuumed first and after
every such reset, as a live cell's tables are (:func:`settle`).  Prints a
Markdown table (and ``--json``) for docs/benchmarks.md.

    python bench/run.py --events 1000000 --backend postgresql --backend mysql
    python bench/run.py --events 2000 --backend sqlite --naive-sample 50   # smoke
    python bench/run.py --backend mysql --mariadb-server cell --events 10000000

The machine's servers run with their packages' defaults (MariaDB: a 128 MiB
buffer pool).  ``--mariadb-server cell`` measures MariaDB on a throwaway server
of its own instead (own port, datadir and tmpdir under ``--workdir``) configured
as a production cell's database is: :data:`CELL_MARIADB`.  Each result names
the settings of the server it was measured on (``server``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actionhost_backfill.db import create_engine, parse_url  # noqa: E402
from actionhost_backfill.schema import revisions  # noqa: E402
from actionhost_backfill.sim.simulate import SimulationOptions, simulate  # noqa: E402
from actionhost_backfill.state.location import resolve_state_location  # noqa: E402
from tests.topology.servers import MariaDB  # noqa: E402

SERVERS = {
    "postgresql": os.environ.get(
        "ACTIONHOST_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    ),
    "mysql": os.environ.get(
        "ACTIONHOST_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql"
    ),
}


#: ``--mariadb-server cell``: the InnoDB settings of a production cell's database
#: server.  OpenStack-Ansible's galera_server role sizes the buffer pool at 4096M
#: and the redo log at 1024M by default (Kolla-Ansible and hand-built clusters
#: land in the same range); durability stays MariaDB's default (a flush per commit).
CELL_MARIADB = (
    "--innodb-buffer-pool-size=4G",
    "--innodb-log-file-size=1G",
    "--innodb-flush-log-at-trx-commit=1",
    "--max-connections=1000",
)

#: What each result reports of the server it ran on.
SERVER_SETTINGS = {
    "postgresql": ("shared_buffers", "work_mem", "effective_cache_size", "synchronous_commit"),
    "mysql": (
        "version",
        "innodb_buffer_pool_size",
        "innodb_log_file_size",
        "innodb_flush_log_at_trx_commit",
        "tmp_table_size",
    ),
}


def server_settings(url: str) -> dict[str, str]:
    """The settings of ``url``'s server that bear on the figures (:data:`SERVER_SETTINGS`)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                return {
                    name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                    for name in SERVER_SETTINGS["postgresql"]
                } | {"version": conn.exec_driver_sql("SHOW server_version").scalar()}
            if conn.dialect.name == "mysql":
                found = {}
                for name in SERVER_SETTINGS["mysql"]:
                    value = conn.exec_driver_sql(f"SELECT @@{name}").scalar()
                    if isinstance(value, int) and value >= 1 << 20:
                        value = f"{value >> 20}M"
                    found[name] = str(value)
                return found
            return {"version": conn.exec_driver_sql("SELECT sqlite_version()").scalar()}
    finally:
        engine.dispose()


def start_cell_mariadb(workdir: Path) -> MariaDB:
    """A throwaway MariaDB configured as a production cell's (:data:`CELL_MARIADB`)."""
    server = MariaDB(workdir / f"ahbench-mariadb-{uuid.uuid4().hex[:8]}", extra=list(CELL_MARIADB))
    server.install()
    server.start()
    return server


def fresh_database(backend: str, workdir: Path) -> tuple[str, callable]:
    """A new empty database; returns its URL and a function that drops it."""
    if backend == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.sqlite"

        def drop() -> None:
            for p in workdir.glob(f"{path.stem}*"):
                p.unlink()

        return f"sqlite:///{path}", drop
    name = f"ahbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(SERVERS[backend], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.engine.make_url(SERVERS[backend]).set(database=name)

    def drop() -> None:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}_actionhost")
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


#: Runs a command and prints, as the last line of stderr: its peak RSS (KiB) and
#: CPU seconds (the wrapper's only child is the command, so RUSAGE_CHILDREN is
#: exactly the command's and its descendants'), then the peak of the summed RSS
#: of the command and every process under it (the planners: ``wait4`` reports
#: only the largest process), sampled every 0.1 s from /proc, the peak of their
#: summed PSS (shared pages divided among the processes that map them, so the
#: interpreter and libraries the processes share count once), and each
#: process's own peak (VmHWM, by name), as JSON.
_USAGE_WRAPPER = """
import json, os, resource, subprocess, sys, time

def tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found

def status(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\\0")
    except OSError:
        return None
    if "VmHWM" not in fields:
        return None  # exited, not yet reaped: no memory, and no command line to name it by
    line = b" ".join(argv)
    name = "resource_tracker" if b"resource_tracker" in line else "planner" if b"multiprocessing" in line else "runner"
    kib = lambda key: int(fields.get(key, "0 kB").split()[0])
    return name, kib("VmRSS"), kib("VmHWM")

def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    except OSError:
        return 0

child = subprocess.Popen(sys.argv[1:])
peak_sum, peak_pss, peaks = 0, 0, {}
while child.poll() is None:
    total = shared_once = 0
    for pid in tree(child.pid):
        seen = status(pid)
        if seen is not None:
            name, rss, hwm = seen
            total += rss
            shared_once += pss(pid)
            peaks[pid] = (name, hwm)  # VmHWM is the process's peak so far
    peak_sum, peak_pss = max(peak_sum, total), max(peak_pss, shared_once)
    time.sleep(0.1)
used = resource.getrusage(resource.RUSAGE_CHILDREN)
each = sorted(((name, kib) for name, kib in peaks.values()), key=lambda p: (p[0], -p[1]))
print(used.ru_maxrss, used.ru_utime + used.ru_stime, peak_sum, peak_pss, json.dumps(each, separators=(",", ":")), file=sys.stderr)
sys.exit(child.returncode)
"""


def client_traffic(url: str) -> dict[str, int] | None:
    """MySQL/MariaDB: rows and bytes the server has sent to clients so far (global
    counters; the benchmark is the server's only client).  None elsewhere."""
    if not url.startswith("mysql"):
        return None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            status = dict(
                conn.exec_driver_sql(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN ('Rows_sent', 'Bytes_sent')"
                ).all()
            )
    finally:
        engine.dispose()
    return {"rows": int(status.get("Rows_sent", 0)), "bytes": int(status.get("Bytes_sent", 0))}


def run_toolkit(url: str, checkout: Path = ROOT, extra: tuple[str, ...] = ()) -> dict:
    """The CLI as an operator runs it (from ``checkout``, with ``extra`` options); returns
    its JSON, its peak RSS and (MySQL/MariaDB) the rows and bytes the server sent it."""
    command = [sys.executable, "-m", "actionhost_backfill", "backfill", "--db", url]
    command += ["--include-shadow", "--json", "--no-progress", *extra]
    before = client_traffic(url)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _USAGE_WRAPPER, *command],
        capture_output=True,
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
    )
    seconds = time.perf_counter() - started
    err = done.stderr.decode().strip().splitlines()
    if done.returncode != 0:
        raise SystemExit(f"backfill failed ({done.returncode}): {' '.join(err[-3:])}")
    result = json.loads(done.stdout)
    after = client_traffic(url)
    result["sent"] = (
        None if before is None else {k: after[k] - before[k] for k in ("rows", "bytes")}
    )
    result["wall_seconds"] = seconds
    rss, cpu, tree_kib, tree_pss_kib, each = err[-1].split()
    result["peak_rss_mb"] = round(int(rss) / 1024, 1)
    # All processes of the run together (runner, planners, multiprocessing's
    # resource tracker), sampled: the peak of their summed RSS, of their summed
    # PSS (what the run takes from the machine), and each one's peak.
    result["tree_peak_rss_mb"] = round(int(tree_kib) / 1024, 1)
    result["tree_peak_pss_mb"] = round(int(tree_pss_kib) / 1024, 1)
    result["process_peak_rss_mb"] = [[name, round(kib / 1024, 1)] for name, kib in json.loads(each)]
    # The runner's own CPU time (its workers' included): on a machine shared
    # with other guests wall time swings by 15 % between identical runs, the
    # work the runner does much less; the server's work is not in it.
    result["cpu_seconds"] = round(float(cpu), 2)
    return result


def _q(conn: sa.Connection, name: str) -> str:
    return f"`{name}`" if conn.dialect.name == "mysql" else f'"{name}"'


def written_table(conn: sa.Connection, state: str) -> str:
    """id -> host for every row the toolkit wrote in the live table (the limit's input)."""
    table = f"{state}.bench_written"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    conn.exec_driver_sql(
        f"CREATE TABLE {table} AS SELECT event_id AS id, host FROM {state}.audit "
        "WHERE outcome = 'filled' AND event_table = 'instance_actions_events'"
    )
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"CREATE UNIQUE INDEX {state}.bench_written_id ON bench_written (id)")
    else:
        conn.exec_driver_sql(f"CREATE UNIQUE INDEX bench_written_id ON {table} (id)")
    conn.commit()
    return table


def reset(conn: sa.Connection, written: str) -> int:
    """Set the written rows back to NULL (each measurement starts from the same table),
    then :func:`settle` it."""
    if conn.dialect.name == "mysql":
        sql = f"UPDATE instance_actions_events e JOIN {written} w ON w.id = e.id SET e.host = NULL"
    else:
        sql = (
            f"UPDATE instance_actions_events SET host = NULL WHERE id IN (SELECT id FROM {written})"
        )
    rows = conn.exec_driver_sql(sql).rowcount
    conn.commit()
    settle(conn.engine.url)
    return rows


def run_limit(conn: sa.Connection, written: str) -> dict:
    if conn.dialect.name == "mysql":
        sql = (
            f"UPDATE instance_actions_events e JOIN {written} w ON w.id = e.id SET e.host = w.host"
        )
    elif conn.dialect.name == "postgresql":
        sql = (
            f"UPDATE instance_actions_events e SET host = w.host FROM {written} w WHERE w.id = e.id"
        )
    else:
        sql = (
            f"UPDATE instance_actions_events AS e SET host = w.host FROM {written} AS w "
            "WHERE w.id = e.id"
        )
    started = time.perf_counter()
    rows = conn.exec_driver_sql(sql).rowcount
    conn.commit()
    return {"rows": rows, "seconds": time.perf_counter() - started}


def run_naive(conn: sa.Connection, written: str, sample: int) -> dict:
    """select event -> its action -> the instance's migrations and host -> update -> commit."""
    ids = [
        r[0]
        for r in conn.exec_driver_sql(f"SELECT id FROM {written} ORDER BY id LIMIT {int(sample)}")
    ]
    conn.commit()
    mark = "%s" if conn.dialect.name in ("mysql", "postgresql") else "?"
    raw = conn.connection.driver_connection
    started = time.perf_counter()
    for event_id in ids:
        cur = raw.cursor()
        cur.execute(
            "SELECT e.id, e.event, a.instance_uuid, e.start_time FROM instance_actions_events e "
            f"JOIN instance_actions a ON a.id = e.action_id WHERE e.id = {mark}",
            (event_id,),
        )
        _, _, instance, start = cur.fetchone()
        cur.execute(
            "SELECT source_compute, dest_compute, status, created_at FROM migrations "
            f"WHERE instance_uuid = {mark} ORDER BY created_at",
            (instance,),
        )
        migrations = cur.fetchall()
        cur.execute(f"SELECT host FROM instances WHERE uuid = {mark}", (instance,))
        row = cur.fetchone()
        host = row[0] if row else None
        for source, dest, status, created in migrations:
            if created and start and created > start:
                host = source
                break
            if status in ("confirmed", "completed", "done"):
                host = dest
        cur.execute(
            f"UPDATE instance_actions_events SET host = {mark} WHERE id = {mark} AND host IS NULL",
            (host or "unknown", event_id),
        )
        raw.commit()
        cur.close()
    seconds = time.perf_counter() - started
    return {"rows": len(ids), "seconds": seconds}


def baseline_checkout(ref: str) -> Path:
    """A worktree of ``ref`` (e.g. the commit before a change), to run its toolkit on the same data."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    path = ROOT / ".cache" / f"baseline-{commit}"
    if not path.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), commit],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return path


def forget_runs(conn: sa.Connection, state: str) -> None:
    """Set back to NULL every host the runs filled (live and shadow) and empty the
    state tables, so the next backfill starts a fresh run on the same data; then
    :func:`settle` the table."""
    for events in ("instance_actions_events", "shadow_instance_actions_events"):
        conn.exec_driver_sql(
            f"UPDATE {events} SET host = NULL WHERE id IN (SELECT event_id FROM {state}.audit "
            f"WHERE outcome = 'filled' AND event_table = '{events}')"
        )
    for table in ("audit", "run_counts", "checkpoints", "runner_lease", "runs"):
        conn.exec_driver_sql(f"DELETE FROM {state}.{table}")
    conn.commit()
    settle(conn.engine.url)


def compare(url: str, baseline: Path, rounds: int = 2) -> dict:
    """The toolkit and a baseline checkout, alternately, on the same rows; best of ``rounds``."""
    location = resolve_state_location(parse_url(url))
    engine = create_engine(parse_url(url), location)
    seconds: dict[str, list[float]] = {"toolkit": [], "baseline": []}
    cpu: dict[str, list[float]] = {"toolkit": [], "baseline": []}
    try:
        for _ in range(rounds):
            for name, checkout in (("baseline", baseline), ("toolkit", ROOT)):
                result = run_toolkit(url, checkout)
                seconds[name].append(result["elapsed_seconds"])
                cpu[name].append(result["cpu_seconds"])
                with engine.connect() as conn:
                    forget_runs(conn, location.schema)
    finally:
        engine.dispose()
    best = {name: min(values) for name, values in seconds.items()}
    least = {name: min(values) for name, values in cpu.items()}
    return {
        "toolkit_seconds": best["toolkit"],
        "baseline_seconds": best["baseline"],
        "toolkit_to_baseline_throughput": round(best["baseline"] / best["toolkit"], 3),
        "rounds": seconds,
        "toolkit_cpu_seconds": least["toolkit"],
        "baseline_cpu_seconds": least["baseline"],
        "cpu_rounds": cpu,
    }


def compare_drivers(url: str, rounds: int = 2) -> dict:
    """MySQL/MariaDB: the toolkit over PyMySQL and over mysqlclient (``mysql+mysqldb://``),
    alternately, on the same rows; best of ``rounds``."""
    location = resolve_state_location(parse_url(url))
    engine = create_engine(parse_url(url), location)
    drivers = {
        "pymysql": url,
        "mysqldb": sa.engine.make_url(url)
        .set(drivername="mysql+mysqldb")
        .render_as_string(hide_password=False),
    }
    seconds: dict[str, list[float]] = {name: [] for name in drivers}
    try:
        for _ in range(rounds):
            for name, driver_url in drivers.items():
                seconds[name].append(run_toolkit(driver_url)["elapsed_seconds"])
                with engine.connect() as conn:
                    forget_runs(conn, location.schema)
    finally:
        engine.dispose()
    best = {name: min(values) for name, values in seconds.items()}
    return {
        "pymysql_seconds": best["pymysql"],
        "mysqldb_seconds": best["mysqldb"],
        "mysqldb_to_pymysql_throughput": round(best["pymysql"] / best["mysqldb"], 3),
        "rounds": seconds,
    }


def compare_workers(url: str, counts: list[int], rounds: int = 2) -> dict:
    """``backfill --workers N`` for each of ``counts``, alternately, on the same rows;
    best of ``rounds`` (seconds, planning seconds, peak RSS of that run)."""
    location = resolve_state_location(parse_url(url))
    engine = create_engine(parse_url(url), location)
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    try:
        for _ in range(rounds):
            for n in counts:
                result = run_toolkit(url, extra=("--workers", str(n)))
                runs[n].append(
                    {
                        "seconds": result["elapsed_seconds"],
                        "plan_seconds": result["plan_seconds"],
                        "examined": result["examined"],
                        "peak_rss_mb": result["peak_rss_mb"],
                        "tree_peak_rss_mb": result["tree_peak_rss_mb"],
                        "tree_peak_pss_mb": result["tree_peak_pss_mb"],
                    }
                )
                with engine.connect() as conn:
                    forget_runs(conn, location.schema)
    finally:
        engine.dispose()
    return {
        str(n): min(values, key=lambda r: r["seconds"]) | {"rounds": [r["seconds"] for r in values]}
        for n, values in runs.items()
    }


def settle(url: str | sa.URL) -> None:
    """PostgreSQL: VACUUM and CHECKPOINT, so that every measured run starts from a table
    as autovacuum keeps a live cell's, with no maintenance due during the run.

    Rows just loaded carry no hint bits and no visibility map: the first run to
    read them would set them (writing every page).  Setting a run's hosts back
    to NULL leaves a dead tuple per row it wrote: without a VACUUM the table
    grows run after run and autovacuum starts during the next measurement (on
    this 2-core machine, 1 M events, alternating runs of one commit grew from
    52 to 68 s).  The simulator ANALYZEs already.
    """
    if sa.make_url(url).get_backend_name() != "postgresql":
        return
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
            conn.exec_driver_sql("CHECKPOINT")
    finally:
        admin.dispose()


def bench_workers(backend: str, events: int, counts: list[int], workdir: Path) -> dict:
    """Only the toolkit, with each worker count, on one simulated history."""
    url, drop = fresh_database(backend, workdir)
    try:
        simulate(parse_url(url), SimulationOptions(events=events, hosts=max(40, events // 5000)))
        settle(url)
        revisions.upgrade(parse_url(url))
        return {"backend": backend, "events": events, "workers": compare_workers(url, counts)}
    finally:
        drop()


def bench_one(
    backend: str,
    events: int,
    naive_sample: int,
    workdir: Path,
    keep: bool,
    baseline: Path | None = None,
    drivers: bool = False,
) -> dict:
    url, drop = fresh_database(backend, workdir)
    try:
        started = time.perf_counter()
        sim = simulate(
            parse_url(url), SimulationOptions(events=events, hosts=max(40, events // 5000))
        )
        sim_seconds = time.perf_counter() - started
        settle(url)
        revisions.upgrade(parse_url(url))
        versus = compare(url, baseline) if baseline is not None else None
        by_driver = compare_drivers(url) if drivers and backend == "mysql" else None
        toolkit = run_toolkit(url)
        location = resolve_state_location(parse_url(url))
        state = location.schema
        engine = create_engine(parse_url(url), location)
        with engine.connect() as conn:
            written = written_table(conn, state)
            reset(conn, written)
            limit = run_limit(conn, written)
            reset(conn, written)
            naive = run_naive(conn, written, naive_sample)
        engine.dispose()
        examined = toolkit["examined"]
        toolkit_rate = examined / toolkit["elapsed_seconds"]
        limit_rate = limit["rows"] / limit["seconds"] if limit["seconds"] else 0.0
        naive_rate = naive["rows"] / naive["seconds"] if naive["seconds"] else 0.0
        return {
            "backend": backend,
            "server": server_settings(url),
            "events": sim.events,
            "simulate_seconds": round(sim_seconds, 1),
            "null_events_examined": examined,
            "filled": toolkit["filled"],
            "toolkit_seconds": toolkit["elapsed_seconds"],
            "toolkit_wall_seconds": round(toolkit["wall_seconds"], 2),
            "toolkit_events_per_s": round(toolkit_rate),
            "limit_rows": limit["rows"],
            "limit_seconds": round(limit["seconds"], 3),
            "limit_rows_per_s": round(limit_rate),
            "naive_rows": naive["rows"],
            "naive_ms_per_row": round(1000 * naive["seconds"] / max(naive["rows"], 1), 2),
            "naive_rows_per_s": round(naive_rate, 1),
            "ratio_toolkit_to_limit": round(toolkit_rate / limit_rate, 3) if limit_rate else None,
            "ratio_toolkit_to_naive": round(toolkit_rate / naive_rate, 1) if naive_rate else None,
            "toolkit_plan_seconds": toolkit["plan_seconds"],
            "toolkit_snapshot_seconds": toolkit["snapshot"]["seconds"],
            "apply_events_per_s": round(
                examined
                / max(
                    1e-9,
                    toolkit["elapsed_seconds"]
                    - toolkit["plan_seconds"]
                    - toolkit["snapshot"]["seconds"],
                )
            ),
            "read_rows_per_event": _per_event(toolkit, "rows"),
            "read_bytes_per_event": _per_event(toolkit, "bytes"),
            "batch_p50_ms": round(1000 * toolkit["batch_seconds"]["p50"], 1),
            "batch_p99_ms": round(1000 * toolkit["batch_seconds"]["p99"], 1),
            "batches": toolkit["batches"],
            "peak_rss_mb": toolkit["peak_rss_mb"],
            "tree_peak_rss_mb": toolkit["tree_peak_rss_mb"],
            "tree_peak_pss_mb": toolkit["tree_peak_pss_mb"],
            "process_peak_rss_mb": toolkit["process_peak_rss_mb"],
            "toolkit_cpu_seconds": toolkit["cpu_seconds"],
            "baseline": versus,
            "drivers": by_driver,
        }
    finally:
        if not keep:
            drop()


def _per_event(toolkit: dict, key: str) -> float | str:
    sent = toolkit.get("sent")
    if not sent or not toolkit["examined"]:
        return "-"
    return round(sent[key] / toolkit["examined"], 2)


def machine() -> str:
    cpus = os.cpu_count()
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            memory = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), "")
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpus} CPUs ({model}), {memory}, Python {platform.python_version()}"


COLUMNS = (
    ("backend", "backend"),
    ("events", "events"),
    ("null_events_examined", "NULL examined"),
    ("toolkit_seconds", "toolkit s"),
    ("toolkit_cpu_seconds", "runner CPU s"),
    ("toolkit_events_per_s", "toolkit ev/s"),
    ("limit_rows_per_s", "limit rows/s"),
    ("ratio_toolkit_to_limit", "toolkit/limit"),
    ("toolkit_plan_seconds", "plan s"),
    ("apply_events_per_s", "apply ev/s"),
    ("read_rows_per_event", "rows sent/ev"),
    ("read_bytes_per_event", "bytes sent/ev"),
    ("naive_ms_per_row", "naive ms/row"),
    ("ratio_toolkit_to_naive", "toolkit/naive"),
    ("batch_p50_ms", "batch p50 ms"),
    ("batch_p99_ms", "batch p99 ms"),
    ("peak_rss_mb", "peak RSS MB"),
    ("tree_peak_rss_mb", "all processes MB"),
    ("tree_peak_pss_mb", "all processes PSS MB"),
)


def table(results: list[dict]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in results:
        lines.append(
            "| "
            + " | ".join(
                f"{r[key]:,}" if isinstance(r[key], int) else str(r[key]) for key, _ in COLUMNS
            )
            + " |"
        )
    return "\n".join(lines)


def scaling(results: list[dict]) -> list[str]:
    out = []
    for backend in sorted({r["backend"] for r in results}):
        runs = sorted((r for r in results if r["backend"] == backend), key=lambda r: r["events"])
        for small, big in itertools.pairwise(runs):
            out.append(
                f"{backend}: {big['events']:,} / {small['events']:,} events: time ratio "
                f"{big['toolkit_seconds'] / small['toolkit_seconds']:.2f} for "
                f"{big['null_events_examined'] / small['null_events_examined']:.2f}x the rows"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=("postgresql", "mysql", "sqlite"))
    parser.add_argument("--events", action="append", type=int, help="Sizes (repeatable).")
    parser.add_argument("--naive-sample", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    parser.add_argument("--keep", action="store_true", help="Keep the databases afterwards.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="Also time the backfill of this git ref on the same data (alternating, best of 2).",
    )
    parser.add_argument(
        "--drivers",
        action="store_true",
        help="MySQL/MariaDB: also time the backfill over PyMySQL and over mysqlclient "
        "(mysql+mysqldb://, the [mysqlclient] extra) on the same data (alternating, best of 2).",
    )
    parser.add_argument(
        "--compare-workers",
        metavar="N,M",
        help="Only time backfill --workers N against --workers M (alternating, best of 2).",
    )
    parser.add_argument(
        "--mariadb-server",
        choices=("machine", "cell"),
        default="machine",
        help="MySQL/MariaDB: the machine's server (ACTIONHOST_BENCH_MYSQL_URL), or a throwaway "
        "one configured as a production cell's (CELL_MARIADB), removed afterwards.",
    )
    args = parser.parse_args(argv)
    server = None
    if args.mariadb_server == "cell":
        server = start_cell_mariadb(args.workdir)
        SERVERS["mysql"] = server.url
        print(f"[bench] throwaway MariaDB on port {server.port}: {server.base}", file=sys.stderr)
    try:
        return _main(args)
    finally:
        if server is not None:
            if args.keep:
                print(
                    f"[bench] kept: MariaDB on port {server.port}, {server.base}", file=sys.stderr
                )
            else:
                server.remove()


def _main(args: argparse.Namespace) -> int:
    if args.compare_workers:
        counts = [int(n) for n in args.compare_workers.split(",")]
        print(f"Machine: {machine()}\n")
        for backend in args.backend or ["postgresql", "mysql"]:
            for size in args.events or [1_000_000]:
                print(f"[bench] {backend}, {size:,} events ...", file=sys.stderr, flush=True)
                found = bench_workers(backend, size, counts, args.workdir)
                print(json.dumps(found), flush=True)
        return 0
    baseline = baseline_checkout(args.baseline) if args.baseline else None
    backends = args.backend or ["postgresql", "mysql"]
    sizes = args.events or [1_000_000]
    results = []
    for backend in backends:
        for size in sizes:
            print(f"[bench] {backend}, {size:,} events ...", file=sys.stderr, flush=True)
            results.append(
                bench_one(
                    backend,
                    size,
                    args.naive_sample,
                    args.workdir,
                    args.keep,
                    baseline,
                    args.drivers,
                )
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(f"Machine: {machine()}\n")
    print(table(results))
    for backend in dict.fromkeys(r["backend"] for r in results):
        settings = next(r["server"] for r in results if r["backend"] == backend)
        print(f"\nServer ({backend}): " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    for line in scaling(results):
        print(f"\n{line}")
    for r in results:
        if r.get("baseline"):
            b = r["baseline"]
            print(
                f"\n{r['backend']} {r['events']:,} events: toolkit {b['toolkit_seconds']:.2f}s, "
                f"baseline {args.baseline} {b['baseline_seconds']:.2f}s: throughput ratio "
                f"{b['toolkit_to_baseline_throughput']:.3f} (best of {len(b['rounds']['toolkit'])}); "
                f"runner CPU {b['toolkit_cpu_seconds']:.2f}s vs {b['baseline_cpu_seconds']:.2f}s"
            )
        if r.get("drivers"):
            d = r["drivers"]
            print(
                f"\n{r['backend']} {r['events']:,} events: PyMySQL {d['pymysql_seconds']:.2f}s, "
                f"mysqlclient {d['mysqldb_seconds']:.2f}s: throughput ratio "
                f"{d['mysqldb_to_pymysql_throughput']:.3f} (best of {len(d['rounds']['pymysql'])})"
            )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
