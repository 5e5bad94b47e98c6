"""Shared pieces of the reliability suite: simulated cells and their observable state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from actionhost_backfill.db import parse_url
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from tests import harness
from tests.harness import another_database  # noqa: F401 (re-exported for the suite)

ROOT = Path(__file__).resolve().parents[2]
HISTORY = SimulationOptions(seed=21, events=4000, hosts=8, days=200)


def simulated(url: str, options: SimulationOptions = HISTORY) -> harness.Cell:
    simulate(parse_url(url), options)
    revisions.upgrade(parse_url(url))
    return harness.Cell(url)


def table_state(cell: harness.Cell) -> list[tuple]:
    return cell.rows(
        "SELECT id, host FROM instance_actions_events UNION ALL "
        "SELECT id, host FROM shadow_instance_actions_events ORDER BY 1"
    )


def audit_state(cell: harness.Cell) -> list[tuple]:
    """Every audited decision, whatever run made it (runs differ only in numbering)."""
    return cell.rows(
        f"SELECT event_table, event_id, host, rule, outcome FROM {cell.location.schema}.audit "
        "WHERE reverted_by IS NULL ORDER BY event_table, event_id, outcome"
    )


def backfill_process(url: str, *args: str, **popen) -> subprocess.Popen:
    """The CLI in its own process, as an operator (or cron) runs it."""
    env = {**os.environ, "ACTIONHOST_DB_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "actionhost_backfill", "backfill", "--no-progress", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
