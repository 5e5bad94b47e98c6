"""The runbooks' commands run, in order, against a simulated cell: they must match the code.

Every ```sh block of runbooks/0*.md is executed, line by line, in one bash
session per backend (variables carry over, as for an operator), with
ACTIONHOST_DB_URL pointing at a throwaway simulated cell database and the
installed ``actionhost-backfill`` on PATH.  A line ending in ``# exit N``
must exit N; any other line must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from actionhost_backfill.db import parse_url
from actionhost_backfill.sim.simulate import SimulationOptions, simulate

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = sorted((ROOT / "runbooks").glob("0*.md"))
EXECUTED = [p for p in RUNBOOKS if not p.name.startswith("05")]
TEXT_BLOCK = re.compile(r"^```text\n(.*?)^```", re.S | re.M)
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
EXPECT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")


def commands(path: Path) -> list[tuple[str, int]]:
    found = []
    for block in BLOCK.findall(path.read_text()):
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            match = EXPECT.search(line)
            expected = int(match.group(1)) if match else 0
            found.append((EXPECT.sub("", line).strip(), expected))
    return found


def script(steps: list[tuple[str, str, int]]) -> str:
    lines = ["set -u"]
    for origin, command, expected in steps:
        label = shlex.quote(f"{origin}: {command}")
        lines.append(f"echo {label} >&2")
        lines.append(f"{command}")
        lines.append(
            f'rc=$?; if [ "$rc" -ne {expected} ]; then '
            f'echo "RUNBOOK FAILED: "{label}" exited $rc, expected {expected}" >&2; exit 99; fi'
        )
    return "\n".join(lines) + "\n"


def test_every_runbook_has_commands():
    assert [p.name for p in RUNBOOKS] == [
        "01-preflight.md",
        "02-schema-upgrade.md",
        "03-backfill.md",
        "04-verify-and-rollback.md",
        "05-all-cells-and-galera.md",
    ]
    for path in EXECUTED:
        assert commands(path), f"{path.name} has no sh block"


def test_runbooks_run_as_written(blank_db, tmp_path):
    simulate(parse_url(blank_db), SimulationOptions(seed=5, events=8000, hosts=10, days=300))
    steps = [
        (path.name, command, expected) for path in EXECUTED for command, expected in commands(path)
    ]
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "ACTIONHOST_DB_URL": blank_db,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp_path),
    }
    env.pop("ACTIONHOST_STATE_SCHEMA", None)
    body = script(steps).replace("/tmp/", f"{tmp_path}/")
    done = subprocess.run(
        ["bash", "-c", body], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUNBOOK FAILED" not in done.stderr
    assert (tmp_path / "actionhost-upgrade.sql").read_text().strip()


def _documented_commands() -> list[tuple[str, list[str]]]:
    """Every actionhost-backfill line of the runbooks' and README's text/sh blocks."""
    found = []
    sources = [*RUNBOOKS, ROOT / "README.md"]
    for path in sources:
        text = path.read_text()
        for block in (
            TEXT_BLOCK.findall(text)
            + BLOCK.findall(text)
            + re.findall(r"^```\n(.*?)^```", text, re.S | re.M)
        ):
            for line in block.splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith("actionhost-backfill "):
                    found.append(
                        (path.name, shlex.split(line.replace("$(", "(").replace('"', ""))[1:])
                    )
    return found


def test_every_documented_command_and_flag_exists():
    from typer.main import get_command

    from actionhost_backfill.cli import application

    root = get_command(application())
    checked = 0
    for origin, words in _documented_commands():
        command, rest = root, list(words)
        flags = {o for p in root.params for o in p.opts}
        while rest and hasattr(command, "commands") and not rest[0].startswith("-"):
            name = rest.pop(0)
            assert name in command.commands, f"{origin}: unknown command {name!r} in {words}"
            command = command.commands[name]
            flags |= {o for p in command.params for o in p.opts}
        for word in rest:
            if word.startswith("--"):
                flag = word.split("=", 1)[0]
                assert flag in flags, f"{origin}: {' '.join(words)}: no such flag {flag}"
        checked += 1
    assert checked > 40
