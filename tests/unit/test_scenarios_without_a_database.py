"""Every history of tests/scenarios.py, decided without a database.

tests/test_backfill_rules.py writes these histories into a cell on SQLite,
PostgreSQL and MariaDB and runs a whole backfill; here the very rows the
``HistoryBuilder`` would insert (taken before any write) go straight to the
rules.  Both lanes assert the same expected ``(host, rule)`` per event, so a
rule change is checked here in a second and the database lane says the same.
"""

from __future__ import annotations

import pytest

from actionhost_backfill.inference import RULES
from actionhost_backfill.sim.columns import COLUMNS
from actionhost_backfill.sim.history import HistoryBuilder
from tests import scenarios
from tests.unit.histories import decisions_of


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
