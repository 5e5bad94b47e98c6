"""The simulator: deterministic, Nova-shaped, and its truth agrees with its own rows."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from actionhost_backfill import tables
from actionhost_backfill.db import parse_url
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.event_roles import Role, is_selection, role_of
from actionhost_backfill.simulate import SimulationOptions, simulate
from tests import harness

SMALL = SimulationOptions(seed=7, instances=120, hosts=8, days=200)


def _simulated(url: str, options: SimulationOptions = SMALL) -> harness.Cell:
    simulate(parse_url(url), options)
    return harness.Cell(url)


def test_same_seed_same_history(blank_db, backend, server_url, tmp_path, request):
    first = _simulated(blank_db)
    second = _simulated(harness.another_database(backend, server_url, tmp_path, request, "second"))
    third = _simulated(
        harness.another_database(backend, server_url, tmp_path, request, "third"),
        SimulationOptions(seed=8, instances=120, hosts=8, days=200),
    )
    try:
        assert first.checksum(state=False) == second.checksum(state=False)
        assert first.checksum(state=False) != third.checksum(state=False)
        assert _truth(first) == _truth(second) != _truth(third)
    finally:
        for cell in (first, second, third):
            cell.dispose()


def _truth(cell: harness.Cell) -> list[tuple]:
    return cell.rows(
        f"SELECT event_table, event_id, event, host, recorded "
        f"FROM {cell.location.schema}.simulation_truth ORDER BY event_table, event_id"
    )


def _events(cell: harness.Cell) -> list[tuple]:
    """(table, id, event, host, start, finish, action, instance) for every event."""
    rows = []
    with cell.engine().connect() as conn:
        for prefix in ("", "shadow_"):
            events = tables.nova(f"{prefix}instance_actions_events")
            actions = tables.nova(f"{prefix}instance_actions")
            query = sa.select(
                sa.literal(f"{prefix}instance_actions_events"),
                events.c.id,
                events.c.event,
                events.c.host,
                events.c.start_time,
                events.c.finish_time,
                actions.c.action,
                actions.c.instance_uuid,
            ).join_from(events, actions, actions.c.id == events.c.action_id)
            rows += [tuple(r) for r in conn.execute(query)]
    return rows


def test_truth_and_rows_agree(blank_db):
    cell = _simulated(blank_db)
    schema = cell.location.schema
    try:
        truth = {
            (table, event_id): (name, host, recorded)
            for table, event_id, name, host, recorded in cell.rows(
                f"SELECT event_table, event_id, event, host, recorded FROM {schema}.simulation_truth"
            )
        }
        events = _events(cell)
        assert len(events) > 1000
        assert {(e[0], e[1]) for e in events} == set(truth)  # every event has one truth
        cutover = datetime.fromisoformat(
            cell.scalar(f"SELECT value FROM {schema}.simulation_meta WHERE name = 'cutover'")
        )
        before = after = 0
        for table, event_id, name, host, start, finish, _action, _instance in events:
            assert start.microsecond == 0 and finish.microsecond == 0  # MySQL-like seconds
            truth_name, truth_host, recorded = truth[(table, event_id)]
            assert truth_name == name and truth_host
            if start >= cutover:
                after += 1
                assert host == truth_host and recorded  # Nova records hosts since Rocky
            else:
                before += 1
                assert host is None and not recorded
        assert before > after > 0

        # Migrations agree with the events that ran on their source and destination.
        moves: dict[str, list[tuple]] = {}
        for prefix in ("", "shadow_"):
            for row in cell.rows(
                f"SELECT instance_uuid, source_compute, dest_compute, deleted "
                f"FROM {prefix}migrations"
            ):
                moves.setdefault(row[0], []).append(row)
        checked = 0
        for table, event_id, name, _host, _start, _finish, action, instance in events:
            role = role_of(name, action)
            if role not in (Role.SOURCE, Role.DEST) or is_selection(name, action):
                continue  # a rejected candidate is in no migration row
            sides = {m[1] if role is Role.SOURCE else m[2] for m in moves.get(instance, [])}
            assert truth[(table, event_id)][1] in sides, (name, instance)
            checked += 1
        assert checked > 100

        # Deleted instances' migrations are soft-deleted; archived rows are all in shadow_*.
        deleted = {u for (u,) in cell.rows("SELECT uuid FROM instances WHERE deleted != 0")}
        for instance in deleted:
            assert all(m[3] != 0 for m in moves.get(instance, []))
        archived = {u for (u,) in cell.rows("SELECT uuid FROM shadow_instances")}
        assert archived and not archived & {
            u for (u,) in cell.rows("SELECT DISTINCT instance_uuid FROM instance_actions")
        }
        compute_hosts = {h for (h,) in cell.rows("SELECT host FROM services")}
        assert {h for (h,) in cell.rows("SELECT host FROM instance_faults")} <= compute_hosts
    finally:
        cell.dispose()


def test_refuses_a_database_that_holds_events(blank_db):
    cell = _simulated(blank_db)
    try:
        before = cell.checksum()
        result = harness.cli("simulate", "--db", blank_db, "--instances", "5")
        assert result.exit_code == ExitCode.BAD_INPUT
        assert "already holds instance action events" in result.stderr
        assert cell.checksum() == before
    finally:
        cell.dispose()


@pytest.mark.backends("sqlite")
def test_bad_sizes_are_bad_input(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    for args in (["--hosts", "2"], ["--cutover", "1.5"], ["--events", "5", "--instances", "5"]):
        result = harness.cli("simulate", "--db", url, *args)
        assert result.exit_code == ExitCode.BAD_INPUT, args
        assert result.stderr.startswith("error: ")
    assert not (tmp_path / "x.sqlite").exists()


def test_events_option_sizes_the_history(blank_db):
    result = simulate(parse_url(blank_db), SimulationOptions(seed=3, events=4000))
    assert 3000 <= result.events <= 5000
    with sa.create_engine(blank_db).connect() as conn:
        live = conn.execute(sa.text("SELECT COUNT(*) FROM instance_actions_events")).scalar()
    assert live == result.counts["instance_actions_events"]
