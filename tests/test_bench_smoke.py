"""The benchmark runs end to end at a tiny size (a smoke test: no timings are asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actionhost_backfill.sim.simulate import SimulationOptions
from tests.reliability.common import simulated

ROOT = Path(__file__).resolve().parent.parent


def _bench(tmp_path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """bench/run.py with ``options`` at 1,500 events; its output and its one result."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            *("--events", "1500", *options),
            *("--workdir", str(tmp_path), "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (result,) = json.loads(out.read_text())["results"]
    return done, result


def test_benchmark_smoke(backend, server_url, tmp_path):
    done, result = _bench(tmp_path, "--backend", backend, "--naive-sample", "20")
    assert "| backend | events |" in done.stdout
    assert result["backend"] == backend
    assert 0 < result["limit_rows"] <= result["filled"]
    assert result["naive_rows"] == 20 and result["peak_rss_mb"] > 0
    assert result["toolkit_cpu_seconds"] > 0  # the runner's CPU time, from wait4
    # Every process of the run, sampled from /proc: the runner at least, named,
    # each with its peak (not what a last sample reads of a process that has
    # exited: no memory, no command line).
    peaks = result["process_peak_rss_mb"]
    assert "runner" in {name for name, _ in peaks}
    assert all(mb > 0 for _, mb in peaks), peaks
    assert result["tree_peak_rss_mb"] > 0
    # Shared pages counted once: never more than the summed RSS.
    assert 0 < result["tree_peak_pss_mb"] <= result["tree_peak_rss_mb"]
    assert result["ratio_toolkit_to_limit"] > 0 and result["batch_p99_ms"] > 0
    assert not list(tmp_path.glob("bench-*.sqlite"))  # databases are dropped afterwards
    assert result["server"]["version"]  # the figures name the server they were measured on


@pytest.mark.backends("mysql")
def test_benchmark_on_a_throwaway_cell_server(backend, server_url, tmp_path):
    """--mariadb-server cell measures on a server of its own with a production cell's
    InnoDB settings, and removes it afterwards."""
    done, result = _bench(
        tmp_path, "--backend", "mysql", "--naive-sample", "5", "--mariadb-server", "cell"
    )
    assert result["server"]["innodb_buffer_pool_size"] == "4096M"
    assert result["server"]["innodb_log_file_size"] == "1024M"
    assert "innodb_buffer_pool_size 4096M" in done.stdout
    assert not list(tmp_path.glob("ahbench-mariadb-*"))  # the server is removed afterwards


@pytest.mark.backends("postgresql", "mysql")
def test_where_time_goes_profiles_the_runner_and_every_planner(blank_db):
    """bench/where_time_goes.py with two planner processes: both are profiled (their
    statistics merged with the runner's), the split adds up, the run is forgotten."""
    cell = simulated(blank_db, SimulationOptions(seed=5, instances=120, hosts=6))
    null_before = cell.rows("SELECT count(*) FROM instance_actions_events WHERE host IS NULL")
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "where_time_goes.py"), "--db", blank_db),
            *("--workers", "2", "--top", "5"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "and 2 planner processes profiled" in done.stdout
    shares = {
        name: float(share.rstrip("%"))
        for name, _, share in (
            line.split() for line in done.stdout.splitlines() if line.endswith("%")
        )
    }
    assert set(shares) == {"server:", "driver:", "sqlalchemy:", "inference:", "toolkit:", "other:"}
    assert abs(sum(shares.values()) - 100) < 0.5
    assert shares["inference:"] > 0  # the rules ran in the planners, and were seen there
    # The run's hosts were set back to NULL: it can be profiled again.
    assert (
        cell.rows("SELECT count(*) FROM instance_actions_events WHERE host IS NULL") == null_before
    )
    cell.dispose()


def test_the_frontier_profile_ends_with_everything_writable(blank_db):
    """bench/frontier.py on a simulated cell: writable never exceeds decided, both
    grow, and once every NULL event is decided every one is writable."""
    cell = simulated(blank_db)
    try:
        done = subprocess.run(
            (sys.executable, str(ROOT / "bench" / "frontier.py"), "--db", blank_db),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        cell.dispose()
    assert done.returncode == 0, done.stderr
    rows = [
        [float(value.strip(" %")) for value in line.strip("|").split("|")]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and line[2].isdigit()
    ]
    assert len(rows) >= 5
    assert all(writable <= decided + 0.05 for decided, writable, _ in rows)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    assert rows[-1][:2] == [100.0, 100.0]
