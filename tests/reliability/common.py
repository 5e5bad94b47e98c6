"""Shared pieces of the reliability suite: simulated cells and their observable state."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.engine.planner import Planner
from actionhost_backfill.engine.progress import silent
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


@contextlib.contextmanager
def planner_on(cell: harness.Cell) -> Iterator[tuple[sa.Connection, Planner]]:
    """A planner on a connection of its own to ``cell``, the evidence snapshot taken
    (its tables on that connection); tables dropped and engine disposed afterwards."""
    url, location = parse_url(cell.url), cell.location
    engine = create_engine(url, location)
    try:
        with engine.connect() as conn:
            snapshot = EvidenceSnapshot(conn, location, audit_available=True)
            snapshot.take()
            planner = Planner(
                conn, snapshot, url=url, stop=threading.Event(), bar=lambda *_: silent()
            )
            try:
                yield conn, planner
            finally:
                planner.drop()
                snapshot.drop()
    finally:
        engine.dispose()


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
