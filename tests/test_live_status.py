"""``status`` while a backfill runs: who runs it, how far it is, and exit 3 (busy), never
"run the backfill again to resume it" while its runner is alive.

The runner is a real process held at a pause file; the test waits for its
"paused" progress line (an event, not a sleep) before asking ``status``.
"""

from __future__ import annotations

import getpass
import json
import socket

from tests.harness import Cell, cli, prepare_scenarios
from tests.stderrwatch import Watched


def _prepare(cell: Cell) -> None:
    prepare_scenarios(cell, copies=2)


def test_status_during_a_live_run_shows_owner_progress_and_exits_busy(cell, tmp_path):
    _prepare(cell)
    pause = tmp_path / "pause"
    runner = Watched(
        ["backfill", "--db", cell.url, "--batch-size", "10", "--max-rows", "25"],
        ["--progress-interval", "0.2", "--no-progress"],
    )
    code, _, lines = runner.finish()
    assert code == 1, lines  # a partial run: 25 hosts written, its checkpoint saved

    pause.touch()
    runner = Watched(
        ["backfill", "--db", cell.url, "--batch-size", "10", "--pause-file", str(pause)],
        ["--progress-interval", "0.2"],
    )
    try:
        runner.wait_for(lambda line: "throttled:" in line, "the resumed run paused")
        status = cli("status", "--db", cell.url)
        payload = json.loads(cli("status", "--db", cell.url, "--json").stdout)
    finally:
        pause.unlink()
    code, _, lines = runner.finish()
    assert code == 0, lines

    assert status.exit_code == 3, status.output
    owner = f"{getpass.getuser()}@{socket.gethostname()} pid {runner.process.pid}"
    assert f"run 1 (backfill) is running: {owner} since " in status.stdout
    assert "run the backfill again" not in status.stdout
    assert "run the same command again" not in status.stdout
    live = payload["live"]
    assert payload["exit_code"] == 3 and live["run_id"] == 1 and live["kind"] == "backfill"
    assert live["pid"] == runner.process.pid and live["hostname"] == socket.gethostname()
    assert live["holder"] == owner and live["since"]
    assert live["done"] > 0 and live["planned"] > live["done"]
    assert live["rows_per_second"] > 0 and live["eta_seconds"] is not None
    schema = cell.location.schema
    assert cell.scalar(f"SELECT runner FROM {schema}.runs WHERE id = 1") == owner

    after = cli("status", "--db", cell.url, "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout)["live"] is None
