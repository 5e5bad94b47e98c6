"""Rolling upgrades (issue 18 item 2): computes of two releases side by side.

Hand-built histories of Liberty's window (tests/scenarios.py ``ROLLING``),
and simulated histories whose computes are upgraded one by one over weeks,
drained with ``host-evacuate-live`` first: the backfill writes no wrong host.
"""

from __future__ import annotations

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.history import HistoryBuilder
from tests import scenarios


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
