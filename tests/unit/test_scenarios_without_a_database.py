"""Every history of tests/scenarios.py, decided without a database.

tests/test_backfill_rules.py writes these histories into a cell on SQLite,
PostgreSQL and MariaDB and runs a whole backfill; here the very rows the
``HistoryBuilder`` would insert (taken before any write) go straight to the
rules.  Both lanes assert the same expected ``(host, rule)`` per event, so a
rule change is checked here in a second and the database lane says the same.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from actionhost_backfill.inference import CONTRADICTION, RULES, Timeline, decide, infer
from actionhost_backfill.sim.columns import COLUMNS
from actionhost_backfill.sim.history import HistoryBuilder
from tests import scenarios
from tests.scenarios import S
from tests.unit.histories import batch_of, decisions_of


def rows_of(builder: HistoryBuilder) -> dict[str, list[dict]]:
    """What ``builder.write`` would insert, as the database returns it: dicts by column name."""
    batch = builder.take()
    assert not batch.updates and not batch.soft_deletes, "nothing was written to update"
    return {
        table: [dict(zip(COLUMNS[table.removeprefix("shadow_")], row, strict=True)) for row in rows]
        for table, rows in batch.rows.items()
    }


def _decided(expect_of) -> tuple[dict, dict]:
    builder = HistoryBuilder()
    expect = expect_of(builder)
    decisions = decisions_of(rows_of(builder))
    return expect, {i: (d.host, d.rule) for i, d in decisions.items()}


def test_every_rule_on_hand_built_histories():
    """The unit twin of test_backfill_rules.test_every_rule_on_hand_built_histories."""
    expect, got = _decided(scenarios.build_all)

    mismatches = [(i, want, got.get(i)) for i, want in sorted(expect.items()) if got.get(i) != want]
    assert not mismatches, "\n".join(map(str, mismatches))
    assert set(got) == set(expect), "every NULL event is decided, and only those"
    assert {rule for host, rule in expect.values() if host} == set(RULES)


@pytest.mark.parametrize("case", scenarios.CASES, ids=lambda f: f.__name__)
def test_release_behaviour(case):
    """The unit twin of test_backfill_rules.test_release_behaviour."""
    expect, got = _decided(lambda b: scenarios.build_all(b, scenarios=[case]))

    assert {i: got.get(i) for i in expect} == expect


def _contradicting(h: HistoryBuilder) -> None:
    """Rows no Nova writes (tests/test_clocks_and_contradictions.py has the story):
    a build whose attempts each keep their finish and result, read as evidence, and
    a retried reboot whose successful retry is only among the rows being decided."""
    scenarios.register_services(h)
    life = scenarios.Life(h, datetime(2016, 6, 1))
    build = "compute__do_build_and_run_instance"
    a = life.action("create", gap=S)
    h.own_finishes.add(a)
    t1 = life.at(2 * S)
    h.event_start(life.uuid, a, build, t1)
    h.fault(life.uuid, "cmp-x", t1 + 9 * S, message="Build of instance aborted")
    h.event_finish(a, build, t1 + 10 * S, result="Error")
    h.event_start(life.uuid, a, build, t1 + 10 * S)
    h.event_finish(a, build, t1 + 50 * S)
    life.t = t1 + 50 * S
    life.generic("compute_reboot_instance", "cmp-b", "current-host")
    again = life.action("reboot")
    h.own_finishes.add(again)
    t2 = life.at(2 * S)
    h.event_start(life.uuid, again, "compute_reboot_instance", t2)
    h.fault(life.uuid, "cmp-b", t2 + 4 * S)
    h.event_finish(again, "compute_reboot_instance", t2 + 5 * S, result="Error")
    h.event_start(life.uuid, again, "compute_reboot_instance", t2 + 9 * S)
    h.event_finish(again, "compute_reboot_instance", t2 + 15 * S)
    life.done(host="cmp-b", launched_on="cmp-b", launched_at=t1 + 49 * S)


@pytest.mark.parametrize("build", [scenarios.build_all, _contradicting], ids=["all", "contra"])
def test_a_batch_decides_as_each_event_alone(build):
    """``infer`` takes shortcuts over a batch (one timeline per instance, the repeated-step
    check done once for the batch); each event still gets what :func:`decide` gives it
    alone with a timeline of its own, in any order of the batch."""
    builder = HistoryBuilder()
    build(builder)
    events, actions, histories, hosts = batch_of(rows_of(builder))
    finished: dict[tuple, int] = {}
    for e in events:
        if e.finish is not None or e.result is not None:
            finished[(e.action_id, e.name)] = finished.get((e.action_id, e.name), 0) + 1

    batch = infer(events, actions, histories, hosts)
    backwards = infer(events[::-1], actions, histories, hosts)

    assert [d.event_id for d in batch] == [e.id for e in events]
    assert backwards[::-1] == batch
    for event, got in zip(events, batch, strict=True):
        action = actions.get(event.action_id)
        history = histories.get(action.instance_uuid) if action else None
        alone = decide(event, action, history, Timeline(history, hosts) if history else None)
        if finished.get((event.action_id, event.name), 0) > 1:
            # Two rows being decided both carry a finish: only the batch sees both.
            assert got.rule == CONTRADICTION, event
        else:
            assert got == alone, event
    if build is _contradicting:
        assert sum(d.rule == CONTRADICTION for d in batch) == 4
