"""The 2.62 event view (host for admins, hostId for everyone) and the failing-hosts report."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.reports import views
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.history import HistoryBuilder
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from tests import harness

T0 = datetime(2019, 3, 1, 10, 0, 0)
S = timedelta(seconds=1)


def sha(text: str) -> str:
    return hashlib.sha224(text.encode()).hexdigest()


def test_host_id_matches_novas_published_sample():
    assert (
        views.host_id("compute", "6f70656e737461636b20342065766572")
        == "2091634baaccdc4c5a1d57069c833e402921df696b7f970791b12ec6"
    )
    assert views.host_id(None, "p") == "" and views.host_id("", "p") == ""


def _write(url: str, build) -> dict:
    h = HistoryBuilder()
    ids = build(h)
    engine = create_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            h.write(conn)
    finally:
        engine.dispose()
    return ids


def _resize_history(h: HistoryBuilder) -> dict:
    uuid = h.instance(
        "11111111-2222-3333-4444-555555555555", host="cmp-b", project_id="proj-inst", created_at=T0
    )
    a = h.action(uuid, "resize", T0 + S, request_id="req-resize", project_id="proj-act")
    h.event(uuid, a, "conductor_migrate_server", T0 + 2 * S, T0 + 3 * S)
    h.event(uuid, a, "compute_prep_resize", T0 + 4 * S, T0 + 5 * S, host="cmp-b")
    h.event(
        uuid, a, "compute_resize_instance", T0 + 6 * S, T0 + 9 * S, host="cmp-a", result="Error"
    )
    b = h.action(uuid, "stop", T0 + 60 * S, request_id="req-stop", project_id=None)
    h.event(uuid, b, "compute_stop_instance", T0 + 61 * S, T0 + 62 * S, host="cmp-b")
    return {"uuid": uuid}


TRACEBACK = "Traceback (most recent call last):\n..."


def _expected(role: str) -> dict:
    def event(name, start, finish, result, host):
        body = {
            "event": name,
            "start_time": start,
            "finish_time": finish,
            "result": result,
        }
        if role == "admin":
            body["traceback"] = TRACEBACK if result == "Error" else None
            body["host"] = host
        body["hostId"] = sha("proj-act" + host) if host else ""
        return body

    return {
        "instanceAction": {
            "action": "resize",
            "instance_uuid": "11111111-2222-3333-4444-555555555555",
            "request_id": "req-resize",
            "user_id": "user-1",
            "project_id": "proj-act",
            "start_time": "2019-03-01T10:00:01.000000",
            "message": None,
            "updated_at": None,
            "events": [
                event(
                    "compute_resize_instance",
                    "2019-03-01T10:00:06.000000",
                    "2019-03-01T10:00:09.000000",
                    "Error",
                    "cmp-a",
                ),
                event(
                    "compute_prep_resize",
                    "2019-03-01T10:00:04.000000",
                    "2019-03-01T10:00:05.000000",
                    "Success",
                    "cmp-b",
                ),
                event(
                    "conductor_migrate_server",
                    "2019-03-01T10:00:02.000000",
                    "2019-03-01T10:00:03.000000",
                    "Success",
                    None,
                ),
            ],
        }
    }


@pytest.mark.parametrize("role", ["admin", "member"])
def test_show_json_is_the_262_body(cell, role):
    ids = _write(cell.url, _resize_history)
    result = harness.cli(
        "events", "show", ids["uuid"], "req-resize", "--db", cell.url, "--as", role, "--json"
    )
    assert result.exit_code == 0, result.stderr
    # The API body, plus the format version every --json document carries (docs/json.md).
    assert json.loads(result.stdout) == {"format": 1, **_expected(role)}


def test_host_id_falls_back_to_the_instance_project(cell):
    ids = _write(cell.url, _resize_history)
    result = harness.cli(
        "events", "show", ids["uuid"], "req-stop", "--db", cell.url, "--as", "member", "--json"
    )
    body = json.loads(result.stdout)["instanceAction"]
    assert body["project_id"] is None
    assert body["events"][0]["hostId"] == sha("proj-inst" + "cmp-b")


def test_member_table_and_list(cell):
    ids = _write(cell.url, _resize_history)
    member = harness.cli(
        "events", "show", ids["uuid"], "req-resize", "--db", cell.url, "--as", "member"
    )
    assert member.exit_code == 0
    assert "cmp-a" not in member.stdout and "cmp-b" not in member.stdout
    assert "Traceback" not in member.stdout and sha("proj-actcmp-a") in member.stdout
    admin = harness.cli("events", "show", ids["uuid"], "req-resize", "--db", cell.url)
    assert "cmp-a" in admin.stdout and "(unknown)" in admin.stdout and "Traceback" in admin.stdout

    listed = harness.cli("events", "list", ids["uuid"], "--db", cell.url, "--json")
    body = json.loads(listed.stdout)
    assert [a["request_id"] for a in body["instanceActions"]] == ["req-stop", "req-resize"]
    assert "events" not in body["instanceActions"][0]


def test_unknown_instance_or_request_is_bad_input(cell):
    ids = _write(cell.url, _resize_history)
    for args in (
        ["events", "show", "no-such-uuid", "req-resize"],
        ["events", "show", ids["uuid"], "req-nope"],
        ["events", "show", ids["uuid"], "req-resize", "--as", "root"],
    ):
        result = harness.cli(*args, "--db", cell.url)
        assert result.exit_code == ExitCode.BAD_INPUT, args
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


hosts = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=3, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(
    host=hosts,
    project=st.one_of(st.none(), st.text(min_size=0, max_size=40)),
    fallback=st.text(min_size=1, max_size=40),
    result=st.sampled_from(["Success", "Error", None]),
)
def test_member_never_sees_the_host(host, project, fallback, result):
    action = {
        "action": "reboot",
        "instance_uuid": "u",
        "request_id": "req-1",
        "user_id": "x",
        "project_id": project,
        "start_time": T0,
        "message": None,
        "updated_at": None,
    }
    event = {
        "event": "compute_reboot_instance",
        "start_time": T0,
        "finish_time": T0 + S,
        "result": result,
        "traceback": f"error on {host}",
        "host": host,
    }
    body = views.action_body(action, [event], "member", instance_project_id=fallback)
    other = views.action_body(
        action, [{**event, "host": "sentinel.invalid"}], "member", instance_project_id=fallback
    )
    # The member view depends on the host only through hostId ...
    for rendered in (body, other):
        for shown in rendered["instanceAction"]["events"]:
            assert set(shown) == {"event", "start_time", "finish_time", "result", "hostId"}
            shown.pop("hostId")
    assert body == other
    # ... so the host string appears nowhere unless it is part of the other fields anyway.
    text = json.dumps(views.action_body(action, [event], "member", instance_project_id=fallback))
    shown_elsewhere = (json.dumps(other, ensure_ascii=False), json.dumps(other), repr(other))
    if not any(host in rendered for rendered in shown_elsewhere):  # e.g. project '0"0'=host
        assert host not in text and host not in json.loads(text).__repr__()
    # ... and provenance, which would tell of a host the member may not see, is admins' only.
    known = {1: views.Provenance("inferred", "host-timeline", 1, host)}
    assert views.provenance_body([{**event, "id": 1}], known, "member") is None
    assert views.provenance_body([{**event, "id": 1}], known, "admin")[0]["source"] == "inferred"
    body = views.action_body(action, [event], "member", instance_project_id=fallback)
    admin = views.action_body(action, [event], "admin", instance_project_id=fallback)
    assert admin["instanceAction"]["events"][0]["host"] == host
    expected = hashlib.sha224(((project or fallback) + host).encode()).hexdigest()
    assert body["instanceAction"]["events"][0]["hostId"] == expected


def _failures_history(h: HistoryBuilder) -> dict:
    uuid = h.instance(host="cmp-a", created_at=T0)
    plan = [  # (host, event, result, days after T0)
        ("cmp-a", "compute_reboot_instance", "Error", 1),
        ("cmp-a", "compute_reboot_instance", "Error", 2),
        ("cmp-a", "compute_attach_volume", "Error", 3),
        ("cmp-b", "compute_prep_resize", "Error", 4),
        ("cmp-b", "compute_prep_resize", "Success", 5),
        ("cmp-c", "compute_stop_instance", "Error", 30),
        (None, "compute_reboot_instance", "Error", 6),
        (None, "compute_start_instance", "Success", 7),
    ]
    for n, (host, name, result, day) in enumerate(plan):
        start = T0 + timedelta(days=day)
        a = h.action(uuid, name, start, request_id=f"req-{n}")
        h.event(uuid, a, name, start, start + S, host=host, result=result)
    return {"uuid": uuid}


def test_failures_ranking(cell):
    _write(cell.url, _failures_history)
    result = harness.cli("failures", "--db", cell.url, "--all-time", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(h["host"], h["failed"]) for h in report["hosts"]] == [
        ("cmp-a", 3),
        ("cmp-b", 1),
        ("cmp-c", 1),
    ]
    top = report["hosts"][0]
    assert top["events"] == {"compute_reboot_instance": 2, "compute_attach_volume": 1}
    assert top["first_seen"] == "2019-03-02T10:00:00.000000"
    assert top["last_seen"] == "2019-03-04T10:00:00.000000"
    assert top["request_ids"] == ["req-2", "req-1", "req-0"]
    assert report["unknown_host"]["failed"] == 1  # counted on its own line, not hidden

    window = harness.cli(
        "failures", "--db", cell.url, "--since", "2019-03-04", "--until", "2019-03-20", "--json"
    )
    ranked = [(h["host"], h["failed"]) for h in json.loads(window.stdout)["hosts"]]
    assert ranked == [("cmp-a", 1), ("cmp-b", 1)]

    one = harness.cli("failures", "--db", cell.url, "--all-time", "--host", "cmp-c", "--top", "1")
    assert "cmp-c" in one.stdout and "cmp-a" not in one.stdout
    text = harness.cli("failures", "--db", cell.url, "--all-time", "--top", "1")
    assert "(2 more hosts; raise --top)" in text.stdout
    assert "host unknown: 1 failed events" in text.stdout

    bad = harness.cli("failures", "--db", cell.url, "--since", "last tuesday")
    assert bad.exit_code == ExitCode.BAD_INPUT and "--since" in bad.stderr


@pytest.mark.backends("postgresql", "mysql")
def test_failures_by_host_uses_the_host_index(blank_db):
    url = parse_url(blank_db)
    simulate(url, SimulationOptions(seed=3, events=30000, hosts=40, cutover=0.0))
    revisions.upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("ANALYZE instance_actions_events")
            else:
                conn.exec_driver_sql("ANALYZE TABLE instance_actions_events")
            query = views.failures_query(
                since=None, until=None, host="cmp-0007", event=None, known=True
            )
            plan = views.query_plan(conn, query)
    finally:
        engine.dispose()
    assert "actionhost_events_host_idx" in plan, plan


def _unknown_failures_history(h: HistoryBuilder) -> dict:
    uuid = h.instance(host="cmp-0001.example.org", created_at=T0)
    events = [  # (host, event, days after T0): three hosts, many event names
        *[("cmp-0001.example.org", f"compute_{n}", 1) for n in ("lock", "unlock", "pause")],
        ("cmp-0001.example.org", "compute_post_live_migration_at_destination", 2),
        ("cmp-0002.example.org", "compute_check_can_live_migrate_destination", 3),
        ("cmp-0002.example.org", "compute_prep_resize", 4),
        (None, "conductor_migrate_server", 5),  # control plane: no host anywhere
        (None, "cold_migrate", 6),  # a bare conductor (EventReporter) name
        (None, "api_lock", 7),
        (None, "compute_reboot_instance", 8),  # a backfill can attribute this one
    ]
    for n, (host, name, day) in enumerate(events):
        start = T0 + timedelta(days=day)
        a = h.action(uuid, name, start, request_id=f"req-{n:02d}-{'x' * 36}")
        h.event(uuid, a, name, start, start + S, host=host, result="Error")
    return {"uuid": uuid}


def test_failures_says_what_a_backfill_can_attribute(cell):
    _write(cell.url, _unknown_failures_history)
    revisions.upgrade(parse_url(cell.url))

    def report():
        text = harness.cli("failures", "--db", cell.url, "--all-time")
        body = json.loads(harness.cli("failures", "--db", cell.url, "--all-time", "--json").stdout)
        assert text.exit_code == 0, text.stderr
        return text.stdout, body["unknown_host"]["attribution"]

    before, why = report()
    assert why == {"not_attributable": 3, "left_null": 0, "not_examined": 1}
    assert "3 not attributable: control-plane events" in before
    assert "1 not examined by a backfill yet: run the backfill to attribute them" in before
    table = [line for line in before.splitlines() if line[:1] in "+|"]
    assert table and all(len(line) <= 100 for line in table), "\n".join(table)
    assert "cmp-0001.example.org" in before and "req-" in before

    done = harness.cli("backfill", "--db", cell.url, "--no-progress")
    assert done.exit_code == 0, done.stderr
    after, why = report()
    assert why["not_attributable"] == 3 and why["not_examined"] == 0
    assert "run the backfill" not in after  # nothing left that a backfill could attribute
    assert "3 not attributable" in after
    assert all(len(line) <= 100 for line in after.splitlines() if line[:1] in "+|")
