"""Which move action created each migration row (rows carry no request id)."""

from __future__ import annotations

import bisect

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import (
    BOUNDARY_SLACK,
    ActionRow,
    InstanceHistory,
    KnownHosts,
    MigrationRow,
)
from actionhost_backfill.inference.steps.step import (
    last_time,
)


def link_rows(
    history: InstanceHistory, hosts: KnownHosts = KnownHosts()
) -> tuple[dict[int, list[MigrationRow]], set[int]]:
    """Each move action's migration rows: those created while it was the latest of its family,
    and the actions whose rows are uncertain.

    A row is created during its move (API, conductor or destination), never
    before the action's request and never after a later action that could
    create rows of the same family started.  The request time is nova-api's
    clock, the row's a conductor's (or the API's): a row created up to the
    margin (``KnownHosts.margin``) before a request may be that request's.
    Such a row, also inside the earlier action's window, is the later one's
    when the earlier action's events had all ended before it (rows are created
    during their move); else neither action's rows are certain.
    """
    by_family: dict[str, list[MigrationRow]] = {}
    for migration in sorted(
        (m for m in history.migrations if m.created is not None), key=lambda m: (m.created, m.id)
    ):
        by_family.setdefault(roles.family_of_row(migration.kind), []).append(migration)
    created = {family: [m.created for m in rows] for family, rows in by_family.items()}
    linked: dict[int, list[MigrationRow]] = {}
    uncertain: set[int] = set()
    actions = [a for a in history.actions if a.start is not None]
    # Walking backwards, the next creator of each family is known at each action.
    next_creator: dict[str, ActionRow] = {}
    for action in reversed(actions):
        family = roles.FAMILY_OF_ACTION.get(action.name or "")
        if family is not None:
            rows = by_family.get(family, [])
            times = created.get(family, [])
            low = bisect.bisect_left(times, action.start - hosts.margin(action.start))
            after = next_creator.get(family)
            high = len(times) if after is None else bisect.bisect_left(times, after.start)
            own = rows[low:high]
            if after is not None and own:
                # Rows the next creator may own too (its request stamped by a clock ahead).
                shared = after.start - hosts.margin(after.start)
                contested = [r for r in own if r.created >= shared]
                if contested:
                    ended = last_time(history.events.get(action.id, []))
                    if ended is not None and all(
                        r.created > ended + BOUNDARY_SLACK for r in contested
                    ):
                        own = [r for r in own if r.created < shared]
                    else:
                        uncertain.add(action.id)
                        if after.name in roles.FAMILY_OF_ACTION:
                            uncertain.add(after.id)
            linked[action.id] = own
        for family, creators in roles.ROW_CREATORS.items():
            if action.name in creators:
                next_creator[family] = action
    return linked, uncertain
