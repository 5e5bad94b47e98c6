"""Reruns change nothing that did not change: no run, no audit row, each event counted once.

Like ``nova-manage db online_data_migrations`` run twice: the second time it
finds nothing to do, writes nothing and exits 0.  When Nova records a new
event meanwhile, the rerun decides again only the instance it belongs to.
Also: reverting a reverted run, ``verify --run`` of one, and what a dry run says.
"""

from __future__ import annotations

import json
from datetime import timedelta

from actionhost_backfill.clock import utcnow
from tests.harness import Cell, cli, prepare_scenarios


def _prepare(cell: Cell) -> dict:
    return prepare_scenarios(cell)


def _count(cell: Cell, table: str) -> int:
    return cell.scalar(f"SELECT COUNT(*) FROM {cell.location.schema}.{table}")


def _null_events(cell: Cell) -> int:
    return cell.scalar("SELECT COUNT(*) FROM instance_actions_events WHERE host IS NULL")


def _instance_left_null(cell: Cell) -> str:
    """An instance one of whose events the backfill left NULL."""
    return cell.scalar(
        "SELECT a.instance_uuid FROM instance_actions_events e "
        "JOIN instance_actions a ON a.id = e.action_id "
        f"JOIN {cell.location.schema}.audit au ON au.event_id = e.id "
        "WHERE e.host IS NULL AND au.outcome = 'left-null' ORDER BY a.instance_uuid"
    )


def _nova_records_an_event(cell: Cell, instance: str) -> int:
    """As a pre-Rocky compute does: a new action and its event, host NULL, stamped now."""
    now = utcnow().replace(microsecond=0)
    action_id = cell.scalar("SELECT MAX(id) FROM instance_actions") + 1
    event_id = cell.scalar("SELECT MAX(id) FROM instance_actions_events") + 1
    project = cell.scalar(
        "SELECT project_id FROM instance_actions WHERE instance_uuid = :u", {"u": instance}
    )
    cell.execute(
        "INSERT INTO instance_actions (id, action, instance_uuid, request_id, user_id, "
        "project_id, start_time, finish_time, created_at, updated_at, deleted) "
        "VALUES (:id, 'reboot', :u, 'req-new', 'user', :p, :t, :f, :t, :f, 0)",
        {"id": action_id, "u": instance, "p": project, "t": now - timedelta(seconds=5), "f": now},
    )
    cell.execute(
        "INSERT INTO instance_actions_events (id, event, action_id, start_time, finish_time, "
        "result, host, created_at, updated_at, deleted) "
        "VALUES (:id, 'compute_reboot_instance', :a, :t, :f, 'Success', NULL, :t, :f, 0)",
        {"id": event_id, "a": action_id, "t": now - timedelta(seconds=5), "f": now},
    )
    return event_id


def _events_of(cell: Cell, instance: str) -> set[int]:
    return {
        r[0]
        for r in cell.rows(
            "SELECT e.id FROM instance_actions_events e JOIN instance_actions a "
            "ON a.id = e.action_id WHERE a.instance_uuid = :u",
            {"u": instance},
        )
    }


