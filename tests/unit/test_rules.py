"""The inference rules on hand-written histories, without a database.

Each test mirrors a history of tests/scenarios.py (named in its docstring),
which tests/test_backfill_rules.py runs through a full backfill on SQLite,
PostgreSQL and MariaDB: both lanes must reach the same decisions.  Here the
rows go straight to ``inference.infer``, so a rule change gets an answer in
a second.
"""

from __future__ import annotations

from actionhost_backfill.inference import (
    ACTION_MISSING,
    AMBIGUOUS,
    CONTROL_PLANE,
    CURRENT_HOST,
    FAILED,
    FAULT_RECORD,
    HOST_TIMELINE,
    INSTANCE_MISSING,
    LAUNCHED_ON,
    MIGRATION_ROLE,
    NO_EVIDENCE,
    RESCHEDULED_CANDIDATE,
    UNKNOWN_EVENT,
    EventRow,
    infer,
)
from tests.unit.histories import CONDUCTOR, DAY, MIN, S, Story

BUILD = "compute__do_build_and_run_instance"


def _built(story: Story, host_rescheduled: tuple[str, ...] = ()) -> tuple[int, list[int]]:
    """A create action: rescheduled attempts (Success, no fault), then the one that stuck."""
    create = story.action("create", gap=S)
    attempts = [story.event(create, BUILD) for _ in host_rescheduled]
    attempts.append(story.event(create, BUILD, took=40 * S))
    return create, attempts


def _generic(story: Story, name: str, **kw) -> int:
    action = story.action(name.removeprefix("compute_").split("_")[0])
    return story.event(action, name, **kw)


def test_never_moved_instance_takes_its_current_host():
    """scenarios.never_moved: one segment, settled by ``instances.host``."""
    story = Story(computes=("cmp-a",))
    _, (build,) = _built(story)
    stop = _generic(story, "compute_stop_instance")
    start = _generic(story, "compute_start_instance")
    story.done(host="cmp-a", launched_on="cmp-a")

    decided = story.decide()

    assert decided == {e: ("cmp-a", CURRENT_HOST) for e in (build, stop, start)}


def test_failed_event_takes_the_host_that_recorded_its_fault():
    """scenarios.never_moved: the failed reboot is settled by its own fault."""
    story = Story(computes=("cmp-a",))
    _built(story)
    reboot = _generic(story, "compute_reboot_instance", result=FAILED, fault="cmp-a")
    story.done(host="cmp-a", launched_on="cmp-a")

    assert story.decide()[reboot] == ("cmp-a", FAULT_RECORD)


def test_fault_of_a_successful_event_is_not_its_own():
    """Only a failed event owns a fault stamped during it: a success with one is current-host."""
    story = Story(computes=("cmp-a", "cmp-b"))
    _built(story)
    reboot = _generic(story, "compute_reboot_instance", fault="cmp-b")
    story.done(host="cmp-a", launched_on="cmp-a")

    assert story.decide()[reboot] == ("cmp-a", CURRENT_HOST)


def test_fault_that_disagrees_with_the_segment_is_ambiguous():
    """A failed event whose fault names another host than its segment's evidence: NULL."""
    story = Story(computes=("cmp-a", "cmp-b"))
    _built(story)
    reboot = _generic(story, "compute_reboot_instance", result=FAILED, fault="cmp-b")
    story.done(host="cmp-a", launched_on="cmp-a")

    assert story.decide()[reboot] == (None, AMBIGUOUS)


def test_rescheduled_build_attempt_stays_null():
    """scenarios.rescheduled_build: the rejected attempt ran on a host recorded nowhere."""
    story = Story(computes=("cmp-a", "cmp-x"))
    _, (rejected, kept) = _built(story, host_rescheduled=("cmp-x",))
    reboot = _generic(story, "compute_reboot_instance")
    story.done(host="cmp-a", launched_on="cmp-a")

    decided = story.decide()

    assert decided[rejected] == (None, RESCHEDULED_CANDIDATE)
    assert decided[kept] == ("cmp-a", CURRENT_HOST)
    assert decided[reboot] == ("cmp-a", CURRENT_HOST)


