"""Decide the host of historical events, precision first (pure functions, no I/O).

Each decision names the rule that produced its host, or the reason it stays
NULL.  Rules, strongest first:

``migration-role``
    A source- or destination-side event takes the source or destination of
    the migration row its move created (``steps``): the row's, the candidate
    row's for a rejected candidate before Queens, nothing when the row cannot
    be trusted for that event.
``fault-record``
    A failed event (not a repeated step) with exactly one fault recorded by a
    compute host during it takes that fault's host, unless other evidence for
    its segment disagrees.  A build whose last attempt failed: that attempt
    takes the fault of its own window.
``host-timeline`` / ``current-host``
    Any other compute event takes the host of its segment (``timeline``) when
    all evidence agrees.  ``current-host`` names the case of an instance that
    never moved, settled by ``instances.host``.
``shelved-host`` / ``launched-on`` / ``volume-connector``
    The same, for segments settled only by what older releases left beside the
    events: the shelving host in system metadata, the last claim's host, a
    volume's saved connector.

Moves in flight at an event's time settle nothing about it
(``move-in-flight``).  Each rule relies on what Nova wrote (``steps``,
docs/accuracy.md); rows that contradict it, such as two rows of one repeated
step that both carry a finish or a result (``action_event_finish`` updates
one row, ``filter_by(event=...).first()``, 2015.1.0 ... 18.0.0), leave every
event of their action NULL (``contradiction``).  Rules the operator excludes
(``--exclude-rule``, e.g. after DB surgery) write nothing (``excluded-rule``).  ``conductor_*``, bare conductor names and ``api_*``
events ran on control-plane nodes recorded nowhere (``control-plane``).
"""

from __future__ import annotations

from collections.abc import Iterable

from actionhost_backfill.errors import BadInput
from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import (
    ACTION_MISSING,
    AMBIGUOUS,
    CONTRADICTION,
    CONTROL_PLANE,
    CURRENT_HOST,
    EXCLUDED_RULE,
    FAULT_RECORD,
    HOST_TIMELINE,
    INSTANCE_MISSING,
    LAUNCHED_ON,
    MIGRATION_ROLE,
    MOVE_IN_FLIGHT,
    NO_EVIDENCE,
    NO_MIGRATION,
    NO_TIME,
    RESCHEDULED_CANDIDATE,
    RULES,
    SHELVED_HOST,
    UNKNOWN_EVENT,
    VOLUME_CONNECTOR,
    ActionRow,
    Decision,
    EventRow,
    InstanceHistory,
    KnownHosts,
)
from actionhost_backfill.inference.roles import Role
from actionhost_backfill.inference.timeline import Timeline

#: What each rule relies on Nova having done (docs/accuracy.md has the tags and
#: functions); ``explain`` prints it with the decision.
RELIES_ON = {
    MIGRATION_ROLE: (
        "a move's own migration row names its source and destination; it is created "
        "during the move (resource tracker, conductor or API) and linked to it by time"
    ),
    FAULT_RECORD: (
        "a fault is recorded under the failing compute's CONF.host while its event "
        "runs (add_instance_fault_from_exc), and a non-repeated event's result is its own"
    ),
    HOST_TIMELINE: (
        "the host changes only in the recorded compute steps of builds, moves, "
        "reverts, evacuations and unshelves (and Kilo's unrecorded live migrations)"
    ),
    CURRENT_HOST: "instances.host changed only through recorded steps (no DB surgery)",
    SHELVED_HOST: "shelved_host is written by the compute that ran the shelve",
    LAUNCHED_ON: "launched_on is set only by a successful claim (_set_instance_host_and_node)",
    VOLUME_CONNECTOR: "a saved connector names the host the attachment was last connected on",
}

#: Reasons a fault may overrule: the segment knows nothing, the fault does.
_SILENT = frozenset({MOVE_IN_FLIGHT, NO_EVIDENCE, INSTANCE_MISSING, NO_TIME})


