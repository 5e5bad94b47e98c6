"""Planners in parallel (``backfill --workers N``, engine/workers.py): the same decisions as
one planner, event by event, and no worker process outliving its parent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import create_engine, parse_url
from actionhost_backfill.engine import backfill_options, planner, workers
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.engine.evidence import EvidenceSnapshot
from actionhost_backfill.engine.progress import silent
from actionhost_backfill.errors import BadInput, DatabaseUnavailable, WorkerFailed
from actionhost_backfill.sim.simulate import SimulationOptions
from tests import harness
from tests.harness import wait_until
from tests.reliability.common import (
    HISTORY,
    another_database,
    audit_state,
    backfill_process,
    simulated,
    table_state,
)
from tests.test_simulate import AMPLIFIED

#: A Kilo-to-Mitaka cloud with the rare recording paths made common.
EARLY = SimulationOptions(
    seed=11,
    instances=260,
    hosts=6,
    days=540,
    first_release="kilo",
    last_release="mitaka",
    rates=AMPLIFIED,
)


def _small_chunks(monkeypatch, instances: int = 7) -> None:
    """Chunks of a few instances: many chunks from every planner."""
    monkeypatch.setattr(planner, "PLAN_INSTANCES", instances)


@pytest.mark.parametrize("history", [HISTORY, EARLY], ids=["seed21", "early-amplified"])
def test_three_workers_decide_exactly_what_one_decides(
    history, backend, server_url, blank_db, tmp_path, request, monkeypatch
):
    one = simulated(another_database(backend, server_url, tmp_path, request, "one"), history)
    three = simulated(blank_db, history)
    _small_chunks(monkeypatch)
    used: Counter = Counter()
    receive = workers._Planner.receive

    def received(self, expected):
        got = receive(self, expected)
        if expected == "decided" and got[0]:
            used[self.process.name] += 1
        return got

    monkeypatch.setattr(workers._Planner, "receive", received)
    try:
        first = run_backfill(
            parse_url(one.url), BackfillOptions(include_shadow=True, batch_size=50, workers=1)
        )
        assert not used  # one worker: the rules run in the planner, no process
        second = run_backfill(
            parse_url(three.url), BackfillOptions(include_shadow=True, batch_size=50, workers=3)
        )
        assert first.outcome == second.outcome == "complete"
        assert len(used) == 3 and min(used.values()) > 1  # every planner decided chunks
        # Event by event: host, rule and outcome, NULL reasons included.
        assert audit_state(three) == audit_state(one)
        assert table_state(three) == table_state(one)
        assert second.filled_by_rule == first.filled_by_rule
        assert second.null_by_reason == first.null_by_reason
        assert second.examined == first.examined > 0
    finally:
        one.dispose()
        three.dispose()


def test_a_dry_run_with_workers_counts_what_one_planner_counts(blank_db, monkeypatch):
    cell = simulated(blank_db, dataclasses.replace(HISTORY, events=1500))
    _small_chunks(monkeypatch)
    try:
        one = run_backfill(parse_url(cell.url), BackfillOptions(dry_run=True, workers=1))
        two = run_backfill(parse_url(cell.url), BackfillOptions(dry_run=True, workers=2))
        assert one.examined == two.examined > 0
        assert one.filled_by_rule == two.filled_by_rule
        assert one.null_by_reason == two.null_by_reason
        # The first decisions of each rule, looked up by the runner whoever decided them.
        assert {s["rule"] for s in two.samples} == {s["rule"] for s in one.samples}
        kept = {s["event_id"]: s for s in one.samples}
        for sample in two.samples:
            if sample["event_id"] in kept:
                assert sample == kept[sample["event_id"]]
    finally:
        cell.dispose()


def _children(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        for child in map(int, text.split()):
            found |= {child} | _children(child)
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_kill_9_of_the_parent_leaves_no_worker_behind_and_the_resume_completes(
    backend, server_url, blank_db, tmp_path, request
):
    reference = simulated(another_database(backend, server_url, tmp_path, request, "reference"))
    victim = simulated(blank_db)
    try:
        straight = run_backfill(parse_url(reference.url), BackfillOptions(batch_size=25))
        assert straight.outcome == "complete"
        child = backfill_process(
            victim.url, "--workers", "2", "--batch-size", "10", "--sleep", "0.2"
        )
        wait_until(lambda: len(_children(child.pid)) >= 2, "two planner workers started")
        below = _children(child.pid)
        assert child.poll() is None, "the run ended before the kill"
        child.send_signal(signal.SIGKILL)
        child.communicate()
        wait_until(lambda: not any(_alive(p) for p in below), "every worker exited")
        final = backfill_process(victim.url, "--workers", "2")
        _out, err = final.communicate(timeout=600)
        assert final.returncode == 0, err
        assert table_state(victim) == table_state(reference)
        assert audit_state(victim) == audit_state(reference)
    finally:
        reference.dispose()
        victim.dispose()


def _evidence(conn, snapshot) -> dict[str, Counter]:
    """Every row of each evidence table the snapshot took, counted."""
    names = ["ah_mig", "ah_ev"]
    names += ["ah_meta"] if "instance_system_metadata" in snapshot.present else []
    names += ["ah_vol"] if snapshot.has_bdm else []
    if snapshot.has_shadow["instance_actions"]:
        names.append("ah_sact")
    if snapshot.has_shadow["instances"]:
        names.append("ah_sinst")
    if snapshot.has_shadow["instance_faults"]:
        names.append("ah_sfault")
    return {
        name: Counter(tuple(r) for r in conn.execute(sa.select(snapshot.metadata.tables[name])))
        for name in names
    }


def test_the_shares_hold_each_instances_evidence_once_and_together_the_cells(blank_db):
    cell = simulated(blank_db)
    # A migration row of no instance belongs to the first share (none is lost).
    cell.execute(
        "INSERT INTO migrations (id, source_compute, dest_compute, status, deleted) "
        "VALUES (999999, 'ghost-src', 'ghost-dst', 'finished', 0)"
    )
    url, location = parse_url(cell.url), cell.location
    engine = create_engine(url, location)
    try:
        with engine.connect() as conn:
            whole = EvidenceSnapshot(conn, location, audit_available=False)
            whole.take()
            everything = _evidence(conn, whole)
            recorded = whole._recorded_hosts()
            split = workers.share_bounds(conn, 3, archived=whole.has_shadow["instance_actions"])
            whole.drop()
        assert len(split) == 3
        taken = []
        for share in split:
            with engine.connect() as conn:
                snapshot = EvidenceSnapshot(conn, location, audit_available=False)
                stats, hosts = snapshot.take_share(share)
                taken.append((_evidence(conn, snapshot), hosts, stats))
                snapshot.drop()
        for name, rows in everything.items():
            assert sum((part[name] for part, _, _ in taken), Counter()) == rows, name
        owners = [{r[0] for r in part["ah_ev"]} for part, _, _ in taken]
        assert all(owners)  # balanced enough that every share has instances
        assert sum(map(len, owners)) == len(set().union(*owners))  # each in one share only
        assert set().union(*(hosts for _, hosts, _ in taken)) == recorded
        assert {"ghost-src", "ghost-dst"} <= taken[0][1]
        assert sum(stats.events for _, _, stats in taken) == sum(everything["ah_ev"].values())
    finally:
        engine.dispose()
        cell.dispose()


def test_runs_stopped_mid_range_by_max_rows_resume_with_shares_to_the_same_end(
    backend, server_url, blank_db, tmp_path, request, monkeypatch
):
    """--max-rows stops the applier while the share planners are mid-range: they are
    stopped, and the resumed run's planners take their shares again."""
    reference = simulated(another_database(backend, server_url, tmp_path, request, "reference"))
    cell = simulated(blank_db)
    _small_chunks(monkeypatch)
    try:
        straight = run_backfill(parse_url(reference.url), BackfillOptions(batch_size=25))
        assert straight.outcome == "complete"
        outcomes = []
        while not outcomes or outcomes[-1] != "complete":
            assert len(outcomes) < 20, outcomes
            options = BackfillOptions(batch_size=25, max_rows=700, workers=2)
            outcomes.append(run_backfill(parse_url(cell.url), options).outcome)
        assert outcomes[0] == "partial"
        assert table_state(cell) == table_state(reference)
        assert audit_state(cell) == audit_state(reference)
    finally:
        reference.dispose()
        cell.dispose()


