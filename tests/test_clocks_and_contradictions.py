"""Rows that contradict Nova, clocks that disagree, and DB surgery the operator declares.

Each history is hand-built the way Nova wrote it except for the one thing the
test is about; without these guards the rules would write a wrong host on
each (docs/accuracy.md §11).  On all three backends.
"""

from __future__ import annotations

import json
from datetime import datetime

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.engine import clocks
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.inference import RULES
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.accuracy import accuracy
from actionhost_backfill.sim.history import HistoryBuilder
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from actionhost_backfill.state.location import resolve_state_location
from tests import harness, scenarios
from tests.scenarios import CONDUCTOR, DAY, HOUR, MIN, Life, S

BUILD = "compute__do_build_and_run_instance"
T0 = datetime(2016, 6, 1)


def _backfill(cell, builder: HistoryBuilder, before=None, **options):
    with cell.engine().begin() as conn:
        builder.write(conn)
    revisions.upgrade(parse_url(cell.url))
    if before is not None:
        before()
    result = run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True, **options))
    assert result.outcome == "complete"
    rows = cell.rows(f"SELECT event_id, host, rule FROM {cell.location.schema}.audit")
    return result, {r[0]: (r[1], r[2]) for r in rows}


def _wrong(audit: dict, truth: dict) -> list:
    """Events written with a host other than the one they ran on."""
    return [(e, audit[e], truth[e]) for e in truth if audit[e][0] not in (None, truth[e])]


# --------------------------------------------------------------------------- contradicting rows


def test_contradicting_rows_leave_their_action_null(cell):
    """A patched Nova: each build attempt's row keeps its own finish and result.

    Nova's action_event_finish writes every finish into one row
    (filter_by(event=...).first(), 2015.1.0 ... 18.0.0).  Here the first
    attempt failed on cmp-x with its own Error and fault just before the retry,
    and the second succeeded on cmp-b: read as Nova would have written it, the
    fault falls inside the last attempt's window and fault-record wrote cmp-x.
    """
    h = HistoryBuilder()
    scenarios.register_services(h)
    life = Life(h, T0)
    a = life.action("create", gap=S)
    h.own_finishes.add(a)  # as no Nova release writes them
    t1 = life.at(2 * S)
    first = h.event_start(life.uuid, a, BUILD, t1)
    h.fault(life.uuid, "cmp-x", t1 + 9 * S, message="Build of instance aborted")
    h.event_finish(a, BUILD, t1 + 10 * S, result="Error")
    second = h.event_start(life.uuid, a, BUILD, t1 + 10 * S)
    h.event_finish(a, BUILD, t1 + 50 * S)
    life.t = t1 + 50 * S
    life.generic("compute_reboot_instance", "cmp-b", "current-host")
    (reboot_event,) = life.expect
    # An ordinary action too: a reboot retried, each row with its own result.
    again = life.action("reboot")
    h.own_finishes.add(again)
    t2 = life.at(2 * S)
    failed = h.event_start(life.uuid, again, "compute_reboot_instance", t2)
    h.fault(life.uuid, "cmp-b", t2 + 4 * S)
    h.event_finish(again, "compute_reboot_instance", t2 + 5 * S, result="Error")
    retried = h.event_start(life.uuid, again, "compute_reboot_instance", t2 + 9 * S)
    h.event_finish(again, "compute_reboot_instance", t2 + 15 * S)
    life.done(host="cmp-b", launched_on="cmp-b", launched_at=t1 + 49 * S)
    truth = {
        first: "cmp-x",
        second: "cmp-b",
        reboot_event: "cmp-b",
        failed: "cmp-b",
        retried: "cmp-b",
    }

    result, audit = _backfill(cell, h)

    assert not _wrong(audit, truth)
    assert audit[first] == (None, "contradiction")
    assert audit[second] == (None, "contradiction")
    assert audit[reboot_event] == ("cmp-b", "current-host")
    assert audit[failed] == audit[retried] == (None, "contradiction")
    assert result.null_by_reason["contradiction"] == 4

    # explain names the behaviour the rows contradict.
    shown = harness.cli("explain", str(second), "--db", cell.url, "--json")
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["decision"] == {"host": None, "rule": "contradiction"}
    assert "filter_by(event=...).first()" in body["contradicts"]


# --------------------------------------------------------------------------- clocks


