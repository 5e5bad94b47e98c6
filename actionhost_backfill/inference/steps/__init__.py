"""What each action did to an instance's host, as the releases that wrote it recorded it.

One :class:`Step` per action that can change the host (build, cold move and
its revert, live migration, evacuation, unshelve) or that acts on a move
(confirm, cancel, force-complete): *when* the host may have changed (its
zone), the host before and after when the rows prove them, and the host of
each of its source- and destination-side events.

Everything here follows what Nova Kilo ... Queens wrote, not today's Nova
(docs/accuracy.md lists each behaviour with the release tags it was read at):

* A host changes only inside a compute step: the end of
  ``compute_resize_instance`` (to the destination), the start of
  ``compute_finish_revert_resize`` (back), ``compute_post_live_migration_at_destination``,
  the evacuation's ``compute_rebuild_instance``, an unshelve's or a build's
  claim.  An action without that step moved nothing, whatever its migration
  row says (an evacuation row becomes ``completed`` when the old source
  restarts, rebuilt or not).
* A migration row has no request id: it belongs to the move action during
  which it was created.  Before Queens the destination created one row per
  candidate (Kilo only for candidates that passed the claim); Queens
  pre-creates one and each candidate overwrites its destination, and may
  reuse a stale ``pre-migrating`` row of an earlier move.  The last row is
  the move's; earlier ones are rejected candidates.
* When a step repeats in one action, ``action_event_finish`` writes every
  finish into the *first* row of that name: only start times and ids order
  the attempts, and a repeated row's result is not its own.
* Kilo live migrations have no events and no row; Kilo evacuations no row.
* Icehouse and Juno record no live migration at all (``untracked``): while the
  cell may have run them (``KnownHosts.untracked``), the host may change
  between any two actions of an instance that left it ACTIVE, so every such
  gap is a zone whose ends nothing but direct evidence settles.
* In Liberty's rolling window (Kilo computes left) a live-migration row
  stays ``pre-migrating`` and a Kilo end records no events: without an event
  of the destination, such a move is an open span, as in Kilo.
* An action's ``start_time`` is nova-api's clock, its events and rows the
  conductors' (``skew``): every match of a row to an action by time allows the
  skew measured in the cell (``KnownHosts.margin``), and a row two neighbouring
  actions could both own goes to neither unless the events decide.
* Rows that contradict a behaviour relied on here (``BEHAVIOURS``) make their
  action say nothing (``contradiction``).
"""

from __future__ import annotations

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import InstanceHistory, KnownHosts
from actionhost_backfill.inference.steps.builds import build, unshelve
from actionhost_backfill.inference.steps.cold_moves import (
    cold_dest,
    cold_move,
    confirm,
    revert,
    rowless_cold_moves,
)
from actionhost_backfill.inference.steps.contradictions import (
    BEHAVIOURS,
    FIRST_ROW_FINISH,
    contradicted,
    contradiction,
)
from actionhost_backfill.inference.steps.evacuations import evacuation, evacuation_rows_taken_over
from actionhost_backfill.inference.steps.linking import link_rows
from actionhost_backfill.inference.steps.live_migrations import (
    live_migration,
    live_partner,
    rolling_window_row,
)
from actionhost_backfill.inference.steps.step import (
    BUILD,
    COLD_MOVE,
    EVACUATION,
    LIVE_MIGRATION,
    PARTNER,
    REVERT,
    UNSHELVE,
    UNTRACKED,
    Step,
    compute_events,
    last_time,
    scheduling_failure,
)
from actionhost_backfill.inference.steps.untracked import untracked_gap

__all__ = [
    "BEHAVIOURS",
    "BUILD",
    "COLD_MOVE",
    "EVACUATION",
    "FIRST_ROW_FINISH",
    "LIVE_MIGRATION",
    "PARTNER",
    "REVERT",
    "UNSHELVE",
    "UNTRACKED",
    "Step",
    "analyze",
    "cold_dest",
    "compute_events",
    "contradiction",
    "evacuation_rows_taken_over",
    "last_time",
    "link_rows",
    "rolling_window_row",
    "rowless_cold_moves",
    "scheduling_failure",
    "untracked_gap",
]


def analyze(
    history: InstanceHistory, hosts: KnownHosts, contradictions: dict[int, str] | None = None
) -> list[Step]:
    """The steps of an instance's history, in action order.

    ``contradictions``: :func:`contradiction` of every action that has one, when
    the caller has it already (``Timeline``); else it is looked up here.
    """
    linked, uncertain = link_rows(history, hosts)
    for action_id in uncertain:
        # Which of two neighbouring moves created a row is unknown: neither has rows.
        linked[action_id] = []
    rowless = rowless_cold_moves(history, linked)
    steps: list[Step] = []
    by_action: dict[int, Step] = {}
    taken_over: bool | None = None
    last_cold: Step | None = None
    lives: list[Step] = []
    actions = [a for a in history.actions if a.start is not None]
    for index, action in enumerate(actions):
        next_start = actions[index + 1].start if index + 1 < len(actions) else None
        name = action.name or ""
        step: Step | None
        if name == roles.CREATE:
            step = build(history, action, next_start, hosts)
        elif name in roles.COLD_MOVES:
            step = last_cold = cold_move(history, action, linked.get(action.id, []), hosts, rowless)
        elif name == roles.LIVE_MIGRATION:
            step = live_migration(history, action, linked.get(action.id, []), next_start, hosts)
            lives.append(step)
        elif name == roles.EVACUATE:
            if taken_over is None:
                taken_over = evacuation_rows_taken_over(history, linked)
            step = evacuation(history, action, linked.get(action.id, []), taken_over, hosts)
        elif name == roles.UNSHELVE:
            step = unshelve(history, action, hosts)
        elif name == roles.REVERT_RESIZE:
            step = revert(history, action, last_cold, hosts)
        elif name == roles.CONFIRM_RESIZE:
            step = confirm(history, action, last_cold)
        elif name in roles.LIVE_PARTNERS:
            step = live_partner(history, action, lives)
        elif any(e.name == "compute_confirm_resize" for e in history.events.get(action.id, ())):
            # Deleting a resized instance confirms it first under the delete's
            # request id: Queens attaches that confirm to the ``delete`` action.
            step = confirm(history, action, last_cold)
        else:
            step = None
        why = (
            contradiction(history, action.id)
            if contradictions is None
            else contradictions.get(action.id)
        )
        if why is not None and step is not None:
            step = contradicted(step, history, hosts, why)
        if step is not None and action.id in uncertain:
            step.uncertain_rows = True
            step.note += (
                "; a migration row it may have created may be its neighbour's (clocks "
                "disagree): no row is used"
            )
        if step is not None:
            steps.append(step)
            by_action[action.id] = step
        if hosts.untracked:
            gap = untracked_gap(
                history,
                action,
                actions[index + 1] if index + 1 < len(actions) else None,
                hosts.untracked,
            )
            if gap is not None:
                steps.append(gap)
    return steps