def test_without_workers_a_large_backlog_is_decided_by_two_planners(
    backend, server_url, blank_db, tmp_path, request, monkeypatch
):
    reference = simulated(another_database(backend, server_url, tmp_path, request, "reference"))
    cell = simulated(blank_db)
    try:
        one = run_backfill(parse_url(reference.url), BackfillOptions(batch_size=50, workers=1))
        monkeypatch.setattr(backfill_options, "AUTO_EVENTS", 100)
        monkeypatch.setattr(backfill_options.os, "cpu_count", lambda: 2)
        chosen = run_backfill(parse_url(cell.url), BackfillOptions(batch_size=50))
        assert (one.workers, chosen.workers) == (1, 2)
        assert table_state(cell) == table_state(reference)
        assert audit_state(cell) == audit_state(reference)
    finally:
        reference.dispose()
        cell.dispose()


def test_the_number_of_planners_is_the_operators_or_chosen_by_backlog_and_cpus(monkeypatch):
    choose = backfill_options.workers_for
    monkeypatch.setattr(backfill_options.os, "cpu_count", lambda: 2)
    assert choose(3, 0) == 3  # --workers wins
    assert choose(1, 10**9) == 1
    assert choose(None, backfill_options.AUTO_EVENTS - 1) == 1  # too few to pay
    assert choose(None, backfill_options.AUTO_EVENTS) == backfill_options.AUTO_WORKERS == 2
    monkeypatch.setattr(backfill_options.os, "cpu_count", lambda: 1)
    assert choose(None, 10**9) == 1  # one core: no second planner to run


