"""Progress without a terminal: a plain line on stderr every --progress-interval seconds.

Under cron, ``| tee``, nohup or Ansible stderr is not a terminal and a bar
would be noise: the backfill and the revert print a line with rows done of
the total, rate, ETA and throttle state instead, also while a pause file
holds them (pt-online-schema-change ``--progress time,30``).  ``--json`` on
stdout is unaffected.  The pause file is the synchronisation: the test waits
for the "paused" line, then removes it.
"""

from __future__ import annotations

import json

from tests.harness import Cell, cli, prepare_scenarios
from tests.stderrwatch import Watched


def _prepare(cell: Cell) -> None:
    prepare_scenarios(cell, copies=2)


def _hosts(cell: Cell) -> list[tuple]:
    return cell.rows("SELECT id, host FROM instance_actions_events ORDER BY id")


def _paused_line(pause) -> callable:
    return lambda line: "throttled:" in line and f"{pause} exists" in line


def test_progress_lines_without_a_terminal_also_while_paused(cell, tmp_path):
    _prepare(cell)
    before = _hosts(cell)
    pause = tmp_path / "pause"
    pause.touch()
    run = Watched(
        ["backfill", "--db", cell.url, "--pause-file", str(pause), "--progress-interval", "0.2"],
        ["--batch-size", "20", "--json"],
    )
    try:
        line = run.wait_for(_paused_line(pause), "a progress line while paused")
        second = run.wait_for(_paused_line(pause), "another one, the pause still holding")
    finally:
        pause.unlink()
    code, out, lines = run.finish()
    assert code == 0, lines
    assert line.startswith("run 1: 0/") and " events (0%)" in line and "ev/s" in line, line
    assert "ETA" in line and "elapsed" in line
    assert second != line or len(lines) > 1
    payload = json.loads(out)  # stdout is the JSON document, nothing else
    assert payload["outcome"] == "complete" and payload["filled"] > 0
    assert _hosts(cell) != before

    # The revert prints the same lines.
    pause.touch()
    undo = Watched(
        ["revert", "--run", "1", "--db", cell.url, "--pause-file", str(pause)],
        ["--progress-interval", "0.2", "--json"],
    )
    try:
        line = undo.wait_for(_paused_line(pause), "a revert progress line while paused")
    finally:
        pause.unlink()
    code, out, lines = undo.finish()
    assert code == 0, lines
    assert line.startswith("revert run 1: 0/"), line
    assert json.loads(out)["reverted"] == payload["filled"]
    assert _hosts(cell) == before


def test_no_progress_silences_the_lines_and_bad_interval_is_bad_input(cell, tmp_path):
    _prepare(cell)
    pause = tmp_path / "pause"
    quiet = Watched(
        ["backfill", "--db", cell.url, "--no-progress", "--progress-interval", "0.2"],
        ["--max-rows", "5"],
    )
    code, _, lines = quiet.finish()
    assert code == 1 and lines == [], lines
    bad = cli("backfill", "--db", cell.url, "--progress-interval", "0", "--pause-file", str(pause))
    assert bad.exit_code == 127, bad.output
    assert "--progress-interval must be between 0.05 and 86400 seconds (got 0)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
