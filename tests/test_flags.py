"""Flags borrowed from nova-manage and the pt tools mean what operators expect.

``--max-rows`` counts rows written (hosts filled, rows reverted), not rows
examined; with ``--until-complete`` it caps each pass, passes running until
nothing is left (nova-manage ``online_data_migrations --max-count``).
``--check-interval`` is the throttle's polling interval (pt-online-schema-change).
``--max-lag`` with no replica says so once and runs unthrottled, or with
``--fail-without-replicas`` refuses before anything is written (pt-osc:
"No slaves found").  ``--replica`` needs no database name.  Invalid numbers
are one-line bad input (127), never a raw SQL error.
"""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.throttling import ThrottleOptions, build_throttle
from actionhost_backfill.errors import BadInput
from tests.harness import Cell, cli, prepare_scenarios


def _prepare(cell: Cell) -> None:
    prepare_scenarios(cell)


def _filled(cell: Cell) -> int:
    return cell.scalar(
        f"SELECT COUNT(*) FROM {cell.location.schema}.audit WHERE outcome = 'filled'"
    )


def _hosts(cell: Cell) -> list[tuple]:
    return cell.rows("SELECT id, host FROM instance_actions_events ORDER BY id")


def test_max_rows_counts_rows_written(cell):
    _prepare(cell)
    result = cli("backfill", "--db", cell.url, "--max-rows", "10", "--batch-size", "4", "--json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["filled"] == 10 and _filled(cell) == 10
    assert payload["examined"] > 10, "events left NULL are examined but not counted"
    more = cli("revert", "--run", "1", "--db", cell.url, "--max-rows", "3", "--json")
    assert more.exit_code == 1, more.output
    assert json.loads(more.stdout)["reverted"] == 3


def test_max_rows_with_until_complete_caps_each_pass(cell):
    _prepare(cell)
    nulls = cell.scalar("SELECT COUNT(*) FROM instance_actions_events WHERE host IS NULL")
    result = cli("backfill", "--db", cell.url, "--max-rows", "10", "--until-complete", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["outcome"] == "complete" and payload["remaining"] == 0
    assert payload["filled"] > 10 and payload["passes"] == -(-payload["filled"] // 10)
    assert payload["filled"] + payload["left_null"] == nulls
    assert cli("backfill", "--db", cell.url, "--json").exit_code == 0


def test_check_interval_is_the_throttle_polling_interval(cell):
    _prepare(cell)
    url = parse_url(cell.url)
    engine = sa.create_engine(cell.url)
    try:
        with engine.connect() as conn:
            throttle = build_throttle(
                ThrottleOptions(pause_file="/nonexistent", check_interval=0.05),
                url,
                conn,
                threading.Event(),
            )
    finally:
        engine.dispose()
    assert throttle.poll == 0.05
    for value in ("0", "-1", "61"):
        bad = cli("backfill", "--db", cell.url, "--check-interval", value)
        assert bad.exit_code == 127, bad.output
        assert "--check-interval must be between 0.01 and 60 seconds" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_max_lag_without_replicas_says_so_once_or_refuses(cell):
    _prepare(cell)
    before = _hosts(cell)
    refused = cli("backfill", "--db", cell.url, "--max-lag", "5", "--fail-without-replicas")
    assert refused.exit_code == 127, refused.output
    assert "--max-lag 5: no replica found on" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert _hosts(cell) == before
    assert cell.scalar(f"SELECT COUNT(*) FROM {cell.location.schema}.runs") == 0
    assert not cell.rows(f"SELECT token FROM {cell.location.schema}.runner_lease")

    ran = cli("backfill", "--db", cell.url, "--max-lag", "5", "--no-progress", "--json")
    assert ran.exit_code == 0, ran.output
    said = [line for line in ran.stderr.splitlines() if "no replica found" in line]
    assert len(said) == 1 and "running without lag throttling" in said[0], ran.stderr
    payload = json.loads(ran.stdout)
    assert payload["notices"] == said and payload["filled"] > 0

    lonely = cli("backfill", "--db", cell.url, "--fail-without-replicas")
    assert lonely.exit_code == 127 and "needs --max-lag" in lonely.stderr


@pytest.mark.backends("postgresql", "mysql")
def test_replica_url_needs_no_database_name(cell, backend, server_url):
    """A lag check reads the server's replication status, as pt-osc's host-only DSNs."""
    _prepare(cell)
    admin = sa.engine.make_url(server_url)
    server = sa.engine.URL.create(
        admin.drivername, admin.username, admin.password, admin.host, admin.port
    )
    options = ThrottleOptions(max_lag=5, replicas=[server.render_as_string(hide_password=False)])
    options.validate()
    engine = sa.create_engine(cell.url)
    try:
        with engine.connect() as conn:
            throttle = build_throttle(options, parse_url(cell.url), conn, threading.Event())
    finally:
        engine.dispose()
    (check,) = throttle.checks
    assert check.url.database is None
    try:
        # The test server is a primary: the check connects (no database needed) and says so.
        if backend == "mysql":
            assert "is not replicating" in check.read().reason
        else:
            with pytest.raises(BadInput, match="is not a streaming replica"):
                check.read()
    finally:
        throttle.close()


def test_invalid_numbers_are_bad_input_in_one_line(cell):
    _prepare(cell)
    for args, message in (
        (["status", "--limit", "-1"], "--limit must be at least 1 (got -1)"),
        (["status", "--limit", "0"], "--limit must be at least 1 (got 0)"),
        (["backfill", "--sleep", "-1"], "--sleep must be between 0 and 3600 seconds"),
        (["backfill", "--batch-size", "0"], "--batch-size must be between 1 and 100000"),
        (["backfill", "--max-rows", "0"], "--max-rows must be at least 1"),
        (["revert", "--run", "1", "--sleep", "-1"], "--sleep must be between 0 and 3600"),
        (["backfill", "--progress-interval", "-5"], "--progress-interval must be between"),
    ):
        result = cli(*args, "--db", cell.url)
        assert result.exit_code == 127, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
