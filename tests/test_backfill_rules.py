"""Every inference rule on hand-built histories, on all three backends."""

from __future__ import annotations

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.inference import RULES
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.history import HistoryBuilder
from tests import scenarios


def _load(cell, builder: HistoryBuilder) -> None:
    with cell.engine().begin() as conn:
        builder.write(conn)


def _audit(cell) -> dict[int, tuple]:
    rows = cell.rows(f"SELECT event_id, host, rule, outcome FROM {cell.location.schema}.audit")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _hosts(cell) -> dict[int, str | None]:
    hosts = {}
    for table in ("instance_actions_events", "shadow_instance_actions_events"):
        hosts.update(dict(cell.rows(f"SELECT id, host FROM {table}")))
    return hosts


@pytest.fixture
def scenario_cell(cell):
    builder = HistoryBuilder()
    expect = scenarios.build_all(builder)
    _load(cell, builder)
    revisions.upgrade(parse_url(cell.url))
    return cell, expect


def test_every_rule_on_hand_built_histories(scenario_cell):
    cell, expect = scenario_cell
    result = run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True, batch_size=7))
    assert result.outcome == "complete"
    audit = _audit(cell)
    hosts = _hosts(cell)
    mismatches = []
    for event_id, (host, rule) in sorted(expect.items()):
        got_host, got_rule, outcome = audit[event_id]
        if (got_host, got_rule) != (host, rule) or hosts[event_id] != host:
            mismatches.append((event_id, (host, rule), (got_host, got_rule), hosts[event_id]))
        elif outcome != ("filled" if host else "left-null"):
            mismatches.append((event_id, "outcome", outcome))
    assert not mismatches, "\n".join(map(str, mismatches))
    # Every examined event is accounted for, and only NULL ones were examined.
    assert set(audit) == set(expect)
    used_rules = {rule for host, rule in expect.values() if host}
    assert used_rules == set(RULES)
    assert result.filled == sum(1 for host, _ in expect.values() if host)
    assert sum(result.filled_by_rule.values()) + sum(result.null_by_reason.values()) == len(expect)


@pytest.mark.parametrize("case", scenarios.CASES, ids=lambda f: f.__name__)
def test_release_behaviour(cell, case):
    """One history per release behaviour that a reading based on today's Nova gets wrong."""
    builder = HistoryBuilder()
    expect = scenarios.build_all(builder, scenarios=[case])
    _load(cell, builder)
    revisions.upgrade(parse_url(cell.url))
    releases = getattr(case, "releases", None)
    run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True, releases=releases))
    audit = _audit(cell)
    got = {event_id: audit[event_id][:2] for event_id in expect}
    assert got == expect


@pytest.mark.parametrize("case", scenarios.ICEHOUSE_CASES, ids=lambda f: f.__name__)
def test_icehouse_behaviour(cell, case):
    """Cells that started on Icehouse (no proof of Kilo): silent live migrations and
    rescheduled candidates' own faults (docs/accuracy.md §9)."""
    builder = HistoryBuilder()
    expect = scenarios.build_all(builder, scenarios=[case])
    _load(cell, builder)
    revisions.upgrade(parse_url(cell.url))
    result = run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    audit = _audit(cell)
    got = {event_id: audit[event_id][:2] for event_id in expect}
    assert got == expect
    eras = result.snapshot.eras
    assert eras.source == "detected" and eras.untracked == ((None, None),)


def test_a_declared_history_is_trusted_even_when_wrong(cell):
    """The same silent move, with the operator's (wrong) word that the cell started on
    Kilo: no gap, so the second reboot's fault settles the first one too, with the other
    side's host.  --releases replaces detection; a wrong history brings wrong hosts back."""
    builder = HistoryBuilder()
    expect = scenarios.build_all(
        builder, scenarios=[scenarios.icehouse_silent_live_migration_between_reboots]
    )
    _load(cell, builder)
    revisions.upgrade(parse_url(cell.url))
    result = run_backfill(
        parse_url(cell.url), BackfillOptions(include_shadow=True, releases="kilo=2014-01-01")
    )
    assert result.snapshot.eras.source == "declared" and not result.snapshot.eras.untracked
    audit = _audit(cell)
    first_reboot = sorted(expect)[1]
    assert audit[first_reboot][:2] == ("cmp-b", "host-timeline")  # the truth is cmp-a
