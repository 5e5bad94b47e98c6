"""Builds and unshelves: the instance lands on a host its last claim chose."""

from __future__ import annotations

from datetime import datetime

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import (
    BOUNDARY_SLACK,
    FAULT_SLACK,
    SUCCESS,
    ActionRow,
    InstanceHistory,
    KnownHosts,
)
from actionhost_backfill.inference.steps.step import (
    BUILD,
    UNSHELVE,
    Step,
    compute_events,
    scheduling_failure,
    span,
)


def build(
    history: InstanceHistory, action: ActionRow, next_start: datetime | None, hosts: KnownHosts
) -> Step:
    events = compute_events(history, action)
    attempts = sorted(
        history.named(action.id, *roles.BUILD_EVENTS), key=lambda e: (e.start or action.start, e.id)
    )
    step = Step(action, BUILD, moves=False)
    if not attempts or action.start is None:
        step.note = "no build attempt reached a compute"
        return step
    last = attempts[-1]
    start = last.start or action.start
    # A final failure always leaves a fault tied to the last attempt: the
    # compute's while it ran (no retry left, build aborted, Icehouse's re-raised
    # error), or the scheduler's/conductor's after it (no valid host, retries
    # exhausted).  Faults of operations that record no action before Queens
    # (attach, snapshot) and, in Icehouse, a rescheduled candidate's own fault
    # (2014.1 CM _reschedule_or_error ~1383) fall elsewhere and say nothing.
    # Without one, the last attempt built the instance and its claim stuck
    # (launched_on).  A fault on the boundary counts: failed is the safe side.
    low = start - BOUNDARY_SLACK if len(attempts) == 1 else start
    finishes = [e.finish for e in attempts if e.finish is not None]
    high = max(finishes) + FAULT_SLACK if finishes else next_start
    failed = any(
        f.created is not None
        and f.created >= low
        and (next_start is None or f.created < next_start)
        and (high is None or f.created <= high or scheduling_failure(f))
        for f in history.faults
    )
    if len(attempts) == 1 or not failed:
        step.zone = (action.start, start)
        step.members_after = True
        step.claim_host_known = not failed
        step.note = "built by its last attempt" if len(attempts) > 1 else "built at once"
    else:
        step.zone = span(action, events, hosts)
        step.note = "the build failed after a reschedule: its attempts settle nothing"
    return step


def unshelve(history: InstanceHistory, action: ActionRow, hosts: KnownHosts) -> Step:
    step = Step(action, UNSHELVE)
    claims = history.named(action.id, roles.UNSHELVE_EVENT)
    if not claims or action.start is None:
        # Not offloaded (compute_start_instance on its host) or never scheduled.
        step.moves = False
        step.note = "stayed where it was shelved"
        return step
    first = min(claims, key=lambda e: (e.start or action.start, e.id))
    claimed = first.start or action.start
    step.zone = (min(action.start - hosts.margin(action.start), claimed), claimed)
    step.members_after = True
    step.claim_host_known = len(claims) == 1 and claims[0].result == SUCCESS
    step.note = "unshelved onto a host chosen anew"
    return step