def test_workers_must_be_at_least_one():
    with pytest.raises(BadInput, match="--workers must be between 1 and"):
        BackfillOptions(workers=0).validate()


@contextlib.contextmanager
def _two_planners(blank_db):
    """Two share planners on a small simulated cell, and a coordinator planner."""
    cell = simulated(blank_db, dataclasses.replace(HISTORY, events=1500))
    url, location = parse_url(cell.url), cell.location
    engine = create_engine(url, location)
    shares = workers.Shares(
        2, url, location, lock_timeout=5, basis={}, exclude=frozenset(), audit_available=False
    )
    try:
        with engine.connect() as conn:
            snapshot = EvidenceSnapshot(conn, location, audit_available=False)
            shares.take(snapshot)
            assert len(shares.pids()) == 2
            yield (
                cell,
                shares,
                planner.Planner(
                    conn, snapshot, url=url, stop=threading.Event(), bar=lambda *_: silent()
                ),
            )
    finally:
        shares.close()
        engine.dispose()
        cell.dispose()


def test_a_failing_planner_raises_and_every_planner_stops(blank_db):
    with _two_planners(blank_db) as (_, shares, coordinator):
        with pytest.raises(WorkerFailed, match=r"planner-0 failed: .*run the same command again"):
            list(shares.decide_in_order(coordinator, "no_such_events", 0, 10, lease=None))
        assert shares.pids() == []  # both stopped, none left deciding a stale range


@pytest.mark.backends("postgresql", "mysql")
def test_a_planner_that_loses_the_server_says_so_as_the_runner_would(blank_db, backend):
    with _two_planners(blank_db) as (cell, shares, coordinator):
        harness.cut_connections(backend, cell.sa_url.database)
        with pytest.raises(
            DatabaseUnavailable,
            match=r"lost the connection .* in planner-\d.*run the same command",
        ):
            list(
                shares.decide_in_order(coordinator, "instance_actions_events", 0, 10**9, lease=None)
            )
        assert shares.pids() == []
