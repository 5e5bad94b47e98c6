"""Rows that contradict a Nova behaviour the rules rely on: their action settles nothing."""

from __future__ import annotations

from actionhost_backfill.inference.model import (
    CONTRADICTION,
    InstanceHistory,
    KnownHosts,
)
from actionhost_backfill.inference.steps.step import (
    BUILD,
    UNSHELVE,
    Step,
    compute_events,
    span,
)

#: The Nova behaviours the rules rely on that rows can contradict (``explain``
#: names the one contradicted).  Key -> what Nova does, where it was read.
FIRST_ROW_FINISH = "first-row-finish"
BEHAVIOURS = {
    FIRST_ROW_FINISH: (
        "action_event_finish writes every finish of a step into one row of that name "
        "(filter_by(event=...).first(), nova/db/sqlalchemy/api.py, 2015.1.0 ... 18.0.0): "
        "a repeated step's other rows never carry a finish_time or a result"
    ),
}


def contradiction(history: InstanceHistory, action_id: int) -> str | None:
    """The behaviour (``BEHAVIOURS`` key) the action's rows contradict, if any.

    Two rows of one event name that both carry a finish or a result cannot
    come from Nova (a patched Nova, a hand repair, another writer): which
    attempt failed, and where, is then not what the rules read.
    """
    finished: dict[str, int] = {}
    for event in history.events.get(action_id, ()):
        if event.finish is not None or event.result is not None:
            name = event.name or ""
            finished[name] = finished.get(name, 0) + 1
            if finished[name] > 1:
                return FIRST_ROW_FINISH
    return None


def contradicted(step: Step, history: InstanceHistory, hosts: KnownHosts, why: str) -> Step:
    """What a contradicted action still says: the host may have changed during it."""
    action = step.action
    safe = Step(action, step.kind, moves=step.moves)
    if step.zone is not None or step.kind in (BUILD, UNSHELVE):
        safe.zone = span(action, compute_events(history, action), hosts)
    for event in history.events.get(action.id, ()):
        safe.roles[event.id] = (None, CONTRADICTION)
    safe.note = f"its rows contradict Nova ({why}): it settles nothing"
    safe.contradicted = why
    return safe
