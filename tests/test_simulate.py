"""The simulator: deterministic, recorded release by release, and its truth agrees with its rows.

Every expectation below is Nova's recording behaviour at a release tag
(docs/accuracy.md §1-§7 and §9; ``nova/releases.py`` cites the tag and
function of each switch), checked on the simulated rows themselves.  A few shared
histories (one per backend) are simulated once per module; rare behaviours
get a history of their own with the simulator's rates raised.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.nova import models
from actionhost_backfill.nova.releases import NAMES, SIMULATED, between
from actionhost_backfill.sim.simulate import Rates, SimulationOptions, simulate, truth_tables
from tests import harness

#: All of Kilo ... Queens, then Rocky, over the default four years.
HISTORY = SimulationOptions(seed=7, instances=320, hosts=8)
#: The early releases, whose eras a growing cloud otherwise spends few events on;
#: simulated with the rare paths made common (AMPLIFIED).
EARLY = SimulationOptions(
    seed=11, instances=260, hosts=6, days=540, first_release="kilo", last_release="mitaka"
)
#: Pike then Queens (rare paths made common): Pike's leftovers meet Queens' conductor.
LATE = SimulationOptions(
    seed=13, instances=200, hosts=6, days=540, first_release="pike", last_release="queens"
)
#: Icehouse then Juno (rare paths made common): what clouds that started before Kilo wrote.
ANCIENT = SimulationOptions(
    seed=17, instances=220, hosts=6, days=540, first_release="icehouse", last_release="juno"
)
#: Rates that make rare recording paths (reschedules, failures, deletes of resized
#: instances, evacuations without a host) show up in a few hundred instances.
AMPLIFIED = Rates(
    build_first_scheduling_fails=0.05,
    build_rescheduled=0.4,
    build_fails=0.1,
    resize_rescheduled=0.4,
    deleted_while_resized=0.6,
    live_migration_rejected=0.4,
    evacuation_no_host=0.4,
    operation_mix=(0.45, 0.15, 0.1, 0.15, 0.08),
)
CONDUCTOR_EVENTS = {"cold_migrate", "rebuild_server", "get_image_info", "schedule_instances"}
QUEENS_ACTIONS = {
    "attach_volume",
    "detach_volume",
    "attach_interface",
    "detach_interface",
    "createImage",
    "createBackup",
    "lock",
    "unlock",
    "shelveOffload",
}


def _index(release: str) -> int:
    return NAMES.index(release)


class History:
    """Every row of a simulated cell, read back with the types the Nova models give."""

    def __init__(self, cell: harness.Cell):
        self.cell = cell
        meta = models.build_metadata()
        schema = cell.location.schema
        truth, meta_table = truth_tables(schema)

        def both(conn, base: str) -> list[dict]:
            rows = []
            for prefix in ("", "shadow_"):
                table = meta.tables[prefix + base]
                for row in conn.execute(sa.select(table).order_by(table.c.id)):
                    rows.append({**row._mapping, "shadow": bool(prefix)})
            return rows

        with cell.engine().connect() as conn:
            self.instances = {r["uuid"]: r for r in both(conn, "instances")}
            self.actions = {(r["shadow"], r["id"]): r for r in both(conn, "instance_actions")}
            self.events = both(conn, "instance_actions_events")
            self.migrations = both(conn, "migrations")
            self.faults = both(conn, "instance_faults")
            self.sysmeta = both(conn, "instance_system_metadata")
            self.bdms = both(conn, "block_device_mapping")
            self.services = [
                dict(r._mapping) for r in conn.execute(sa.select(meta.tables["services"]))
            ]
            self.truth = {(r.event_table, r.event_id): r for r in conn.execute(sa.select(truth))}
            values = dict(conn.execute(sa.select(meta_table.c.name, meta_table.c.value)).all())
        self.eras = [
            (e["release"], datetime.fromisoformat(e["from"]), datetime.fromisoformat(e["to"]))
            for e in json.loads(values["eras"])
        ]
        for event in self.events:
            action = self.actions[(event["shadow"], event["action_id"])]
            event["action"] = action["action"]
            event["instance"] = action["instance_uuid"]
            event["table"] = ("shadow_" if event["shadow"] else "") + "instance_actions_events"
            event["truth"] = self.truth[(event["table"], event["id"])]
        self.by_action: dict[tuple, list[dict]] = defaultdict(list)
        for event in self.events:
            self.by_action[(event["shadow"], event["action_id"])].append(event)
        self.actions_of: dict[str, list[dict]] = defaultdict(list)
        for action in sorted(self.actions.values(), key=lambda a: (a["start_time"], a["id"])):
            self.actions_of[action["instance_uuid"]].append(action)

    def era(self, moment: datetime | None) -> str:
        """The release in service at ``moment`` (the last era's for later moments)."""
        assert moment is not None
        for release, start, end in self.eras:
            if start <= moment < end:
                return release
        return self.eras[-1][0] if moment >= self.eras[-1][2] else self.eras[0][0]

    def events_of(self, action: dict) -> list[dict]:
        return self.by_action[(action["shadow"], action["id"])]

    def window(self, action: dict) -> tuple[datetime, datetime]:
        """From an action's start to the next action of its instance (or far away)."""
        actions = self.actions_of[action["instance_uuid"]]
        later = [a["start_time"] for a in actions if a["start_time"] > action["start_time"]]
        return action["start_time"], min(later, default=datetime(2100, 1, 1))

    def rows_created_in(self, action: dict) -> list[dict]:
        start, end = self.window(action)
        return [
            m
            for m in self.migrations
            if m["instance_uuid"] == action["instance_uuid"] and start <= m["created_at"] < end
        ]

    def faults_in(self, action: dict) -> list[dict]:
        start, end = self.window(action)
        return [
            f
            for f in self.faults
            if f["instance_uuid"] == action["instance_uuid"] and start <= f["created_at"] < end
        ]


@pytest.fixture(scope="module")
def _made():
    made: dict = {}
    yield made
    for cell, drop, _ in made.values():
        cell.dispose()
        drop()


def _history(key, options, backend, server_url, tmp_path_factory, made, rates=None) -> History:
    if (key, backend) not in made:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp(key) / 'nova.sqlite'}"

            def drop():
                return None
        else:
            name = f"ahb_{key}_{uuid.uuid4().hex[:8]}"
            harness.create_database(backend, name)
            url = str(
                sa.engine.make_url(server_url)
                .set(database=name)
                .render_as_string(hide_password=False)
            )

            def drop(name=name):
                harness.drop_database(backend, name)

        if rates is not None:
            options = dataclasses.replace(options, rates=rates)
        simulate(parse_url(url), options)
        cell = harness.Cell(url)
        made[(key, backend)] = (cell, drop, History(cell))
    return made[(key, backend)][2]