def _with_fault(event: EventRow, fault: str | None, host: str | None, rule: str) -> Decision:
    if fault is None:
        return Decision(event.id, host, rule)
    if host is None and rule in _SILENT:
        return Decision(event.id, fault, FAULT_RECORD)
    if host == fault:
        return Decision(event.id, fault, FAULT_RECORD)
    return Decision(event.id, None, AMBIGUOUS)


def _build_attempt(event: EventRow, action: ActionRow, timeline: Timeline) -> Decision:
    attempts = timeline.build_attempts(action)
    k = next((i for i, e in enumerate(attempts) if e.id == event.id), None)
    if k is None:
        return Decision(event.id, None, RESCHEDULED_CANDIDATE)
    fault = timeline.attempt_fault(attempts, k)
    if k < len(attempts) - 1:
        # A rescheduled attempt: Success on a host recorded nowhere, unless it
        # recorded its own fault (Icehouse _reschedule_or_error).
        if fault:
            return Decision(event.id, fault, FAULT_RECORD)
        return Decision(event.id, None, RESCHEDULED_CANDIDATE)
    step = timeline.step_of(action)
    if step is None or not step.members_after:
        # The build failed for good: the instance's host says nothing of this attempt.
        return (
            Decision(event.id, fault, FAULT_RECORD)
            if fault
            else Decision(event.id, None, NO_EVIDENCE)
        )
    host, rule = timeline.host_at(action, event.start)
    return _with_fault(event, fault, host, rule)


def _move_event(event: EventRow, role: Role, action: ActionRow, timeline: Timeline) -> Decision:
    fault = timeline.fault_host(event)
    moved = timeline.move_role(event)
    if moved is not None:
        host, rule = moved
        if host is None:
            return (
                Decision(event.id, fault, FAULT_RECORD) if fault else Decision(event.id, None, rule)
            )
        if fault and fault != host:
            return Decision(event.id, None, AMBIGUOUS)
        return Decision(event.id, host, rule)
    if fault:
        return Decision(event.id, fault, FAULT_RECORD)
    if role is Role.SOURCE and action.name in roles.MOVE_ACTIONS:
        # No row names the source, but the source is where the instance was
        # when the move was requested.
        host, rule = timeline.host_of(timeline.segment_before(action), when_missing=NO_MIGRATION)
        if host is not None:
            return Decision(event.id, host, HOST_TIMELINE)
    return Decision(event.id, None, NO_MIGRATION)


def decide(
    event: EventRow,
    action: ActionRow | None,
    history: InstanceHistory | None,
    timeline: Timeline | None,
) -> Decision:
    """The decision for one event, given its instance's history."""
    return _decide(event, action, history, timeline, rows_checked=False)


def _decide(
    event: EventRow,
    action: ActionRow | None,
    history: InstanceHistory | None,
    timeline: Timeline | None,
    *,
    rows_checked: bool,
) -> Decision:
    """:func:`decide`; ``rows_checked``: :func:`infer` already found no other row of
    the event's name in its action carrying a finish or a result (``_clashes``), so
    only the action's own contradiction is left to look up."""
    role = roles.role_of(event.name, action.name if action else None)
    if role is Role.CONTROL_PLANE:
        return Decision(event.id, None, CONTROL_PLANE)
    if role is Role.UNKNOWN:
        return Decision(event.id, None, UNKNOWN_EVENT)
    if action is None or history is None or timeline is None:
        return Decision(event.id, None, ACTION_MISSING)
    if rows_checked:
        if event.action_id is not None and event.action_id in timeline.contradicted:
            return Decision(event.id, None, CONTRADICTION)
    elif timeline.contradiction_of(event) is not None:
        return Decision(event.id, None, CONTRADICTION)
    if role is Role.SOURCE or role is Role.DEST:
        return _move_event(event, role, action, timeline)
    if role is Role.BUILD and action.name == roles.CREATE:
        return _build_attempt(event, action, timeline)
    fault = timeline.fault_host(event)
    host, rule = timeline.host_at(action, event.start)
    return _with_fault(event, fault, host, rule)