def _resized(story: Story) -> dict[str, int]:
    """scenarios.resize_confirmed (Liberty-Pike: the destination's prep_resize creates the row)."""
    ids = {}
    _, (ids["build"],) = _built(story)
    ids["stop"] = _generic(story, "compute_stop_instance")
    resize = story.action("resize")
    ids["cold_migrate"] = story.event(resize, "cold_migrate")
    ids["prep"] = story.begin(resize, "compute_prep_resize")
    row = story.migration(
        "resize", "cmp-s", "cmp-d", "pre-migrating", created=story.at(S), new_flavor=2
    )
    story.end(resize, "compute_prep_resize")
    ids["resize"] = story.event(resize, "compute_resize_instance")
    ids["finish"] = story.event(resize, "compute_finish_resize")
    confirm = story.action("confirmResize", gap=10 * MIN)
    ids["confirm"] = story.event(confirm, "compute_confirm_resize")
    story.migrations[row - 1].update(status="confirmed", updated_at=story.t)
    ids["start"] = _generic(story, "compute_start_instance")
    story.done(host="cmp-d", launched_on="cmp-s")
    return ids


def test_resize_source_and_destination_events_take_the_migration_rows_hosts():
    story = Story(computes=("cmp-s", "cmp-d"))
    ids = _resized(story)

    decided = story.decide()

    assert decided[ids["prep"]] == ("cmp-d", MIGRATION_ROLE)
    assert decided[ids["resize"]] == ("cmp-s", MIGRATION_ROLE)
    assert decided[ids["finish"]] == ("cmp-d", MIGRATION_ROLE)
    assert decided[ids["confirm"]] == ("cmp-s", MIGRATION_ROLE)


def test_generic_events_take_the_host_of_their_segment():
    """Before the resize the instance was on the source, after it on the destination."""
    story = Story(computes=("cmp-s", "cmp-d"))
    ids = _resized(story)

    decided = story.decide()

    assert decided[ids["build"]] == ("cmp-s", HOST_TIMELINE)
    assert decided[ids["stop"]] == ("cmp-s", HOST_TIMELINE)
    assert decided[ids["start"]] == ("cmp-d", HOST_TIMELINE)


def test_conductor_events_are_control_plane():
    """scenarios.resize_confirmed / unknown_and_control_plane_events."""
    story = Story(computes=("cmp-s", "cmp-d"))
    ids = _resized(story)
    create = story.action("create", gap=S)
    names = ("schedule_instances", "conductor_live_migrate_instance", "api_lock")
    control = [story.event(create, name) for name in names]
    unknown = story.event(create, "frobnicate_instance")

    decided = story.decide()

    assert decided[ids["cold_migrate"]] == (None, CONTROL_PLANE)
    assert [decided[e] for e in control] == [(None, CONTROL_PLANE)] * len(names)
    assert decided[unknown] == (None, UNKNOWN_EVENT)


def test_disagreeing_evidence_in_one_segment_is_ambiguous():
    """scenarios.conflicting_evidence_is_ambiguous: Nova recorded cmp-y, the instance says cmp-now."""
    story = Story(computes=("cmp-x", "cmp-y", "cmp-now"))
    _, (build,) = _built(story)
    reboot = _generic(story, "compute_reboot_instance")
    recorded = _generic(story, "compute_stop_instance", host="cmp-y")
    story.done(host="cmp-now", launched_on="cmp-x")

    decided = story.decide()

    assert decided[build] == (None, AMBIGUOUS)
    assert decided[reboot] == (None, AMBIGUOUS)
    assert recorded not in decided, "an event whose host Nova recorded is never decided"


def test_one_recorded_host_settles_its_segment():
    """scenarios.recorded_half_settles_the_segment: agreeing evidence fills the rest."""
    story = Story(computes=("cmp-a",))
    _, (build,) = _built(story)
    reboot = _generic(story, "compute_reboot_instance")
    _generic(story, "compute_stop_instance", host="cmp-a")
    story.done(host="cmp-a", launched_on="cmp-a")

    assert story.decide() == {build: ("cmp-a", CURRENT_HOST), reboot: ("cmp-a", CURRENT_HOST)}


def _kilo_live_migrated(story: Story, *, with_the_action: bool) -> dict[str, int]:
    ids = {}
    _, (ids["build"],) = _built(story)
    ids["stop"] = _generic(story, "compute_stop_instance")
    if with_the_action:
        story.action("live-migration")  # Kilo: the action alone, no event, no row
    ids["start"] = _generic(story, "compute_start_instance")
    story.done(host="cmp-b", launched_on="cmp-a")
    return ids


