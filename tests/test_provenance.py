"""Recorded or inferred: every host the operator views show says where it came from."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.reports import views
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.history import HistoryBuilder
from tests import harness

T0 = datetime(2018, 3, 1, 10, 0, 0)
S = timedelta(seconds=1)
UUID = "22222222-3333-4444-5555-666666666666"


def _history(h: HistoryBuilder) -> None:
    """A never-moved instance: three failed reboots before Rocky (NULL), one recorded after."""
    h.service("cmp-a")
    h.instance(UUID, host="cmp-a", project_id="proj", created_at=T0, launched_at=T0 + 30 * S)
    a = h.action(UUID, "create", T0, request_id="req-create", project_id="proj")
    h.event(UUID, a, "compute__do_build_and_run_instance", T0 + S, T0 + 30 * S)
    for day in (1, 2, 3):
        start = T0 + timedelta(days=day)
        r = h.action(UUID, "reboot", start, request_id=f"req-reboot-{day}", project_id="proj")
        h.fault(UUID, "cmp-a", start + 5 * S, message="Unexpected error while running command.")
        h.event(UUID, r, "compute_reboot_instance", start + S, start + 6 * S, result="Error")
    start = T0 + timedelta(days=200)
    r = h.action(UUID, "reboot", start, request_id="req-rocky", project_id="proj")
    h.event(
        UUID, r, "compute_reboot_instance", start + S, start + 3 * S, result="Error", host="cmp-a"
    )


@pytest.fixture
def backfilled(cell):
    h = HistoryBuilder()
    _history(h)
    engine = create_engine(parse_url(cell.url))
    try:
        with engine.begin() as conn:
            h.write(conn)
    finally:
        engine.dispose()
    revisions.upgrade(parse_url(cell.url))
    result = run_backfill(parse_url(cell.url), BackfillOptions())
    assert result.filled == 4
    return cell


def _show(cell, request_id: str, *args: str):
    result = harness.cli("events", "show", UUID, request_id, "--db", cell.url, *args)
    assert result.exit_code == 0, result.stderr
    return result


def test_table_marks_recorded_inferred_and_changed(backfilled):
    cell = backfilled
    inferred = _show(cell, "req-reboot-1").stdout
    assert "cmp-a" in inferred and "inferred · fault-record · run 1" in inferred
    recorded = _show(cell, "req-rocky").stdout
    assert "| recorded " in recorded and "inferred" not in recorded
    cell.execute(
        "UPDATE instance_actions_events SET host = 'cmp-z' WHERE id = "
        "(SELECT e.id FROM instance_actions_events e JOIN instance_actions a "
        "ON a.id = e.action_id WHERE a.request_id = 'req-reboot-2')"
    )
    changed = _show(cell, "req-reboot-2").stdout
    assert "changed since run 1 wrote cmp-a (fault-record)" in changed and "cmp-z" in changed


def test_json_stays_the_api_body_unless_asked(backfilled):
    cell = backfilled
    plain = json.loads(_show(cell, "req-reboot-1", "--json").stdout)
    assert set(plain) == {"format", "instanceAction"}  # the API body and its format version
    with_provenance = json.loads(_show(cell, "req-reboot-1", "--json", "--provenance").stdout)
    assert with_provenance["instanceAction"] == plain["instanceAction"]
    (entry,) = with_provenance["provenance"]
    assert entry["source"] == "inferred" and entry["rule"] == "fault-record"
    assert entry["run_id"] == 1 and entry["host"] == "cmp-a"
    recorded = json.loads(_show(cell, "req-rocky", "--json", "--provenance").stdout)
    assert recorded["provenance"][0]["source"] == "recorded"


def test_member_view_shows_neither_host_nor_provenance(backfilled):
    cell = backfilled
    for request_id in ("req-reboot-1", "req-rocky"):
        member = _show(cell, request_id, "--as", "member", "--json", "--provenance")
        body = json.loads(member.stdout)
        assert set(body) == {"format", "instanceAction"}
        plain = json.loads(_show(cell, request_id, "--as", "member", "--json").stdout)
        assert body == plain
        table = _show(cell, request_id, "--as", "member").stdout
        for word in ("cmp-a", "inferred", "recorded", "fault-record"):
            assert word not in table


def test_failures_split_recorded_and_inferred(backfilled):
    cell = backfilled
    result = harness.cli("failures", "--db", cell.url, "--all-time", "--json")
    assert result.exit_code == 0, result.stderr
    (host,) = json.loads(result.stdout)["hosts"]
    assert host["host"] == "cmp-a" and host["failed"] == 4
    assert host["provenance"]["recorded"] == 1 and host["provenance"]["inferred"] == 3
    assert host["provenance"]["inferred_by_rule"] == {"fault-record": 3}
    only = harness.cli("failures", "--db", cell.url, "--all-time", "--recorded-only", "--json")
    (recorded,) = json.loads(only.stdout)["hosts"]
    assert recorded["failed"] == 1 and recorded["request_ids"] == ["req-rocky"]
    table = harness.cli("failures", "--db", cell.url, "--all-time").stdout
    assert "Rec/Inf" in table and "| 1/3 " in table  # recorded/inferred


def test_no_state_schema_means_provenance_unknown(cell):
    h = HistoryBuilder()
    _history(h)
    engine = create_engine(parse_url(cell.url))
    try:
        with engine.begin() as conn:
            h.write(conn)
    finally:
        engine.dispose()
    # Someone wrote a host without this toolkit's audit: never guessed.
    cell.execute(
        "UPDATE instance_actions_events SET host = 'cmp-a' WHERE event = 'compute_reboot_instance'"
    )
    assert "provenance unknown" in _show(cell, "req-reboot-1").stdout
    result = harness.cli("failures", "--db", cell.url, "--all-time", "--recorded-only")
    assert result.exit_code == ExitCode.BAD_INPUT and "--recorded-only" in result.stderr
    report = views.failures(parse_url(cell.url), since=None)
    assert report.hosts[0].sources == {"unknown": 4} and not report.provenance_available
    assert "provenance unknown" in harness.cli("failures", "--db", cell.url, "--all-time").stdout


def test_purged_audit_means_provenance_unknown(backfilled):
    cell = backfilled
    schema_name = cell.location.schema
    cell.execute(
        f"DELETE FROM {schema_name}.audit WHERE event_id = (SELECT e.id FROM "
        "instance_actions_events e JOIN instance_actions a ON a.id = e.action_id "
        "WHERE a.request_id = 'req-reboot-3')"
    )
    assert "provenance unknown" in _show(cell, "req-reboot-3").stdout
    # Events the runs never examined are still known to be recorded.
    assert "| recorded " in _show(cell, "req-rocky").stdout
    found = views.load_actions(
        parse_url(cell.url), UUID, request_id="req-reboot-1", provenance=True
    )
    (event,) = found.events[found.actions[0]["id"]]
    assert found.provenance[event["id"]].source == "inferred"
