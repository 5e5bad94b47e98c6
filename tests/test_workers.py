"""Planners in parallel (``backfill --workers N``, engine/workers.py): the same decisions as
one planner, event by event, and no worker process outliving its parent.
"""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine import pipeline, planner, workers
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import BadInput, WorkerFailed
from actionhost_backfill.inference import EventRow, KnownHosts
from actionhost_backfill.sim.simulate import SimulationOptions
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
    """Chunks of a few instances: many chunks for the workers to share."""
    monkeypatch.setattr(pipeline, "PLAN_INSTANCES", instances)
    monkeypatch.setattr(planner, "PLAN_INSTANCES", instances)


@pytest.mark.parametrize("history", [HISTORY, EARLY], ids=["seed21", "early-amplified"])
def test_three_workers_decide_exactly_what_one_decides(
    history, backend, server_url, blank_db, tmp_path, request, monkeypatch
):
    one = simulated(another_database(backend, server_url, tmp_path, request, "one"), history)
    three = simulated(blank_db, history)
    _small_chunks(monkeypatch)
    used: set[int] = set()
    send = workers._Worker.send

    def sent(self, work):
        used.add(id(self))
        return send(self, work)

    monkeypatch.setattr(workers._Worker, "send", sent)
    try:
        first = run_backfill(
            parse_url(one.url), BackfillOptions(include_shadow=True, batch_size=50, workers=1)
        )
        assert not used  # one worker: the rules run in the planner, no process
        second = run_backfill(
            parse_url(three.url), BackfillOptions(include_shadow=True, batch_size=50, workers=3)
        )
        assert first.outcome == second.outcome == "complete"
        assert len(used) == 3  # every worker decided chunks
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


def test_workers_must_be_at_least_one():
    with pytest.raises(BadInput, match="--workers must be between 1 and"):
        BackfillOptions(workers=0).validate()


def _works(n: int) -> list[workers.Work]:
    """Chunks of events whose action is gone: the rules need no evidence for them."""
    evidence = SimpleNamespace(actions={}, histories={}, hosts=KnownHosts())
    return [
        workers.Work(
            [EventRow(k * 10 + i, None, "e", None, None, None) for i in range(k % 4)], evidence, k
        )
        for k in range(n)
    ]


def test_chunks_come_back_in_their_order_with_markers_in_place():
    stop = object()
    items = [*_works(9), stop, *_works(3)]
    with workers.Deciders(1) as one:
        expected = list(one.decide(items))
    with workers.Deciders(3) as three:
        got = list(three.decide(items))
        assert len(three.pids()) == 3
    assert [g if g is stop else (g[0].tag, g[1]) for g in got] == [
        e if e is stop else (e[0].tag, e[1]) for e in expected
    ]


def test_a_failing_chunk_raises_and_stops_the_workers():
    broken = workers.Work([None], SimpleNamespace(actions={}, histories={}, hosts=KnownHosts()))
    deciders = workers.Deciders(2)
    with pytest.raises(WorkerFailed, match=r"AttributeError.*run the same command again"):
        list(deciders.decide([*_works(2), broken, *_works(2)]))
    assert deciders.pids() == []  # the pool was stopped, not left holding stale chunks
