"""What the CLI prints, whatever reads it: help text whole, pipes closed early, URLs as operators write them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer

from actionhost_backfill.cli import application
from actionhost_backfill.db import parse_url
from actionhost_backfill.errors import ExitCode
from actionhost_backfill.nova import novaconf
from tests import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRACKETED = re.compile(r"\[[a-z_]+\]")


def test_help_keeps_bracketed_words():
    """Rich markup read "[database]" as a style tag and dropped it from --help."""
    root = typer.main.get_command(application())
    checked = 0
    for path, command in harness.command_leaves(root):
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        wanted = sorted({w for text in texts for w in BRACKETED.findall(text)})
        result = harness.cli(*path, "--help")
        assert result.exit_code == 0, path
        shown = " ".join(result.stdout.split())
        for word in wanted:
            assert word in shown, (path, word)
            checked += 1
    assert checked >= 10  # --nova-conf and --api-db name [database] / [api_database] everywhere
    status = " ".join(harness.cli("status", "--help").stdout.split())
    assert "Read [database] connection from this nova.conf" in status


def _closed_stdout_run(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI with stdout a pipe nobody reads any more (``| head`` that has exited)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        return subprocess.run(
            [sys.executable, "-m", "actionhost_backfill", *args],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k != "ACTIONHOST_DB_URL"},
        )
    finally:
        os.close(write_end)


@pytest.mark.backends("sqlite")
def test_a_reader_that_stops_early_is_not_an_error(cell):
    for args in (
        ["status", "--db", cell.url],
        ["schema", "status", "--db", cell.url, "--json"],
        ["schema", "--help"],  # printed by click, not by the toolkit's echo
    ):
        normal = harness.cli(*args)
        piped = _closed_stdout_run(*args)
        assert piped.returncode == normal.exit_code, (args, piped.stderr)
        assert piped.returncode != 1 or normal.exit_code == 1
        for word in ("Traceback", "BrokenPipe", "Exception ignored", "internal error"):
            assert word not in piped.stderr, (args, piped.stderr)


def test_postgres_scheme_is_postgresql():
    for raw, driver in (
        ("postgres://nova:pw@db.example.org/nova", "postgresql+psycopg"),
        ("postgres+psycopg2://nova@db/nova", "postgresql+psycopg"),
        ("postgresql://nova@db/nova", "postgresql+psycopg"),
    ):
        url = parse_url(raw)
        assert url.drivername == driver, raw
        assert url.host in ("db.example.org", "db") and url.database == "nova"


@pytest.mark.backends("postgresql")
def test_postgres_url_connects(cell):
    url = cell.sa_url.set(drivername="postgres").render_as_string(hide_password=False)
    assert url.startswith("postgres://")
    result = harness.cli("schema", "status", "--db", url, "--json")
    assert result.exit_code == ExitCode.PARTIAL, result.stderr  # upgrade pending: it connected
    assert '"is_nova": true' in result.stdout


def test_default_nova_conf_is_read_when_it_exists(cell, tmp_path, monkeypatch):
    monkeypatch.delenv("ACTIONHOST_DB_URL", raising=False)
    missing = tmp_path / "etc" / "nova.conf"
    monkeypatch.setattr(novaconf, "DEFAULT_PATH", str(missing))
    absent = harness.cli("schema", "status")
    assert absent.exit_code == ExitCode.BAD_INPUT and "no database given" in absent.stderr
    missing.parent.mkdir()
    missing.write_text(f"[database]\nconnection = {cell.url}\n")
    found = harness.cli("schema", "status")
    assert found.exit_code == ExitCode.PARTIAL, found.stderr  # upgrade pending: it connected
    assert "instance_actions_events" in found.stdout
    assert f"reading [database] connection from {missing}" in found.stderr
    other = tmp_path / "other.conf"
    other.write_text("[database]\nconnection = sqlite:////nonexistent/other.sqlite\n")
    explicit = harness.cli("schema", "status", "--nova-conf", str(other))
    assert explicit.exit_code == ExitCode.BAD_INPUT  # --nova-conf replaces the default


def _samples(runbook: str) -> list[list[str]]:
    with open(os.path.join(ROOT, "runbooks", runbook)) as handle:
        text = handle.read()
    return [b.splitlines() for b in re.findall(r"^```text\n(.*?)^```", text, re.S | re.M)]


def _labels(lines: list[str]) -> list[str]:
    """``label:`` at the start of each line (the aligned key column of a report)."""
    return [m.group(1) for line in lines if (m := re.match(r"^([a-z][a-z ]*):\s", line))]


def test_runbook_1_sample_labels_are_the_real_ones(blank_db):
    from actionhost_backfill.sim.simulate import SimulationOptions
    from tests.reliability.common import simulated

    simulated(blank_db, SimulationOptions(seed=2, events=1500, hosts=6, days=120)).dispose()
    harness.cli("schema", "downgrade", "base", "--db", blank_db)  # as before the window
    samples = _samples("01-preflight.md")
    status = next(s for s in samples if s[0].startswith("database:"))
    real = harness.cli("schema", "status", "--db", blank_db).stdout
    wanted = _labels(status)
    assert len(wanted) >= 8
    assert [label for label in wanted if label not in _labels(real.splitlines())] == []
    assert "upgrade would:" in real

    dry = next(s for s in samples if s[0].startswith("dry run"))
    real = harness.cli("backfill", "--dry-run", "--no-progress", "--db", blank_db).stdout
    assert real.startswith("dry run (nothing written): ")
    for line in dry[1:]:
        if line.startswith("| "):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            if header == ["Rule", "Would fill"]:
                assert re.search(r"\|\s*Rule\s*\|\s*Would fill\s*\|", real)
        elif line[:1].isalpha():
            assert re.search(rf"^{line.split()[0]} ", real, re.M), line

    checked = next(s for s in samples if s[0].startswith("validate:"))
    real = harness.cli("validate", "--sample", "30", "--seed", "1", "--db", blank_db).stdout
    for line in checked:
        if line[:1].isalpha():
            first = line.split()[0]
            assert re.search(rf"^{re.escape(first)}\s", real, re.M), (first, real)
