"""What a planner keeps on the server while the applier writes (engine/planner.py).

A range's NULL events are copied once (``ah_null``) and read a chunk at a
time.  Once the last chunk is read the copy serves nothing, but the applier
may have most of the range still to write: the copy is dropped before the
last chunk is handed on, not when the run ends.
"""

from __future__ import annotations

import sqlalchemy as sa

from actionhost_backfill.engine import planner as planning
from actionhost_backfill.engine.planner import NULL_EVENTS, Decided
from tests.reliability.common import planner_on, simulated


def _holds_null_events(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table(NULL_EVENTS.name)


def test_the_copy_of_null_events_is_dropped_before_the_last_chunk_is_handed_on(
    blank_db, monkeypatch
):
    monkeypatch.setattr(planning, "PLAN_INSTANCES", 7)  # many chunks
    cell = simulated(blank_db)
    try:
        with planner_on(cell) as (conn, planner):
            newest = conn.execute(sa.text("SELECT max(id) FROM instance_actions_events")).scalar()
            middle = newest // 2
            seen = []  # (last, whether the copy exists) as each chunk is handed on
            for after, upper in ((0, middle), (middle, newest)):
                assert planner.prepare("instance_actions_events", after, upper) > 0
                for item in planner.decide_prepared(upper, lease=None):
                    assert isinstance(item, Decided)
                    seen.append((item.last, _holds_null_events(conn)))
                conn.rollback()
        assert len(seen) > 4
        # Each range: every chunk but the last read the copy; the next range made its own.
        lasts = [i for i, (last, _) in enumerate(seen) if last]
        assert len(lasts) == 2 and lasts[-1] == len(seen) - 1
        assert all(held for last, held in seen if not last)
        assert not any(held for last, held in seen if last)
    finally:
        cell.dispose()