def excluded_rules(names: Iterable[str] | None) -> frozenset[str]:
    """The rules named by ``--exclude-rule`` (an unknown name is bad input)."""
    chosen = frozenset(names or ())
    unknown = sorted(chosen - set(RULES))
    if unknown:
        raise BadInput(
            f"--exclude-rule {unknown[0]!r} is not a rule: pass one of {', '.join(RULES)}"
        )
    return chosen


def exclude(decision: Decision, rules: frozenset[str]) -> Decision:
    """The decision, or NULL (``excluded-rule``) when the operator excluded its rule."""
    if decision.filled and decision.rule in rules:
        return Decision(decision.event_id, None, EXCLUDED_RULE)
    return decision


def _clashes(
    events: list[EventRow],
    actions: dict[int, ActionRow],
    histories: dict[str, InstanceHistory],
) -> set[tuple[int | None, str | None]]:
    """The (action id, event name) of repeated steps with two rows that each carry a
    finish or a result, counted over the rows read as evidence and the rows being
    decided (a successful step of an ordinary action is only the latter)."""
    first: dict[tuple[int | None, str | None], int] = {}
    clashes: set[tuple[int | None, str | None]] = set()
    for event in events:
        if event.finish is not None or event.result is not None:
            key = (event.action_id, event.name)
            if first.setdefault(key, event.id) != event.id:
                clashes.add(key)
    # Per action, the ids of its rows read as evidence that carry a finish or a
    # result, by name: one pass over each action's rows, however many of its
    # names are asked about (``history.named`` would also index the rows
    # without, for nothing else).
    finished: dict[int, dict[str, list[int]]] = {}
    for key, seen in first.items():
        action_id = key[0]
        if action_id is None or key in clashes:
            continue
        by_name = finished.get(action_id)
        if by_name is None:
            action = actions.get(action_id)
            uuid = action.instance_uuid if action else None
            history = histories.get(uuid) if uuid else None
            if history is None:
                continue
            by_name = finished[action_id] = {}
            for other in history.events.get(action_id, ()):
                if other.finish is not None or other.result is not None:
                    by_name.setdefault(other.name or "", []).append(other.id)
        if any(other != seen for other in by_name.get(key[1] or "", ())):
            clashes.add(key)
    return clashes


def infer(
    events: Iterable[EventRow],
    actions: dict[int, ActionRow],
    histories: dict[str, InstanceHistory],
    hosts: KnownHosts,
    excluded: frozenset[str] = frozenset(),
) -> list[Decision]:
    """Decisions for a batch of NULL-host events (one timeline per instance), in
    the order of ``events``.

    ``excluded``: rules whose values the operator does not want written.
    """
    events = list(events)
    clashes = _clashes(events, actions, histories)
    decisions: list[Decision | None] = [None] * len(events)
    # Instance by instance: each timeline is built once, used for all of its
    # instance's events, and let go before the next one (a chunk's timelines
    # held together made the garbage collector walk them over and over).
    by_instance: dict[str | None, list[int]] = {}
    for index, event in enumerate(events):
        action = actions.get(event.action_id) if event.action_id is not None else None
        uuid = action.instance_uuid if action is not None else None
        by_instance.setdefault(uuid if uuid and uuid in histories else None, []).append(index)
    for uuid, indices in by_instance.items():
        history = histories[uuid] if uuid is not None else None
        timeline = None
        for index in indices:
            event = events[index]
            if clashes and (event.action_id, event.name) in clashes:
                decisions[index] = Decision(event.id, None, CONTRADICTION)
                continue
            action = actions.get(event.action_id) if event.action_id is not None else None
            if history is not None and timeline is None:
                timeline = Timeline(history, hosts)
            decision = _decide(event, action, history, timeline, rows_checked=True)
            decisions[index] = exclude(decision, excluded) if excluded else decision
    return decisions  # type: ignore[return-value]