def _skewed_live_migrations(h: HistoryBuilder, skew) -> tuple[dict, list[int], list[int]]:
    """Two Liberty+ live migrations an hour apart; nova-api's clock ``skew`` ahead.

    Each request is stamped ``skew`` late (pack_action_start: the API's
    context.timestamp); its conductor creates the migration row at once
    (conductor's clock), so the second move's row predates its own action.
    """
    scenarios.register_services(h)
    life = Life(h, T0)
    truth: dict[int, str] = {}

    def api_action(name: str, when):
        return h.action(life.uuid, name, when + skew)

    def step(action_id, name, host, when, took=5 * S):
        event_id = h.event_start(life.uuid, action_id, name, when)
        h.event_finish(action_id, name, when + took)
        truth[event_id] = host
        return event_id

    build = api_action("create", T0)
    step(build, BUILD, "cmp-s", T0 + S, took=40 * S)
    # A stop whose compute started at once: the cell shows the skew by it.
    stop = api_action("stop", T0 + DAY)
    step(stop, "compute_stop_instance", "cmp-s", T0 + DAY)
    start = api_action("start", T0 + DAY + HOUR)
    step(start, "compute_start_instance", "cmp-s", T0 + DAY + HOUR)
    moves = []
    lm_events: list[list[int]] = []
    for source, dest, when in (
        ("cmp-s", "cmp-d", T0 + 2 * DAY),
        ("cmp-d", "cmp-c", T0 + 2 * DAY + 10 * MIN),
    ):
        a = api_action("live-migration", when)
        moves.append(a)
        conductor = h.event_start(life.uuid, a, "conductor_live_migrate_instance", when)
        h.migration(
            life.uuid,
            kind="live-migration",
            source=source,
            dest=dest,
            status="completed",
            created=when,
            updated=when + 5 * MIN,
            source_node=None,
            dest_node=None,
        )
        ids = [
            step(a, "compute_check_can_live_migrate_destination", dest, when + 2 * S),
            step(a, "compute_check_can_live_migrate_source", source, when + 3 * S),
        ]
        h.event_finish(a, "conductor_live_migrate_instance", when + 9 * S)
        truth[conductor] = CONDUCTOR
        ids += [
            step(a, "compute_live_migration", source, when + 10 * S, took=S),
            step(a, "compute_pre_live_migration", dest, when + 12 * S),
            step(a, "compute_post_live_migration_at_destination", dest, when + 2 * MIN),
        ]
        lm_events.append(ids)
    reboot = api_action("reboot", T0 + 3 * DAY)
    step(reboot, "compute_reboot_instance", "cmp-c", T0 + 3 * DAY + S)
    h.update_instance(life.uuid, host="cmp-c", node=scenarios.node("cmp-c"), launched_on="cmp-s")
    return truth, moves, [e for ids in lm_events for e in ids]


def test_api_clock_ahead_does_not_move_rows_to_the_neighbouring_action(cell):
    """nova-api 3 s ahead: the second move's row was created before its own action's
    start_time, inside the first move's window (which ran up to the next request
    with no margin): the first move took it as its final row and its events
    were written with the second move's hosts.  Measured first, the skew widens
    the window, and the first move's events had all ended before the row."""
    h = HistoryBuilder()
    truth, _, migration_events = _skewed_live_migrations(h, 3 * S)

    def dry_run_before_the_backfill():  # as runbook 3 has it: the dry run reports the skew
        shown = harness.cli("backfill", "--dry-run", "--db", cell.url, "--no-progress")
        assert "nova-api ahead of the conductors by up to 3 s" in shown.output

    result, audit = _backfill(cell, h, before=dry_run_before_the_backfill)

    assert not _wrong(audit, truth)
    for event_id in migration_events:
        assert audit[event_id] == (truth[event_id], "migration-role")
    clock = result.snapshot.clock
    assert clock["api_ahead_max_seconds"] == 3.0
    assert clock["margin_seconds"] == 4.0


def test_clock_skew_on_a_simulated_history(blank_db):
    """``simulate --api-clock-skew 3``: nothing written is wrong, and the skew is found."""
    options = SimulationOptions(seed=5, events=4000, hosts=12, days=365, api_clock_skew=3.0)
    simulate(parse_url(blank_db), options)
    revisions.upgrade(parse_url(blank_db))
    result = run_backfill(parse_url(blank_db), BackfillOptions(include_shadow=True))
    report = accuracy(parse_url(blank_db))
    assert report.filled > 1000
    assert report.wrong == 0, report.wrong_examples
    assert result.snapshot.clock["api_ahead_max_seconds"] >= 2.0


def test_early_rows_are_judged_alike_a_range_of_instances_at_a_time(blank_db, monkeypatch):
    """The migration rows and their moves are read a range of instances at a time (the
    client never holds the cell's): ranges of 3 instances give the report of one range."""
    options = SimulationOptions(seed=5, events=4000, hosts=12, days=365, api_clock_skew=3.0)
    simulate(parse_url(blank_db), options)
    url = parse_url(blank_db)
    location = resolve_state_location(url)

    def judged(instances: int):
        monkeypatch.setattr(clocks, "RANGE_INSTANCES", instances)
        engine = create_engine(url, location)
        try:
            with engine.connect() as conn:
                snapshot = EvidenceSnapshot(conn, location, audit_available=False)
                snapshot.take()
                report = snapshot.skew_report
                snapshot.drop()
        finally:
            engine.dispose()
        return report.checked, {m: sorted(v) for m, v in report.early_rows.items()}

    whole = judged(10**9)
    assert whole[1]  # the skewed API made rows that look early: something to compare
    assert judged(3) == whole