def test_kilo_live_migration_splits_the_segments():
    """scenarios.case2_kilo_live_migration_has_no_row_and_no_events.

    The action alone opens a zone where the host may have changed: before it
    only ``launched_on`` speaks (cmp-a), after it ``instances.host`` (cmp-b).
    """
    story = Story(computes=("cmp-a", "cmp-b"))
    ids = _kilo_live_migrated(story, with_the_action=True)

    decided = story.decide()

    assert decided[ids["build"]] == ("cmp-a", LAUNCHED_ON)
    assert decided[ids["stop"]] == ("cmp-a", LAUNCHED_ON)
    assert decided[ids["start"]] == ("cmp-b", HOST_TIMELINE)


def test_without_the_kilo_live_migration_one_segment_sees_two_hosts():
    """The same rows minus the action: one segment where launched_on (cmp-a) and
    instances.host (cmp-b) disagree, so nothing is settled."""
    story = Story(computes=("cmp-a", "cmp-b"))
    ids = _kilo_live_migrated(story, with_the_action=False)

    assert story.decide() == {e: (None, AMBIGUOUS) for e in ids.values()}


def test_live_migration_source_and_destination_events():
    """scenarios.live_migration_completed (Newton+: conductor event, typed row)."""
    story = Story(computes=("cmp-s", "cmp-d"))
    _, (build,) = _built(story)
    live = story.action("live-migration")
    conductor = story.event(live, "conductor_live_migrate_instance")
    created = story.t
    check_dest = story.event(live, "compute_check_can_live_migrate_destination")
    check_source = story.event(live, "compute_check_can_live_migrate_source")
    migrate = story.event(live, "compute_live_migration", took=S)
    pre = story.event(live, "compute_pre_live_migration")
    post = story.event(live, "compute_post_live_migration_at_destination")
    story.migration(
        "live-migration", "cmp-s", "cmp-d", "completed", created=created, updated=story.t
    )
    reboot = _generic(story, "compute_reboot_instance")
    story.done(host="cmp-d", launched_on="cmp-s")

    assert story.decide() == {
        build: ("cmp-s", HOST_TIMELINE),
        conductor: (None, CONTROL_PLANE),
        check_dest: ("cmp-d", MIGRATION_ROLE),
        check_source: ("cmp-s", MIGRATION_ROLE),
        migrate: ("cmp-s", MIGRATION_ROLE),
        pre: ("cmp-d", MIGRATION_ROLE),
        post: ("cmp-d", MIGRATION_ROLE),
        reboot: ("cmp-d", HOST_TIMELINE),
    }


def test_conductor_fault_settles_nothing():
    """scenarios.conductor_fault_settles_nothing: NoValidHost is recorded under the conductor."""
    story = Story(computes=("cmp-old", "cmp-new"))
    _, (build,) = _built(story)
    rebuild = story.action("rebuild")
    rebuild_server = story.event(
        rebuild,
        "rebuild_server",
        result=FAILED,
        fault=CONDUCTOR,
        message="No valid host was found. ",
    )
    reboot = _generic(story, "compute_reboot_instance")
    story.action("shelve")  # volume-backed, before Queens: no event
    unshelve = story.action("unshelve", gap=DAY)
    claim = story.event(unshelve, "compute_unshelve_instance")
    story.done(host="cmp-new", launched_on="cmp-new")

    assert story.decide() == {
        build: (None, NO_EVIDENCE),
        rebuild_server: (None, CONTROL_PLANE),
        reboot: (None, NO_EVIDENCE),
        claim: ("cmp-new", HOST_TIMELINE),
    }


def test_events_of_a_purged_instance_stay_null():
    """scenarios.missing_instance: archived actions whose instance row is gone."""
    story = Story(computes=("cmp-a",), instance=False)
    _, (build,) = _built(story)
    reboot = _generic(story, "compute_reboot_instance")

    assert story.decide() == {build: (None, INSTANCE_MISSING), reboot: (None, INSTANCE_MISSING)}


def test_event_whose_action_is_gone_stays_null():
    """An event row whose action row was purged: nothing places it."""
    orphan = EventRow(
        id=7, action_id=99, name="compute_reboot_instance", start=None, finish=None, result=None
    )

    (decision,) = infer([orphan], {}, {}, Story().known_hosts())

    assert (decision.event_id, decision.host, decision.rule) == (7, None, ACTION_MISSING)