@pytest.fixture
def history(backend, server_url, tmp_path_factory, _made) -> History:
    return _history("all", HISTORY, backend, server_url, tmp_path_factory, _made)


@pytest.fixture
def early(backend, server_url, tmp_path_factory, _made) -> History:
    return _history("early", EARLY, backend, server_url, tmp_path_factory, _made, AMPLIFIED)


@pytest.fixture
def late(backend, server_url, tmp_path_factory, _made) -> History:
    return _history("late", LATE, backend, server_url, tmp_path_factory, _made, AMPLIFIED)


@pytest.fixture
def ancient(backend, server_url, tmp_path_factory, _made) -> History:
    return _history("ancient", ANCIENT, backend, server_url, tmp_path_factory, _made, AMPLIFIED)


# ------------------------------------------------------------------ determinism and truth


def _simulated(url: str, options: SimulationOptions) -> harness.Cell:
    simulate(parse_url(url), options)
    return harness.Cell(url)


def test_same_seed_same_history(blank_db, backend, server_url, tmp_path, request):
    small = SimulationOptions(seed=7, instances=80, hosts=6, days=400)
    first = _simulated(blank_db, small)
    second = _simulated(
        harness.another_database(backend, server_url, tmp_path, request, "second"), small
    )
    third = _simulated(
        harness.another_database(backend, server_url, tmp_path, request, "third"),
        SimulationOptions(seed=8, instances=80, hosts=6, days=400),
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
        f"SELECT event_table, event_id, event, host, recorded, era "
        f"FROM {cell.location.schema}.simulation_truth ORDER BY event_table, event_id"
    )


def test_truth_and_rows_agree(history):
    h = history
    assert len(h.events) > 10_000
    assert len(h.truth) == len(h.events)  # every event has exactly one truth
    assert [e[0] for e in h.eras] == [*between("kilo", "queens"), "rocky"]  # the default
    computes = {s["host"] for s in h.services if s["binary"] == "nova-compute"}
    conductors = {s["host"] for s in h.services if s["binary"] == "nova-conductor"}
    eras = defaultdict(int)
    for event in h.events:
        truth = event["truth"]
        assert truth.event == event["event"]
        assert event["start_time"].microsecond == 0  # MySQL-like whole seconds
        assert truth.era == h.era(event["start_time"])
        eras[truth.era] += 1
        # Rocky stores the host at start; every Kilo ... Queens row has it NULL.
        assert truth.recorded == (truth.era == "rocky")
        assert event["host"] == (truth.host if truth.recorded else None)
        name = event["event"]
        if name.startswith("compute_"):
            assert truth.host in computes, name
        elif name.startswith("api_"):
            assert truth.host.startswith("api-"), name
        else:
            assert name in CONDUCTOR_EVENTS or name.startswith("conductor_"), name
            assert truth.host in conductors, name
    assert all(eras[release] > 100 for release in (*between("liberty", "queens"), "rocky")), eras
    # Faults name the process that recorded them: a compute or a conductor.
    assert {f["host"] for f in h.faults} <= computes | conductors
    assert {f["host"] for f in h.faults} & conductors


