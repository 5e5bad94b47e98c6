"""Stretches in which a release that records no live migration (Icehouse/Juno) may have moved the instance."""

from __future__ import annotations

from datetime import datetime, timedelta

from actionhost_backfill.inference.model import (
    ActionRow,
    InstanceHistory,
)
from actionhost_backfill.inference.steps.step import (
    UNTRACKED,
    Step,
    last_time,
)

#: Actions whose API call requires a vm_state in which no live migration can
#: run (2014.1/2014.2 CA: live_migrate requires ACTIVE; start STOPPED, unpause
#: PAUSED, resume SUSPENDED, unrescue RESCUED, unshelve SHELVED(_OFFLOADED),
#: confirm/revert RESIZED, restore SOFT_DELETED).  Nothing but a recorded
#: action puts an instance back into those states (os-resetState sets only
#: active or error), so the gap before one of them held no silent move.
_NOT_ACTIVE_BEFORE = frozenset(
    {
        "start",
        "unpause",
        "resume",
        "unrescue",
        "unshelve",
        "confirmResize",
        "revertResize",
        "restore",
    }
)
#: After these, when nothing follows, the instance is gone: nothing moves it.
_FINAL = frozenset({"delete"})
_TICK = timedelta(microseconds=1)


def untracked_gap(
    history: InstanceHistory,
    action: ActionRow,
    next_action: ActionRow | None,
    periods: tuple[tuple[datetime | None, datetime | None], ...],
) -> Step | None:
    """The stretch after ``action`` in which a silent (Icehouse/Juno) live migration may have run.

    CA live_migrate (2014.1 ~3008, 2014.2 ~3145) requires task_state None and
    vm_state ACTIVE: never during another operation, so the stretch starts
    after the action's last recorded time and ends just before the next
    request.  Only its part inside an untracked period counts.
    """
    if action.start is None or (action.name in _FINAL and next_action is None):
        return None  # a delete that worked: nothing moves the instance afterwards
    if next_action is not None and next_action.name in _NOT_ACTIVE_BEFORE:
        return None
    if all(p1 is not None and p1 <= action.start for _, p1 in periods):
        # Every period ended by the request (Kilo+ history after an Icehouse/Juno
        # start): the stretch, which starts later, overlaps none of them.
        return None
    end = max(last_time(history.events.get(action.id, [])) or action.start, action.start)
    low = end + _TICK
    high = next_action.start - _TICK if next_action is not None and next_action.start else None
    overlaps = []
    for p0, p1 in periods:
        lo = low if p0 is None or p0 < low else p0
        hi = high if p1 is None or (high is not None and high < p1) else p1
        if hi is None or lo < hi:
            overlaps.append((lo, hi))
    if not overlaps:
        return None
    step = Step(action, UNTRACKED)
    ends = [hi for _, hi in overlaps]
    step.zone = (min(lo for lo, _ in overlaps), None if None in ends else max(ends))
    step.note = (
        "a release that records no live migration (Icehouse/Juno) may have run: "
        "the host may have changed with no record"
    )
    return step
