"""Shared pieces of the reliability suite: simulated cells and their observable state."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from actionhost_backfill import schema
from actionhost_backfill.db import parse_url
from actionhost_backfill.simulate import SimulationOptions, simulate
from tests import harness

ROOT = Path(__file__).resolve().parents[2]
HISTORY = SimulationOptions(seed=21, events=4000, hosts=8, days=200)


def another_database(backend: str, server_url: str, tmp_path, request, stem: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{stem}.sqlite'}"
    name = f"ahb_{uuid.uuid4().hex[:10]}"
    harness.create_database(backend, name)
    request.addfinalizer(lambda: harness.drop_database(backend, name))
    return str(make_url(server_url).set(database=name).render_as_string(hide_password=False))


def simulated(url: str, options: SimulationOptions = HISTORY) -> harness.Cell:
    simulate(parse_url(url), options)
    schema.upgrade(parse_url(url))
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
