"""Rolling upgrades (docs/accuracy.md §10): computes of two releases side by side.

Hand-built histories of Liberty's window (tests/scenarios.py ``ROLLING``),
and simulated histories whose computes are upgraded one by one over weeks,
drained with ``host-evacuate-live`` first: the backfill writes no wrong host.
"""

from __future__ import annotations

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.accuracy import accuracy
from actionhost_backfill.sim.history import HistoryBuilder
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from tests import harness, scenarios

#: Kilo, Liberty, then Rocky, few computes (many drained instances), 40-day rolling
#: windows, and resizes allowed onto their own host.  Read as before rolling windows
#: were modelled, it had 7 wrong hosts.
ROLLING_HISTORY = SimulationOptions(
    seed=8,
    instances=300,
    hosts=6,
    days=400,
    first_release="kilo",
    last_release="liberty",
    rolling_days=40,
    same_host_resizes=0.3,
)


def _audit(cell) -> dict[int, tuple]:
    rows = cell.rows(f"SELECT event_id, host, rule FROM {cell.location.schema}.audit")
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("case", scenarios.ROLLING, ids=lambda f: f.__name__)
def test_rolling_window_live_migration(cell, case):
    """A row left pre-migrating is never read as 'the destination never took it over'."""
    builder = HistoryBuilder()
    expect = scenarios.build_all(builder, start=scenarios.datetime(2015, 11, 1), scenarios=[case])
    with cell.engine().begin() as conn:
        builder.write(conn)
    revisions.upgrade(parse_url(cell.url))
    run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    audit = _audit(cell)
    got = {event_id: audit[event_id] for event_id in expect}
    assert got == expect


def test_simulated_rolling_history_has_no_wrong_host(blank_db):
    url = parse_url(blank_db)
    simulate(url, ROLLING_HISTORY)
    cell = harness.Cell(blank_db)
    try:
        # What the windows leave: live migrations whose row stayed pre-migrating with
        # no event of either end (both ran Kilo), and Rocky-era compute events left
        # NULL by computes still on Liberty.
        silent = cell.scalar(
            "SELECT COUNT(*) FROM migrations m WHERE m.migration_type = 'live-migration' "
            "AND m.status = 'pre-migrating' AND NOT EXISTS (SELECT 1 FROM instance_actions a "
            "JOIN instance_actions_events e ON e.action_id = a.id "
            "WHERE a.instance_uuid = m.instance_uuid AND a.action = 'live-migration' "
            "AND e.start_time >= m.created_at AND e.start_time <= m.updated_at)"
        )
        unrecorded = cell.scalar(
            f"SELECT COUNT(*) FROM {cell.location.schema}.simulation_truth "
            "WHERE era = 'rocky' AND NOT recorded AND event LIKE 'compute%'"
        )
        same_host = cell.scalar(
            "SELECT COUNT(*) FROM migrations WHERE migration_type = 'resize' "
            "AND source_compute = dest_compute AND source_node = dest_node"
        )
        assert silent > 0 and unrecorded > 0 and same_host > 0
        revisions.upgrade(url)
        result = run_backfill(url, BackfillOptions(include_shadow=True))
        assert result.outcome == "complete"
        report = accuracy(url)
        assert report.wrong == 0, report.wrong_examples
        assert report.filled > 4000
    finally:
        cell.dispose()


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    "args, message",
    [
        (["--rolling-days", "-1"], "--rolling-days must be 0 or more (got -1)"),
        (["--same-host-resizes", "1.5"], "--same-host-resizes must be between 0 and 1 (got 1.5)"),
    ],
)
def test_bad_rolling_options_are_bad_input(tmp_path, args, message):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    result = harness.cli("simulate", "--db", url, *args)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.startswith(f"error: {message}")
    assert not (tmp_path / "x.sqlite").exists()
    assert args[0] in harness.cli("simulate", "--help").output