def test_repeated_event_names_finish_on_their_first_row(history):
    """action_event_finish updates .first(): rows 2..n of a name keep NULL finish/result."""
    repeated = 0
    for events in history.by_action.values():
        by_name = defaultdict(list)
        for event in events:
            by_name[event["event"]].append(event)
        for rows in by_name.values():
            rows.sort(key=lambda e: e["id"])
            assert rows[0]["finish_time"] is not None and rows[0]["result"] is not None
            assert rows[0]["finish_time"] >= max(r["start_time"] for r in rows)
            for row in rows[1:]:
                assert row["finish_time"] is None and row["result"] is None
                assert row["updated_at"] is None
                repeated += 1
            starts = [r["start_time"] for r in rows]
            assert starts == sorted(starts)  # ids follow the conductor's clock
    assert repeated > 20


def test_ids_grow_with_time_across_instances(history):
    events = sorted((e for e in history.events if not e["shadow"]), key=lambda e: e["id"])
    late = sum(1 for a, b in itertools.pairwise(events) if b["start_time"] < a["start_time"])
    assert late < len(events) * 0.02  # only the moves' late steps (minutes) interleave
    instances = {e["instance"] for e in events[: len(events) // 10]}
    assert len(instances) > 10  # instances live concurrently


# ------------------------------------------------------------------ builds


def test_builds_never_error_and_reschedules_leave_no_fault(history):
    h = history
    rescheduled = 0
    for action in h.actions.values():
        if action["action"] != "create":
            continue
        builds = [
            e for e in h.events_of(action) if e["event"] == "compute__do_build_and_run_instance"
        ]
        assert all(e["result"] in ("Success", None) for e in builds)  # it catches everything
        if len(builds) < 2:
            continue
        rescheduled += 1
        hosts = [e["truth"].host for e in sorted(builds, key=lambda e: e["id"])]
        assert len(set(hosts)) == len(hosts)  # the RetryFilter skips tried hosts
        fault_hosts = {f["host"] for f in h.faults_in(action)}
        assert not set(hosts[:-1]) & fault_hosts  # a rescheduled attempt records no fault
    assert rescheduled > 5


def test_failed_builds_by_release(history, early, late):
    """Kilo keeps the last claimed candidate as host; Liberty+ nulls it; Ocata+ buries NoValidHost."""
    failed = defaultdict(int)
    for h in (history, early, late):
        for action in h.actions.values():
            if action["action"] != "create":
                continue
            release = h.era(action["start_time"])
            events = h.events_of(action)
            faults = h.faults_in(action)
            instance = h.instances[action["instance_uuid"]]
            if not events:  # NoValidHost on the first scheduling
                assert _index(release) < _index("ocata")  # Ocata+: buried in cell0
                assert [f["host"].startswith("ctl-") for f in faults] == [True]
                assert instance["host"] is None and instance["launched_on"] is None
                failed["no-valid-host"] += 1
                continue
            if instance["launched_at"] is not None or not faults:
                continue  # built (or failed later, not in its build)
            if release == "kilo":
                assert instance["host"] == instance["launched_on"]
                failed["kilo-kept-host"] += instance["host"] is not None
            else:
                assert instance["host"] is None
                failed["nulled"] += 1
    assert failed["no-valid-host"] and failed["kilo-kept-host"] and failed["nulled"], failed


def test_buried_builds_leave_nothing_from_ocata(history):
    h = history
    for action in h.actions.values():
        if action["action"] == "create" and _index(h.era(action["start_time"])) >= _index("ocata"):
            assert h.events_of(action)


# ------------------------------------------------------------------ cold moves


def _cold_moves(h: History, release_range: tuple[str, str]):
    low, high = (_index(r) for r in release_range)
    for action in h.actions.values():
        if (
            action["action"] in ("resize", "migrate")
            and low <= _index(h.era(action["start_time"])) <= high
        ):
            yield action


def test_kilo_cold_moves_leave_one_untyped_row_per_accepted_claim(early):
    h = early
    checked = 0
    for action in _cold_moves(h, ("kilo", "kilo")):
        rows = h.rows_created_in(action)
        assert len(rows) <= 1  # a claim-rejected Kilo candidate leaves no row
        assert all(r["migration_type"] is None for r in rows)
        preps = [e for e in h.events_of(action) if e["event"] == "compute_prep_resize"]
        if rows and len(preps) > 1:
            last = max(preps, key=lambda e: e["id"])
            assert rows[0]["dest_compute"] == last["truth"].host or rows[0]["status"] == "reverted"
            checked += 1
    assert any(True for _ in _cold_moves(h, ("kilo", "kilo")))
    assert checked >= 1


def test_migration_type_is_null_only_on_kilo_rows(history, early):
    for h in (history, early):
        for row in h.migrations:
            kilo = h.era(row["created_at"]) == "kilo"
            assert (row["migration_type"] is None) == kilo, row
            assert not row["hidden"]


def _reused_later(h: History, action: dict) -> bool:
    """Did a Queens+ cold move of this instance reuse an older row (none created in it)?"""
    return any(
        a["action"] in ("resize", "migrate")
        and a["start_time"] > action["start_time"]
        and _index(h.era(a["start_time"])) >= _index("queens")
        and not h.rows_created_in(a)
        for a in h.actions_of[action["instance_uuid"]]
    )


def test_liberty_to_pike_rescheduled_candidates_keep_their_rows(history):
    """Every candidate that reached the claim has its own row; rejected ones stay pre-migrating."""
    h = history
    rescheduled = 0
    for action in _cold_moves(h, ("liberty", "pike")):
        preps = sorted(
            (e for e in h.events_of(action) if e["event"] == "compute_prep_resize"),
            key=lambda e: e["id"],
        )
        rows = sorted(h.rows_created_in(action), key=lambda r: r["id"])
        assert len(rows) == len(preps)
        if len(preps) < 2:
            continue
        rescheduled += 1
        for row, prep in zip(rows[:-1], preps[:-1], strict=True):
            if row["status"] != "pre-migrating":  # rewritten since by Queens' conductor
                assert _reused_later(h, action)
                continue
            assert row["dest_compute"] == prep["truth"].host
        # The reschedule is a synchronous call: the next candidate starts before the
        # rejected one writes its fault (and finishes).
        faults = h.faults_in(action)
        for rejected, following in itertools.pairwise(preps):
            host = rejected["truth"].host
            assert any(
                f["host"] == host and f["created_at"] >= following["start_time"] for f in faults
            )
    assert rescheduled >= 3


def test_queens_reuses_a_stale_pre_migrating_row(history, late):
    """MT._preallocate_migration reuses any live pre-migrating row of the instance and type.

    The reused row keeps its old created_at and source columns; each candidate's
    claim overwrites its dest.
    """
    reused = 0
    for h in (history, late):
        for action in _cold_moves(h, ("queens", "rocky")):
            if h.rows_created_in(action):
                continue
            kind = "resize" if action["action"] == "resize" else "migration"
            older = [
                m
                for m in h.migrations
                if m["instance_uuid"] == action["instance_uuid"]
                and m["migration_type"] == kind
                and m["created_at"] < action["start_time"]
                and _index(h.era(m["created_at"])) < _index("queens")
            ]
            assert older, action
            preps = sorted(
                (e for e in h.events_of(action) if e["event"] == "compute_prep_resize"),
                key=lambda e: e["id"],
            )
            if preps:
                assert preps[-1]["truth"].host in {m["dest_compute"] for m in older} | {
                    m["source_compute"] for m in older
                }
            reused += 1
    assert reused >= 1


def test_queens_has_one_row_per_cold_move(history):
    h = history
    moves = rescheduled = 0
    for action in _cold_moves(h, ("queens", "rocky")):
        rows = h.rows_created_in(action)
        assert len(rows) <= 1  # the conductor's row, or a reused older one
        moves += 1
        preps = [e for e in h.events_of(action) if e["event"] == "compute_prep_resize"]
        if len(preps) > 1 and rows and rows[0]["status"] not in ("error", "reverted"):
            rescheduled += 1
            last = max(preps, key=lambda e: e["id"])
            assert rows[0]["dest_compute"] == last["truth"].host  # each claim overwrote dest
    assert moves > 50 and rescheduled >= 1


def test_reverts_before_ocata_copy_the_source_into_dest_compute(history, early):
    checked = defaultdict(int)
    for h in (history, early):
        for action in h.actions.values():
            if action["action"] != "revertResize":
                continue
            events = {e["event"]: e for e in h.events_of(action)}
            source = events["compute_finish_revert_resize"]["truth"].host
            dest = events["compute_revert_resize"]["truth"].host
            row = next(
                m
                for m in h.migrations
                if m["instance_uuid"] == action["instance_uuid"]
                and m["status"] == "reverted"
                and m["updated_at"] >= action["start_time"]
                and m["updated_at"]
                <= events["compute_finish_revert_resize"]["start_time"] + timedelta(seconds=5)
            )
            release = h.era(action["start_time"])
            assert row["source_compute"] == source
            assert row["dest_node"] == f"{dest}.nova.local"  # dest_node keeps the real one
            if _index(release) <= _index("newton"):
                assert row["dest_compute"] == source
            else:
                assert row["dest_compute"] == dest
            checked[_index(release) <= _index("newton")] += 1
    assert checked[True] >= 3 and checked[False] >= 3


def test_deleting_a_resized_instance_confirms_it_in_the_same_request(early, late):
    """Kilo-Pike: terminate joins the oldest action of the request (confirmResize); Queens: delete."""
    seen = defaultdict(int)
    for h in (early, late):
        by_request = defaultdict(list)
        for action in h.actions.values():
            by_request[action["request_id"]].append(action)
        for actions in by_request.values():
            if sorted(a["action"] for a in actions) != ["confirmResize", "delete"]:
                continue
            confirm, delete = sorted(actions, key=lambda a: a["id"])
            assert confirm["action"] == "confirmResize"
            assert confirm["start_time"] == delete["start_time"]  # context.timestamp
            release = h.era(confirm["start_time"])
            confirm_events = {e["event"] for e in h.events_of(confirm)}
            delete_events = {e["event"] for e in h.events_of(delete)}
            assert "compute_confirm_resize" in confirm_events  # a call made before 'delete'
            if _index(release) >= _index("queens"):
                assert delete_events == {"compute_terminate_instance"}
            else:
                assert not delete_events and "compute_terminate_instance" in confirm_events
            seen[_index(release) >= _index("queens")] += 1
    assert seen[True] >= 1 and seen[False] >= 1, seen


def test_auto_confirms_have_no_user(history):
    h = history
    auto = [
        a for a in h.actions.values() if a["action"] == "confirmResize" and a["user_id"] is None
    ]
    assert auto and all(a["project_id"] is None for a in auto)


# ------------------------------------------------------------------ live migration


def test_kilo_live_migrations_have_no_events_and_no_rows(early):
    h = early
    kilo = [
        a
        for a in h.actions.values()
        if a["action"] == "live-migration" and h.era(a["start_time"]) == "kilo"
    ]
    assert len(kilo) >= 5
    assert all(not h.events_of(a) for a in kilo)
    for action in kilo:
        assert not [r for r in h.rows_created_in(action) if r["migration_type"] is not None]
    assert not [
        m
        for m in h.migrations
        if m["migration_type"] == "live-migration" and h.era(m["created_at"]) == "kilo"
    ]


def test_live_migration_rows_by_release(history, early):
    statuses = defaultdict(set)
    for h in (history, early):
        for action in h.actions.values():
            if action["action"] != "live-migration" or h.era(action["start_time"]) == "kilo":
                continue
            release = h.era(action["start_time"])
            rows = [r for r in h.rows_created_in(action) if r["migration_type"] == "live-migration"]
            assert len(rows) == 1, action
            row = rows[0]
            statuses[release].add(row["status"])
            if row["dest_compute"] is None:
                assert row["status"] == "error"  # NoValidHost
            # Nodes are set by the Queens conductor once a destination passed its checks.
            nodes_set = row["source_node"] is not None or row["dest_node"] is not None
            if nodes_set:
                assert _index(release) >= _index("queens")
            elif _index(release) >= _index("queens"):
                assert row["status"] == "error"
            events = h.events_of(action)
            checks = sorted(
                (e for e in events if e["event"] == "compute_check_can_live_migrate_destination"),
                key=lambda e: e["id"],
            )
            if row["status"] == "completed" and checks:  # the highest-id check is the dest
                assert checks[-1]["truth"].host == row["dest_compute"]
            post = [e for e in events if e["event"] == "compute_post_live_migration_at_destination"]
            if row["status"] in ("cancelled",) or (row["status"] == "error" and not post):
                assert all(
                    e["event"] != "compute_post_live_migration_at_destination" for e in events
                )
    failed = {r for r, s in statuses.items() if "failed" in s}
    cancelled = {r for r, s in statuses.items() if "cancelled" in s}
    assert failed and failed <= {"liberty", "mitaka"}
    assert cancelled and "liberty" not in cancelled


def test_live_migration_candidates_share_first_row_semantics(history):
    h = history
    many = 0
    for action in h.actions.values():
        if action["action"] != "live-migration":
            continue
        checks = sorted(
            (
                e
                for e in h.events_of(action)
                if e["event"] == "compute_check_can_live_migrate_destination"
            ),
            key=lambda e: e["id"],
        )
        if len(checks) > 1:
            many += 1
            assert checks[0]["result"] is not None
            assert all(c["result"] is None for c in checks[1:])
            rejected = {c["truth"].host for c in checks[:-1]}
            assert rejected <= {f["host"] for f in h.faults_in(action)}  # their own faults
    assert many >= 3


def test_conductor_events_from_newton(history):
    h = history
    for event in h.events:
        if event["event"].startswith("conductor_"):
            assert _index(event["truth"].era) >= _index("newton"), event["event"]
            assert event["action"] in ("resize", "migrate", "live-migration")


# ------------------------------------------------------------------ evacuation


def test_evacuations_by_release(history, early):
    seen = defaultdict(int)
    for h in (history, early):
        for action in h.actions.values():
            if action["action"] != "evacuate":
                continue
            release = h.era(action["start_time"])
            rows = h.rows_created_in(action)
            events = {e["event"] for e in h.events_of(action)}
            assert "rebuild_server" in events
            if release == "kilo":
                assert not rows
            else:
                assert len(rows) == 1 and rows[0]["created_at"] == action["start_time"]
                assert rows[0]["migration_type"] == "evacuation"
                if rows[0]["status"] == "error":  # Queens' NoValidHost, on the oldest
                    assert any(  # 'accepted' row of the instance (.first())
                        a["action"] == "evacuate"
                        and a["start_time"] >= action["start_time"]
                        and _index(h.era(a["start_time"])) >= _index("queens")
                        for a in h.actions_of[action["instance_uuid"]]
                    )
            seen[release] += 1
        completed = [
            m
            for m in h.migrations
            if m["status"] == "completed" and m["migration_type"] == "evacuation"
        ]
        for row in completed:  # the old source's restart, days later
            assert (row["updated_at"] - row["created_at"]).total_seconds() > 3600
    assert seen["kilo"] >= 1 and sum(seen.values()) >= 10, seen


def test_an_older_accepted_row_takes_a_new_evacuations_claim(early):
    """The conductor's .first() on 'accepted': the older row is claimed, the new one stays."""
    h = early
    hazards = 0
    for instance_uuid, actions in h.actions_of.items():
        rows = sorted(
            (
                m
                for m in h.migrations
                if m["instance_uuid"] == instance_uuid and m["migration_type"] == "evacuation"
            ),
            key=lambda m: m["id"],
        )
        for action in actions:
            if action["action"] != "evacuate" or h.era(action["start_time"]) == "kilo":
                continue
            own = [r for r in rows if r["created_at"] == action["start_time"]]
            rebuilt = [e for e in h.events_of(action) if e["event"] == "compute_rebuild_instance"]
            if rebuilt and own[0]["status"] == "accepted":  # its rebuild claimed an older row
                older = [r for r in rows if r["id"] < own[0]["id"]]
                assert any(r["updated_at"] >= action["start_time"] for r in older)
                hazards += 1
    assert hazards >= 1


# ------------------------------------------------------------------ shelve


def test_shelved_host_rows_by_release(history, early):
    seen = defaultdict(int)
    for h in (history, early):
        for row in h.sysmeta:
            if row["key"] != "shelved_host":
                continue
            instance = h.instances[row["instance_uuid"]]
            if row["deleted"] == 0:
                # Live: the instance is still shelved, or Kilo deleted it (sysmeta left live).
                if instance["deleted"]:
                    assert h.era(instance["deleted_at"]) == "kilo"
                    seen["kilo-delete"] += 1
                else:
                    assert instance["vm_state"] in ("shelved", "shelved_offloaded")
                    seen["shelved"] += 1
            elif instance["deleted"] and row["deleted_at"] == instance["deleted_at"]:
                assert h.era(row["deleted_at"]) != "kilo"  # soft-deleted with the instance
                seen["deleted"] += 1
            else:  # the Kilo conductor's soft delete at unshelve
                assert h.era(row["deleted_at"]) == "kilo"
                seen["kilo-unshelve"] += 1
    assert seen["kilo-unshelve"] >= 1 and seen["shelved"] >= 1, seen


def test_shelve_offload_and_unshelve_events(history):
    h = history
    seen = defaultdict(int)
    for action in h.actions.values():
        release = h.era(action["start_time"])
        names = [e["event"] for e in h.events_of(action)]
        if action["action"] == "shelveOffload":
            assert _index(release) >= _index("queens")
        if "compute_shelve_offload_instance" in names:
            assert all(
                _index(e["truth"].era) >= _index("queens")
                for e in h.events_of(action)
                if e["event"] == "compute_shelve_offload_instance"
            )
            seen[action["action"]] += 1
        if action["action"] == "unshelve" and "compute_unshelve_instance" in names:
            assert "schedule_instances" in names  # the conductor chose a new host
        if action["action"] == "unshelve" and "compute_start_instance" in names:
            assert "schedule_instances" not in names  # SHELVED: started where it was
    # Queens: explicit, volume-backed and periodic (the latest action) offloads.
    assert seen["shelveOffload"] and seen["shelve"], seen


def test_unshelve_changes_launched_on_without_a_migration_row(history):
    h = history
    for action in h.actions.values():
        if action["action"] == "unshelve":
            assert not h.rows_created_in(action)


# ------------------------------------------------------------------ volumes


def test_bdm_connectors_by_release(history):
    h = history
    connectors = new_style = 0
    computes = {f"cmp-{n:04d}" for n in range(1, 9)}
    for row in h.bdms:
        if row["connection_info"] is None:
            continue
        info = json.loads(row["connection_info"])
        if row["attachment_id"] is not None:
            assert "connector" not in info  # Queens new-style attachments
            assert _index(h.era(row["created_at"])) >= _index("queens")
            new_style += 1
        elif "connector" in info:
            assert info["connector"]["host"] in computes
            assert _index(h.era(row["updated_at"])) >= _index("mitaka")
            connectors += 1
        else:
            assert _index(h.era(row["updated_at"])) <= _index("liberty")
    assert connectors > 20 and new_style > 5


def test_boot_volumes_are_created_by_the_api(history):
    h = history
    boots = [b for b in h.bdms if b["boot_index"] == 0]
    assert boots
    for bdm in boots:
        create = h.actions_of[bdm["instance_uuid"]][0]
        assert create["action"] == "create" and bdm["created_at"] == create["start_time"]


# ------------------------------------------------------------------ operations by release


def test_operations_recorded_only_by_the_releases_that_record_them(history):
    h = history
    for action in h.actions.values():
        release = _index(h.era(action["start_time"]))
        if action["action"] in QUEENS_ACTIONS:
            assert release >= _index("queens"), action["action"]
        if action["action"] == "trigger_crash_dump":
            assert release >= _index("mitaka")
        if action["action"] == "extend_volume":
            assert release >= _index("pike")
    for event in h.events:
        if event["event"].startswith("api_"):
            assert _index(event["truth"].era) >= _index("queens")
    names = {e["event"] for e in h.events}
    assert {"api_lock", "api_snapshot_instance", "compute_attach_volume"} <= names


# ------------------------------------------------------------------ deletes and archiving


def test_deletes_and_archives_by_release(history):
    h = history
    seen = defaultdict(int)
    for instance_uuid, instance in h.instances.items():
        if not instance["deleted"]:
            assert not instance["shadow"]
            continue
        release = h.era(instance["deleted_at"])
        rows = [m for m in h.migrations if m["instance_uuid"] == instance_uuid]
        if _index(release) >= _index("newton"):
            assert all(m["deleted"] for m in rows)  # soft-deleted with the instance
        elif not instance["shadow"]:
            assert all(not m["deleted"] for m in rows)  # Kilo-Mitaka leave them live
            seen["live-migrations"] += bool(rows)
        assert all(f["deleted"] for f in h.faults if f["instance_uuid"] == instance_uuid)
        sysmeta = [s for s in h.sysmeta if s["instance_uuid"] == instance_uuid]
        if release == "kilo":
            assert any(not s["deleted"] for s in sysmeta)  # Kilo leaves system metadata live
        else:
            assert all(s["deleted"] for s in sysmeta)
        assert all(b["deleted"] for b in h.bdms if b["instance_uuid"] == instance_uuid)
        if instance["shadow"]:  # archived: everything of the instance is in shadow_*
            seen["archived"] += 1
            for table in (h.migrations, h.faults, h.sysmeta, h.bdms):
                assert all(r["shadow"] for r in table if r["instance_uuid"] == instance_uuid)
            assert all(a["shadow"] for a in h.actions_of[instance_uuid])
    for event in h.events:
        if event["shadow"]:  # the Newton+ archiver flags actions and events deleted = id
            assert event["deleted"] == event["id"]
    assert seen["archived"] > 10 and seen["live-migrations"] >= 1, seen


def test_local_deletes_record_no_action(history):
    h = history
    for instance_uuid, instance in h.instances.items():
        if not instance["deleted"]:
            continue
        deletes = [a for a in h.actions_of[instance_uuid] if a["action"] == "delete"]
        for action in deletes:
            events = h.events_of(action)
            assert [e["event"] for e in events] in (["compute_terminate_instance"], [])
            for event in events:
                assert event["truth"].host == instance["host"]  # the row keeps host


def test_single_release_history(blank_db):
    cell = _simulated(
        blank_db,
        SimulationOptions(
            seed=2, instances=40, hosts=5, days=120, first_release="queens", last_release="queens"
        ),
    )
    try:
        h = History(cell)
        assert [e[0] for e in h.eras] == ["queens", "rocky"]
        assert {t.era for t in h.truth.values()} <= {"queens", "rocky"}
    finally:
        cell.dispose()


# ------------------------------------------------------------------ the command


def test_refuses_a_database_that_holds_events(blank_db):
    cell = _simulated(blank_db, SimulationOptions(seed=1, instances=5, hosts=3, days=30))
    try:
        before = cell.checksum()
        result = harness.cli("simulate", "--db", blank_db, "--instances", "5")
        assert result.exit_code == ExitCode.BAD_INPUT
        assert "already holds instance action events" in result.stderr
        assert cell.checksum() == before
    finally:
        cell.dispose()


@pytest.mark.backends("sqlite")
def test_bad_options_are_bad_input(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    for args in (
        ["--hosts", "2"],
        ["--cutover", "1.5"],
        ["--events", "5", "--instances", "5"],
        ["--first-release", "havana"],
        ["--first-release", "pike", "--last-release", "liberty"],
    ):
        result = harness.cli("simulate", "--db", url, *args)
        assert result.exit_code == ExitCode.BAD_INPUT, args
        assert result.stderr.startswith("error: "), args
    result = harness.cli(
        "simulate", "--db", url, "--first-release", "pike", "--last-release", "liberty"
    )
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--first-release pike comes after --last-release liberty" in result.stderr
    assert not (tmp_path / "x.sqlite").exists()
    help_text = harness.cli("simulate", "--help").output
    assert all(release in help_text for release in SIMULATED)


@pytest.mark.backends("sqlite")
def test_validate_names_the_flag():
    for options, flag in (
        (SimulationOptions(first_release="rocky"), "--first-release"),
        (SimulationOptions(last_release="havana"), "--last-release"),
    ):
        with pytest.raises(Exception, match=flag):
            options.validate()


def test_events_option_sizes_the_history(blank_db):
    result = simulate(
        parse_url(blank_db), SimulationOptions(seed=3, events=4000, hosts=6, days=400)
    )
    assert 3000 <= result.events <= 5000
    assert result.options["first_release"] == "kilo" and result.options["last_release"] == "queens"
    with sa.create_engine(blank_db).connect() as conn:
        live = conn.execute(sa.text("SELECT COUNT(*) FROM instance_actions_events")).scalar()
    assert live == result.counts["instance_actions_events"]


def test_icehouse_and_juno_record_what_they_recorded(ancient):
    """2014.1/2014.2 (releases.py): silent live migrations, build event names, Icehouse's
    candidate faults, migrate recorded as resize, rebuild without the conductor."""
    h = ancient
    old = ("icehouse", "juno")
    actions = [a for a in h.actions.values() if h.era(a["start_time"]) in old]
    names = {(h.era(a["start_time"]), a["action"]) for a in actions}
    # No live migration leaves an action, an event or a row ...
    assert not any(name.startswith("live") for _, name in names)
    assert not any(h.era(m["created_at"]) in old and m["migration_type"] for m in h.migrations)
    # ... yet hosts change between actions that cannot move an instance.
    silent = 0
    for lives in h.actions_of.values():
        hosts = [
            e["truth"].host
            for a in lives
            if h.era(a["start_time"]) in old
            for e in sorted(h.events_of(a), key=lambda e: (e["start_time"], e["id"]))
            if a["action"] in ("reboot", "stop", "start", "pause", "unpause", "suspend", "resume")
        ]
        silent += sum(1 for x, y in itertools.pairwise(hosts) if x != y)
    assert silent > 5
    # Builds: compute_run_instance (Icehouse), compute_build_and_run_instance (Juno).
    for e in h.events:
        if e["action"] == "create" and e["event"].startswith("compute_"):
            expected = {
                "icehouse": "compute_run_instance",
                "juno": "compute_build_and_run_instance",
            }.get(e["truth"].era, "compute__do_build_and_run_instance")
            assert e["event"] == expected
    # Icehouse: a rescheduled attempt ends with its candidate's own fault.
    tied = 0
    for a in actions:
        attempts = sorted(
            (e for e in h.events_of(a) if e["event"] == "compute_run_instance"),
            key=lambda e: (e["start_time"], e["id"]),
        )
        for attempt, following in itertools.pairwise(attempts):
            tied += any(
                f["host"] == attempt["truth"].host
                and attempt["start_time"] <= f["created_at"] <= following["start_time"]
                for f in h.faults_in(a)
            )
    assert tied > 3
    # Icehouse records a migrate as resize and rebuilds without the conductor.
    assert ("icehouse", "migrate") not in names and ("juno", "migrate") in names
    conductor = {h.era(e["start_time"]) for e in h.events if e["event"] == "rebuild_server"}
    assert "icehouse" not in conductor and "juno" in conductor
