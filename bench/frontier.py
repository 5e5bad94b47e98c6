"""How far applying can follow deciding on a cell: the frontier's lag, from the data alone.

The planner decides whole instances in the order of their first NULL-host
event; the applier writes in id order, up to the **frontier**, below which
every NULL event is decided (``engine/pipeline.py``).  An instance born early
and living long holds events all over the id range, so most decided events
wait above the frontier until the instances born before them are decided too.

This prints, for a cell's live events table, what share of the NULL events
the applier may write once a given share of them is decided (the events
whose action is gone first, as the planner decides them, then the instances
in order), and how many wait decided but not yet writable.  Reads only;
one planner (with ``--workers N`` each share has its own order and the
frontier is the smallest of theirs, which trails further)::

    python bench/frontier.py --db postgresql+psycopg://nova@db/nova
"""

from __future__ import annotations

import argparse
import bisect
import sys
from collections import defaultdict
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.nova.tables import nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.state.location import resolve_state_location

#: Shares of the NULL events decided at which the profile is printed.
MARKS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def profile(conn: sa.Connection) -> tuple[int, list[tuple[float, float]]]:
    """The NULL events of the live events table, and at each of :data:`MARKS`
    (share decided) the share writable."""
    e, a = nova("instance_actions_events"), nova("instance_actions")
    by_instance: dict[str, list[int]] = defaultdict(list)
    orphans = 0
    ids = []
    for event_id, uuid in conn.execute(
        sa.select(e.c.id, a.c.instance_uuid)
        .select_from(e.outerjoin(a, a.c.id == e.c.action_id))
        .where(e.c.host.is_(None))
    ):
        ids.append(event_id)
        if uuid is None:
            orphans += 1
        else:
            by_instance[uuid].append(event_id)
    conn.rollback()
    ids.sort()
    total = len(ids)
    if not total:
        return 0, []
    firsts = sorted((min(events), len(events)) for events in by_instance.values())
    found: list[tuple[float, float]] = []
    marks = iter(MARKS)
    mark = next(marks)

    def reached(decided: int, frontier: int) -> None:
        nonlocal mark
        while mark is not None and decided >= mark * total:
            found.append((decided / total, bisect.bisect_right(ids, frontier) / total))
            mark = next(marks, None)

    decided = orphans  # decided first; writable up to the first instance's first event
    reached(decided, firsts[0][0] - 1 if firsts else ids[-1])
    for k, (_, count) in enumerate(firsts):
        decided += count
        reached(decided, firsts[k + 1][0] - 1 if k + 1 < len(firsts) else ids[-1])
    return total, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    url = parse_url(args.db)
    engine = create_engine(url, resolve_state_location(url))
    try:
        with engine.connect() as conn:
            total, found = profile(conn)
    finally:
        engine.dispose()
    print(f"{mask_url(url)}: {total:,} NULL-host events in instance_actions_events\n")
    print("| decided | writable (at or below the frontier) | decided, waiting above it |")
    print("|---|---|---|")
    for decided, writable in found:
        print(f"| {decided:.1%} | {writable:.1%} | {decided - writable:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