# --------------------------------------------------------------------------- hosts moved by hand


def _surgery(h: HistoryBuilder) -> dict[int, str]:
    """Built on cmp-s; a Kilo live migration (no row, no event) to cmp-d; a reboot
    there; cmp-d dies and the operator runs UPDATE instances SET host='cmp-e',
    then a hard reboot (no action, no row records the move)."""
    scenarios.register_services(h)
    life = Life(h, T0)
    life.build("cmp-s", "host-timeline")
    life.action("live-migration")
    first = life.generic("compute_reboot_instance", "cmp-d")
    second = life.generic("compute_reboot_instance", "cmp-e")
    life.done(host="cmp-e", launched_on="cmp-s")
    events = {
        a: [r[0] for r in h.rows["instance_actions_events"] if r[2] == a] for a in (first, second)
    }
    return {events[first][0]: "cmp-d", events[second][0]: "cmp-e"}


def test_db_surgery_is_invisible_unless_the_operator_excludes_the_rules(cell):
    h = HistoryBuilder()
    truth = _surgery(h)
    before, after = sorted(truth)
    with cell.engine().begin() as conn:
        h.write(conn)
    revisions.upgrade(parse_url(cell.url))

    # What the data says: instances.host settles the last segment, surgery and all.
    plan = harness.cli("backfill", "--dry-run", "--db", cell.url, "--json", "--no-progress")
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.output)["filled_by_rule"].get("host-timeline", 0) >= 2

    # The operator knows better.
    excluded = ["--exclude-rule", "current-host", "--exclude-rule", "host-timeline"]
    done = harness.cli("backfill", "--db", cell.url, "--json", "--no-progress", *excluded)
    assert done.exit_code == 0, done.output
    body = json.loads(done.output)
    assert body["excluded_rules"] == ["current-host", "host-timeline"]
    assert "host-timeline" not in body["filled_by_rule"]
    assert "current-host" not in body["filled_by_rule"]
    hosts = dict(cell.rows("SELECT id, host FROM instance_actions_events"))
    assert hosts[before] is None and hosts[after] is None
    rules = dict(cell.rows(f"SELECT event_id, rule FROM {cell.location.schema}.audit"))
    assert rules[before] == rules[after] == "excluded-rule"

    shown = harness.cli("explain", str(before), "--db", cell.url, "--json", *excluded)
    body = json.loads(shown.output)
    assert body["decision"] == {"host": None, "rule": "excluded-rule"}
    assert body["excluded"] == {"host": "cmp-e", "rule": "host-timeline"}
    shown = harness.cli("explain", str(before), "--db", cell.url, "--json")
    assert json.loads(shown.output)["relies_on"].startswith("the host changes only")


def test_unknown_rule_is_bad_input_listing_the_valid_ones(cell):
    for command in (["backfill"], ["backfill", "--dry-run"], ["validate"], ["explain", "1"]):
        result = harness.cli(*command, "--db", cell.url, "--exclude-rule", "curent-host")
        assert result.exit_code == ExitCode.BAD_INPUT, (command, result.output)
        assert "curent-host" in result.output
        assert all(rule in result.output for rule in RULES)
    assert not cell.rows("SELECT id FROM instance_actions_events WHERE host IS NOT NULL")


SEGMENT_RULES = ("current-host", "host-timeline", "launched-on", "volume-connector", "shelved-host")


def test_simulated_surgery_and_contradictions(blank_db):
    """``simulate --surgery-rate --contradiction-rate``: the surgery shows as wrong
    hosts only through the rules that carry a host across time, and excluding
    them leaves none; contradicting rows are left NULL."""
    options = SimulationOptions(
        seed=3, events=4000, hosts=12, days=365, surgery_rate=0.03, contradiction_rate=0.5
    )
    simulate(parse_url(blank_db), options)
    revisions.upgrade(parse_url(blank_db))
    url = parse_url(blank_db)
    plan = run_backfill(url, BackfillOptions(include_shadow=True, dry_run=True))
    assert plan.null_by_reason["contradiction"] > 0
    result = run_backfill(
        url, BackfillOptions(include_shadow=True, exclude_rules=frozenset(SEGMENT_RULES))
    )
    assert result.null_by_reason["excluded-rule"] > 0
    report = accuracy(url)
    assert report.filled > 500
    assert report.wrong == 0, report.wrong_examples
    assert not set(report.by_rule) & set(SEGMENT_RULES)