def test_rerun_of_a_finished_backfill_writes_nothing_and_counts_once(cell):
    _prepare(cell)
    first = cli("backfill", "--db", cell.url, "--no-progress", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["left_null"] > 0
    runs, audit = _count(cell, "runs"), _count(cell, "audit")

    again = cli("backfill", "--db", cell.url, "--no-progress")
    assert again.exit_code == 0, again.output
    lines = again.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nothing new to decide"), again.stdout
    assert "run 1" in lines[0]
    assert (_count(cell, "runs"), _count(cell, "audit")) == (runs, audit)

    payload = json.loads(cli("backfill", "--db", cell.url, "--json").stdout)
    assert payload["nothing_to_decide"] is True and payload["run_id"] is None
    assert payload["already_decided"] == _null_events(cell)
    dry = cli("backfill", "--db", cell.url, "--dry-run", "--no-progress")
    assert dry.exit_code == 0 and dry.stdout.startswith("nothing new to decide"), dry.stdout
    assert (_count(cell, "runs"), _count(cell, "audit")) == (runs, audit)

    verified = json.loads(cli("verify", "--db", cell.url, "--json").stdout)
    assert sum(verified["null_by_reason"].values()) == _null_events(cell)
    status = json.loads(cli("status", "--db", cell.url, "--json").stdout)
    assert status["decided"]["left_null"] == _null_events(cell)


def test_a_rerun_on_another_decision_basis_decides_again(cell, monkeypatch):
    """NULL decisions are kept only for the basis they were made on: an operator who
    excludes a rule (or stops excluding it), or a toolkit whose rules changed,
    gets every NULL event decided again, never "nothing new to decide"."""
    from actionhost_backfill.engine import settled

    _prepare(cell)
    assert cli("backfill", "--db", cell.url, "--no-progress").exit_code == 0
    nulls = _null_events(cell)

    excluded = cli(
        "backfill", "--db", cell.url, "--no-progress", "--json", "--exclude-rule", "host-timeline"
    )
    assert excluded.exit_code == 0, excluded.output
    payload = json.loads(excluded.stdout)
    assert payload["nothing_to_decide"] is False and payload["run_id"] == 2
    assert payload["already_decided"] == 0
    assert payload["examined"] == nulls, "every NULL event decided again on the new basis"
    # The same basis again: nothing new.
    same = cli("backfill", "--db", cell.url, "--no-progress", "--exclude-rule", "host-timeline")
    assert same.exit_code == 0 and same.stdout.startswith("nothing new to decide"), same.stdout
    # Rules of another version: decided again, though the options are the first run's.
    monkeypatch.setattr(settled, "RULES_VERSION", "a later version")
    newer = json.loads(cli("backfill", "--db", cell.url, "--no-progress", "--json").stdout)
    assert newer["nothing_to_decide"] is False and newer["examined"] == _null_events(cell)


def test_rerun_after_nova_records_an_event_decides_only_that_instance(cell):
    _prepare(cell)
    assert cli("backfill", "--db", cell.url, "--no-progress").exit_code == 0
    instance = _instance_left_null(cell)
    new_event = _nova_records_an_event(cell, instance)
    nulls_of_instance = {
        i
        for i in _events_of(cell, instance)
        if cell.scalar("SELECT host FROM instance_actions_events WHERE id = :i", {"i": i}) is None
    }
    assert new_event in nulls_of_instance and len(nulls_of_instance) > 1

    rerun = cli("backfill", "--db", cell.url, "--no-progress", "--json")
    assert rerun.exit_code == 0, rerun.output
    payload = json.loads(rerun.stdout)
    assert payload["run_id"] == 2 and payload["outcome"] == "complete"
    decided = {
        r[0]
        for r in cell.rows(f"SELECT event_id FROM {cell.location.schema}.audit WHERE run_id = 2")
    }
    assert decided == nulls_of_instance, "only the instance with new evidence is decided again"
    assert payload["already_decided"] == _null_events(cell) - len(decided) + payload["filled"]

    # Each event counted once: its latest decision.
    verified = json.loads(cli("verify", "--db", cell.url, "--json").stdout)
    assert verified["exit_code"] == 0
    assert sum(verified["null_by_reason"].values()) == _null_events(cell)
    status = json.loads(cli("status", "--db", cell.url, "--json").stdout)
    assert status["decided"]["left_null"] == _null_events(cell)
    again = cli("backfill", "--db", cell.url, "--no-progress")
    assert again.exit_code == 0 and again.stdout.startswith("nothing new to decide"), again.stdout


def test_reverted_run_reverts_and_verifies_as_reverted(cell):
    _prepare(cell)
    assert cli("backfill", "--db", cell.url, "--no-progress").exit_code == 0
    assert cli("revert", "--run", "1", "--db", cell.url, "--no-progress").exit_code == 0
    assert _count(cell, "runs") == 2

    again = cli("revert", "--run", "1", "--db", cell.url, "--no-progress")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip().splitlines() == [
        "run 1 was already reverted by revert run 2: nothing to undo; no revert run recorded"
    ]
    assert _count(cell, "runs") == 2, "no empty revert run"
    payload = json.loads(cli("revert", "--run", "1", "--db", cell.url, "--json").stdout)
    assert payload["nothing_to_revert"] is True and payload["revert_run_id"] is None

    verify = cli("verify", "--run", "1", "--db", cell.url)
    assert verify.exit_code == 0, verify.output
    assert "run 1 was reverted by revert run 2" in verify.stdout
    verified = json.loads(cli("verify", "--run", "1", "--db", cell.url, "--json").stdout)
    assert verified["reverted"] == [{"run_id": 1, "reverted_by": 2}]


def test_dry_run_says_what_it_planned_not_that_it_completed(cell):
    _prepare(cell)
    dry = cli("backfill", "--db", cell.url, "--dry-run", "--no-progress")
    assert dry.exit_code == 0, dry.output
    assert "result: complete" not in dry.stdout and " batches" not in dry.stdout
    assert "nothing was written" in dry.stdout
    payload = json.loads(cli("backfill", "--db", cell.url, "--dry-run", "--json").stdout)
    assert f"would fill {payload['filled']:,}" in dry.stdout
    assert f"planned {payload['examined']:,} events" in dry.stdout
    assert _count(cell, "runs") == 0
