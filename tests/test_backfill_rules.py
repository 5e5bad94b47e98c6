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
    """One history per release behaviour the first engine got wrong (issue 10)."""
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
    rescheduled candidates' own faults (issue 18)."""
    builder = HistoryBuilder()
    expect = scenarios.build_all(builder, scenarios=[case])
    _load(cell, builder)
    revisions.upgrade(parse_url(cell.url))
    result = run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    eras = result.snapshot.eras
    assert eras.source == "detected" and eras.untracked == ((None, None),)
    audit = _audit(cell)
    got = {event_id: audit[event_id][:2] for event_id in expect}
    assert got == expect


def test_declared_kilo_joins_what_an_untracked_era_keeps_apart(cell):
    """The same silent move, with the operator's (wrong) word that the cell started on
    Kilo: no gap, one segment whose evidence disagrees (launched_on cmp-a, cmp-b's fault,
    instances.host cmp-b), so the first reboot is ambiguous instead of no-evidence."""
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
    assert audit[first_reboot][:2] == (None, "ambiguous")


def test_live_table_only_without_include_shadow(scenario_cell):
    cell, _ = scenario_cell
    run_backfill(parse_url(cell.url), BackfillOptions())
    shadow_ids = {r[0] for r in cell.rows("SELECT id FROM shadow_instance_actions_events")}
    audited = set(_audit(cell))
    assert shadow_ids and not (audited & shadow_ids)
    assert (
        cell.scalar("SELECT COUNT(*) FROM shadow_instance_actions_events WHERE host IS NOT NULL")
        == 0
    )


def test_recorded_hosts_are_never_examined_or_changed(scenario_cell):
    cell, _ = scenario_cell
    recorded = dict(
        cell.rows("SELECT id, host FROM instance_actions_events WHERE host IS NOT NULL")
    )
    assert recorded, "the scenarios include events Nova recorded itself"
    run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    after = dict(cell.rows("SELECT id, host FROM instance_actions_events"))
    assert all(after[i] == host for i, host in recorded.items())
    assert not set(recorded) & set(_audit(cell))


def test_nova_schema_table_set_unchanged(scenario_cell):
    cell, _ = scenario_cell
    before = cell.table_names()
    run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    assert cell.table_names() == before


def test_backfill_needs_the_schema_upgrade(cell):
    from actionhost_backfill.errors import SchemaNotReady

    with pytest.raises(SchemaNotReady, match="schema upgrade"):
        run_backfill(parse_url(cell.url), BackfillOptions())


def test_dry_run_writes_nothing_even_the_state_schema(scenario_cell):
    cell, expect = scenario_cell
    before = cell.checksum()
    result = run_backfill(
        parse_url(cell.url), BackfillOptions(dry_run=True, include_shadow=True, sample=2)
    )
    assert cell.checksum() == before
    assert result.run_id is None
    assert result.filled == sum(1 for host, _ in expect.values() if host)
    assert result.samples and all("rule" in s for s in result.samples)
    assert cell.scalar(f"SELECT COUNT(*) FROM {cell.location.schema}.runs") == 0


def test_dry_run_before_any_schema_change(cell):
    builder = HistoryBuilder()
    expect = scenarios.never_moved(builder, scenarios.datetime(2017, 1, 1))
    _load(cell, builder)
    before = cell.checksum()
    fingerprint = cell.fingerprint()
    result = run_backfill(parse_url(cell.url), BackfillOptions(dry_run=True))
    assert result.filled == sum(1 for host, _ in expect.values() if host)
    assert cell.checksum() == before and cell.fingerprint() == fingerprint
    assert cell.state_table_names() == set()


def test_backfill_is_idempotent(scenario_cell):
    cell, _ = scenario_cell
    run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True))
    hosts = _hosts(cell)
    second = run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True, new_run=True))
    assert second.filled == 0
    assert _hosts(cell) == hosts


def test_sqlite_datetimes_and_mysql_whole_seconds_agree(scenario_cell):
    """The same history gives the same decisions on every backend (checked per backend)."""
    cell, expect = scenario_cell
    run_backfill(parse_url(cell.url), BackfillOptions(include_shadow=True, batch_size=1))
    audit = _audit(cell)
    assert {i: (a[0], a[1]) for i, a in audit.items()} == expect
