"""How long a schema upgrade on Galera stalls writes on another node: TOI and node by node.

Brings up a throwaway 3-node MariaDB Galera cluster (tests/topology), fills
``instance_actions_events`` with ``--rows`` events through node 1, then runs
``actionhost-backfill schema upgrade`` (the host index) through node 1 while a
writer inserts events through node 2, one per transaction, and reports the
longest insert (the stall) and how long the upgrade took.  When the rolling
build reaches node 2 it asks for node 2's clients to move: the writer then
writes through node 1, as a proxy's failover would send it.  ``--method toi``
builds under Total Order Isolation (``--galera-toi``), ``--method rolling``
node by node (``--galera-rolling``, RSU); ``both`` (the default) builds under
TOI, downgrades, then builds node by node, on the same table.

    python bench/galera_toi.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actionhost_backfill.nova.models import create_cell_schema  # noqa: E402
from actionhost_backfill.schema import galera_rolling  # noqa: E402
from tests.topology.galera import galera_cluster  # noqa: E402


def fill(url: str, rows: int) -> None:
    engine = sa.create_engine(url)
    create_cell_schema(engine, with_host=True, with_shadow=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")  # events only: no actions
        conn.exec_driver_sql(
            "INSERT INTO instance_actions_events (id, event, action_id, start_time, deleted) "
            "VALUES (1, 'compute_reboot_instance', 1, '2017-01-01', 0)"
        )
    have = 1
    while have < rows:  # doubling, in write sets Galera accepts (at most 100k rows each)
        step = min(have, rows - have, 100_000)
        with engine.begin() as conn:
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            conn.exec_driver_sql(
                "INSERT INTO instance_actions_events (id, event, action_id, start_time, deleted) "
                f"SELECT id + {have}, event, action_id, start_time, 0 FROM instance_actions_events "
                f"WHERE id <= {step}"
            )
        have += step
    engine.dispose()


def cli(*argv: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actionhost_backfill", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    print(done.stderr.rstrip(), file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--method", choices=("toi", "rolling", "both"), default="both")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ahb-toi-"))
    os.chmod(base, 0o755)
    nodes = galera_cluster(base / "cluster")
    stop = threading.Event()
    try:
        nodes[0].sql("CREATE DATABASE nova")
        url1 = str(sa.engine.make_url(nodes[0].url).set(database="nova"))
        url2 = str(sa.engine.make_url(nodes[1].url).set(database="nova"))
        started = time.monotonic()
        fill(url1, args.rows)
        print(f"filled {args.rows:,} rows in {time.monotonic() - started:.1f}s", file=sys.stderr)
        latencies: list[tuple[float, float]] = []

        target = {"url": url2}  # where the proxy sends the writer

        def writer() -> None:
            next_id = args.rows + 1
            while not stop.is_set():
                url = target["url"]
                engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
                    while not stop.is_set() and target["url"] == url:
                        t0 = time.monotonic()
                        conn.exec_driver_sql(
                            "INSERT INTO instance_actions_events (id, event, action_id, "
                            f"start_time, host, deleted) VALUES ({next_id}, "
                            "'compute_reboot_instance', 1, '2026-01-01', 'cmp-new', 0)"
                        )
                        latencies.append((t0, time.monotonic() - t0))
                        next_id += 1
                engine.dispose()

        def say(line: str) -> None:
            print(line, file=sys.stderr)
            if "takes no writes" in line:  # the operator moves the writer (HAProxy)
                target["url"] = url1

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(2.0)  # the writer's steady state before the DDL (a measurement window)
        methods = ["toi", "rolling"] if args.method == "both" else [args.method]
        rows = []
        for method in methods:
            if method == "rolling" and rows:  # back to no index, under TOI (a drop is instant)
                cli("schema", "downgrade", "base", "--db", url1)
                time.sleep(2.0)
            t0 = time.monotonic()
            if method == "toi":
                cli("schema", "upgrade", "--galera-toi", "--db", url1)
            else:  # in process: the writer moves off node 2 when told to
                galera_rolling.rolling_upgrade(sa.engine.make_url(url1), say=say)
            upgrade = time.monotonic() - t0
            time.sleep(2.0)
            before = [lat for t, lat in latencies if t0 - 2.0 <= t < t0]
            during = [lat for t, lat in latencies if t0 <= t <= t0 + upgrade]
            rows.append(
                f"| {args.rows:,} | {method} | {upgrade:.2f} | {1000 * max(before):.1f} | "
                f"{1000 * max(during or [0]):.1f} | {len(during)} |"
            )
        stop.set()
        thread.join()
        print(
            "| events | method | upgrade s | longest insert before, ms | during, ms | inserts during |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        stop.set()
        for node in reversed(nodes):
            node.remove()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
