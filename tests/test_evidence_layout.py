"""How the evidence snapshot lays its rows out (engine/evidence_tables.py, engine/planner.py).

A chunk of instances is read through the instance index of ``ah_ev`` and
``ah_null``.  Written in the order Nova's tables hold them (by time), one
instance's events are scattered over the whole table, and a chunk touches a
page per event; grouped by instance, a few pages per instance.  On a 10M-event
cell the difference is whether the reads fit the server's buffer pool.
"""

from __future__ import annotations

import itertools

import sqlalchemy as sa

from tests.reliability.common import planner_on, simulated


def _in_stored_order(conn: sa.Connection, table: str) -> list[str | None]:
    """The instance of each row, in the order a full scan meets them (columns
    outside every index, so no index can answer it)."""
    rows = conn.exec_driver_sql(f"SELECT instance_uuid, event, result FROM {table}").all()
    return [row[0] for row in rows]


def _scattered(owners: list[str | None]) -> list[str | None]:
    """The instances whose rows are not all next to each other."""
    runs = [owner for owner, _ in itertools.groupby(owners)]
    return sorted((o for o in set(runs) if runs.count(o) > 1), key=str)


def test_each_instances_events_lie_together_in_the_snapshot(blank_db):
    cell = simulated(blank_db)
    try:
        with planner_on(cell) as (conn, planner):
            evidence = _in_stored_order(conn, "ah_ev")
            (newest,) = conn.execute(sa.text("SELECT max(id) FROM instance_actions_events")).one()
            total = planner.prepare("instance_actions_events", 0, newest)
            null_events = _in_stored_order(conn, "ah_null")
        # Many instances, each with many events, written by time: without the
        # grouping most instances' rows would be interleaved with others'.
        instances, rows = len(set(evidence)), len(evidence)
        assert instances > 50 and rows > 5 * instances
        assert _scattered(evidence) == []
        assert total == len(null_events) > 1000
        assert _scattered(null_events) == []
    finally:
        cell.dispose()
