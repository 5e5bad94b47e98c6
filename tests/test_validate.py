"""``validate`` and ``explain``: read-only, correct on a simulated cell, and able to fail."""

from __future__ import annotations

import json

import pytest

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.inference import timeline as timeline_module
from actionhost_backfill.reports.validate import ValidateOptions, lower_bound, run_validate
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from tests import harness

#: A small history whose last third was recorded by "Rocky": plenty of recorded events.
HISTORY = SimulationOptions(seed=5, instances=150, hosts=10, days=400, cutover=0.6)


@pytest.fixture
def simulated(blank_db) -> harness.Cell:
    simulate(parse_url(blank_db), HISTORY)
    cell = harness.Cell(blank_db)
    yield cell
    cell.dispose()


def test_validate_writes_nothing_and_finds_no_wrong_host(simulated):
    before = simulated.checksum()
    fingerprint = simulated.fingerprint()
    report = run_validate(parse_url(simulated.url), ValidateOptions(sample=100, seed=3))
    assert simulated.checksum() == before and simulated.fingerprint() == fingerprint
    assert report.instances_sampled == min(100, report.instances_eligible) > 10
    assert report.total.hidden > 50 and report.total.filled > 0
    assert report.total.wrong == 0 and report.exit_code == ExitCode.OK
    assert sum(t.filled for t in report.by_rule.values()) == report.total.filled
    assert sum(t.hidden for t in report.by_event.values()) == report.total.hidden
    assert report.to_dict()["total"]["precision_pct"] == 100.0


def test_validate_after_a_backfill_is_still_read_only(simulated):
    """With a state schema and an audit present, the toolkit's own values are not evidence."""
    revisions.upgrade(parse_url(simulated.url))
    run_backfill(parse_url(simulated.url), BackfillOptions(include_shadow=True))
    before = simulated.checksum()
    report = run_validate(parse_url(simulated.url), ValidateOptions(sample=50, seed=1))
    assert simulated.checksum() == before
    assert report.total.wrong == 0


def test_validate_reports_a_broken_rule(simulated, monkeypatch):
    """If a rule wrote another host, validate must see it, list it and exit 5."""
    real = timeline_module.Timeline.host_of

    def broken(self, index, *, when_missing):
        host, rule = real(self, index, when_missing=when_missing)
        return (f"{host}-elsewhere", rule) if host else (host, rule)

    monkeypatch.setattr(timeline_module.Timeline, "host_of", broken)
    result = harness.cli("validate", "--db", simulated.url, "--sample", "50", "--json")
    assert result.exit_code == ExitCode.WRONG_HOSTS, result.output
    payload = json.loads(result.stdout)
    assert payload["total"]["wrong"] > 0 and payload["wrong"]
    example = payload["wrong"][0]
    assert example["inferred"].endswith("-elsewhere") and example["expected"]
    assert example["inferred"] != example["expected"]


def test_explain_agrees_with_what_the_backfill_wrote(simulated):
    revisions.upgrade(parse_url(simulated.url))
    run_backfill(parse_url(simulated.url), BackfillOptions(include_shadow=True))
    schema_name = simulated.location.schema
    rows = simulated.rows(
        f"SELECT event_id, host, rule FROM {schema_name}.audit "
        "WHERE event_table = 'instance_actions_events' ORDER BY event_id"
    )
    assert rows
    for event_id, host, rule in rows[:: max(1, len(rows) // 15)]:
        result = harness.cli("explain", str(event_id), "--db", simulated.url, "--json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["decision"] == {"host": host, "rule": rule}, event_id
        assert payload["audit"][0]["rule"] == rule
    text = harness.cli("explain", str(rows[0][0]), "--db", simulated.url)
    assert text.exit_code == 0 and "decision:" in text.stdout and "segments" in text.stdout


def test_explain_unknown_event_is_bad_input(simulated):
    result = harness.cli("explain", "999999999", "--db", simulated.url)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "no event with id 999999999" in result.stderr


@pytest.mark.parametrize(
    ("correct", "total", "expected"),
    [(0, 0, None), (0, 5, 0.0), (10, 10, 0.05**0.1), (95, 100, 0.89775), (950, 1000, 0.93714)],
)
def test_lower_bound_is_clopper_pearson(correct, total, expected):
    value = lower_bound(correct, total)
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected, abs=5e-5)
