"""What bounds a run's memory and its pauses: chunks cut by events, the collector's moments."""

from __future__ import annotations

import gc
import itertools
import threading
import weakref

import pytest

from actionhost_backfill.engine import collector
from actionhost_backfill.engine.planner import cut


def test_chunks_are_cut_by_instances_and_by_events():
    counts = [3, 3, 3, 3, 3]
    assert list(cut(counts, instances=2, events=100)) == [(0, 2), (2, 4), (4, 5)]
    assert list(cut(counts, instances=10, events=6)) == [(0, 2), (2, 4), (4, 5)]
    assert list(cut(counts, instances=10, events=100)) == [(0, 5)]


def test_an_instance_with_more_events_than_a_chunk_is_a_chunk_alone():
    assert list(cut([1, 50, 1, 1], instances=10, events=5)) == [(0, 1), (1, 2), (2, 4)]
    assert list(cut([], instances=10, events=5)) == []


def test_every_instance_is_in_exactly_one_chunk_in_order():
    counts = [(i * 7919) % 97 + 1 for i in range(1000)]
    pieces = list(cut(counts, instances=40, events=600))
    assert pieces[0][0] == 0 and pieces[-1][1] == len(counts)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    for start, stop in pieces:
        assert stop - start <= 40
        assert stop - start == 1 or sum(counts[start:stop]) <= 600


def test_no_automatic_collection_during_a_run_and_the_collector_restored_after():
    assert gc.isenabled()
    with collector.collect_between_batches():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()  # a caller that had it off gets it back off
    try:
        with collector.collect_between_batches():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_runs_restore_the_collector_when_the_last_ends():
    first_in, second_done = threading.Event(), threading.Event()
    seen = []

    def second():
        first_in.wait()
        with collector.collect_between_batches():
            seen.append(gc.isenabled())
        second_done.set()

    t = threading.Thread(target=second)
    t.start()
    with collector.collect_between_batches():
        first_in.set()
        second_done.wait()
        seen.append(gc.isenabled())  # the other run ended; this one still runs
    t.join()
    assert seen == [False, False] and gc.isenabled()


def test_cyclic_garbage_is_freed_between_batches(monkeypatch):
    class Node:
        pass

    freed = []
    with collector.collect_between_batches():
        node = Node()
        node.me = node
        ref = weakref.ref(node, lambda _: freed.append(True))
        del node
        assert ref() is not None  # a cycle: reference counting cannot free it
        assert not collector.between_batches()  # too soon after the last collection
        monkeypatch.setattr(collector, "COLLECT_SECONDS", 0.0)
        assert collector.between_batches()
        assert freed == [True]


def test_between_batches_outside_a_run_does_nothing(monkeypatch):
    monkeypatch.setattr(collector, "COLLECT_SECONDS", 0.0)
    assert not collector.between_batches()


@pytest.fixture(autouse=True)
def _collector_left_as_found():
    yield
    assert collector._active == 0 and gc.isenabled()


def test_a_collection_waits_while_another_runs_batch_is_open(monkeypatch):
    monkeypatch.setattr(collector, "COLLECT_SECONDS", 0.0)
    with collector.collect_between_batches():
        with collector.in_batch():  # another cell's write transaction
            assert not collector.between_batches()
            monkeypatch.setattr(collector, "DEFER_SECONDS", 0.0)
            assert collector.between_batches()  # waited long enough: collects anyway
        monkeypatch.setattr(collector, "DEFER_SECONDS", 60.0)
        assert collector.between_batches()  # no batch open


def test_objects_a_host_program_froze_stay_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector.collect_between_batches():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_run_leaves_nothing_frozen():
    with collector.collect_between_batches():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
