"""The accuracy report on a simulated history, and the demo, on every backend."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.accuracy import accuracy
from actionhost_backfill.sim.simulate import SimulationOptions, simulate
from tests import harness

HISTORY = SimulationOptions(seed=11, events=6000, hosts=12, days=365)


def _backfilled(url: str) -> tuple[harness.Cell, object]:
    simulate(parse_url(url), HISTORY)
    revisions.upgrade(parse_url(url))
    result = run_backfill(parse_url(url), BackfillOptions(include_shadow=True))
    assert result.outcome == "complete"
    return harness.Cell(url), result


def test_accuracy_report(blank_db):
    cell, result = _backfilled(blank_db)
    try:
        report = accuracy(parse_url(blank_db))
        assert report.filled == result.filled > 1000
        assert report.by_rule.keys() == result.filled_by_rule.keys()
        for rule, stats in report.by_rule.items():
            assert stats["filled"] == result.filled_by_rule[rule]
        assert report.null_by_reason == dict(result.null_by_reason)
        assert report.was_null == result.examined
        assert report.not_examined == 0
        assert report.precision >= 99.9 and not report.wrong_examples
        assert report.compute_coverage >= 90.0

        # A value that differs from the truth is caught and shown as an example.
        schema_name = cell.location.schema
        event_table, event_id, host = cell.rows(
            f"SELECT event_table, event_id, host FROM {schema_name}.audit "
            "WHERE outcome = 'filled' ORDER BY event_id LIMIT 1"
        )[0]
        cell.execute(
            f"UPDATE {schema_name}.simulation_truth SET host = 'elsewhere' "
            "WHERE event_table = :t AND event_id = :i",
            {"t": event_table, "i": event_id},
        )
        tampered = accuracy(parse_url(blank_db))
        assert tampered.wrong == 1 and tampered.correct == report.correct - 1
        assert tampered.wrong_examples == [
            {
                "rule": tampered.wrong_examples[0]["rule"],
                "event_table": event_table,
                "event_id": event_id,
                "event": tampered.wrong_examples[0]["event"],
                "host": host,
                "truth": "elsewhere",
            }
        ]

        out = harness.cli("accuracy", "--db", blank_db, "--json")
        assert out.exit_code == 0
        payload = json.loads(out.stdout)
        assert payload["wrong"] == 1 and payload["filled"] == report.filled
    finally:
        cell.dispose()


def _decisions(url: str) -> list[tuple]:
    cell = harness.Cell(url)
    try:
        return cell.rows(
            f"SELECT event_table, event_id, host, rule, outcome FROM {cell.location.schema}.audit "
            "ORDER BY event_table, event_id"
        )
    finally:
        cell.dispose()


@pytest.mark.backends("postgresql", "mysql")
def test_same_decisions_as_sqlite(blank_db, tmp_path):
    reference = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    for url in (reference, blank_db):
        cell, _ = _backfilled(url)
        cell.dispose()
    assert _decisions(blank_db) == _decisions(reference)


def test_accuracy_needs_a_simulated_history(cell):
    revisions.upgrade(parse_url(cell.url))
    result = harness.cli("accuracy", "--db", cell.url)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "simulate" in result.stderr


def test_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = harness.cli("demo", "--events", "3000", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "1/4 simulate" in result.stderr and "4/4 accuracy" in result.stderr
    assert "Precision" in result.stdout and "result: complete" in result.stdout
    assert (tmp_path / "actionhost-demo.sqlite").is_file()

    again = harness.cli("demo", "--events", "3000", "--no-progress")
    assert again.exit_code == ExitCode.BAD_INPUT and "--fresh" in again.stderr
    fresh = harness.cli("demo", "--events", "3000", "--no-progress", "--fresh")
    assert fresh.exit_code == 0, fresh.stderr


@pytest.mark.backends("postgresql", "mysql")
def test_demo_on_a_server(blank_db):
    result = harness.cli("demo", "--db", blank_db, "--events", "2000", "--no-progress")
    assert result.exit_code == 0, result.stderr
    with sa.create_engine(blank_db).connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM instance_actions_events")).scalar()
