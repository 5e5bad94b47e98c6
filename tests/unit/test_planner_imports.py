"""A planner process loads what planning needs, not the command line.

``backfill --workers N`` starts planners with ``spawn``, which runs the
parent's main script again in each of them.  Started from the console script
(``actionhost-backfill``, what operators run), that script imports
``actionhost_backfill.cli``; the planners must not pay for Typer and every
command with it.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import typer

from actionhost_backfill import cli
from tests.harness import command_leaves

#: The console script as pip writes it, but spawning a process the way
#: ``engine.workers`` starts a planner instead of running a command.
CONSOLE_SCRIPT = """\
import re
import sys
from actionhost_backfill.cli import main
if __name__ == '__main__':
    import multiprocessing
    import probe
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=probe.report, args=(child,))
    process.start()
    print(" ".join(parent.recv()))
    process.join()
"""

PROBE = """\
import sys

def report(pipe):
    import actionhost_backfill.engine.workers  # what a planner runs
    pipe.send(sorted(sys.modules))
"""


def _modules_of_a_spawned_planner(tmp_path) -> set[str]:
    (tmp_path / "probe.py").write_text(PROBE)
    script = tmp_path / "actionhost-backfill"
    script.write_text(CONSOLE_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{':'.join(p for p in sys.path if p)}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, textwrap.shorten(done.stderr, 2000)
    return set(done.stdout.split())


def test_a_planner_started_from_the_console_script_does_not_load_the_cli(tmp_path):
    modules = _modules_of_a_spawned_planner(tmp_path)
    assert "actionhost_backfill.engine.workers" in modules
    assert "actionhost_backfill.cli" in modules  # the console script's import ran
    loaded = sorted(
        m
        for m in modules
        if m.split(".")[0] in {"typer", "click", "rich"} or m.startswith("actionhost_backfill.cli.")
    )
    assert loaded == []


def test_the_application_registers_every_command_module():
    """``application()`` imports the command modules itself: one left out of its
    list would silently lose its commands."""

    def commands() -> set[str]:
        """Every command's and group's path: ``backfill``, ``schema``, ``schema upgrade``..."""
        root = typer.main.get_command(cli.application())
        leaves = [path for path, _ in command_leaves(root)]
        return {" ".join(path[:n]) for path in leaves for n in range(1, len(path) + 1)}

    registered = commands()
    for module in pkgutil.iter_modules(cli.__path__):
        importlib.import_module(f"{cli.__name__}.{module.name}")
    assert commands() == registered
    assert {"backfill", "status", "schema upgrade", "demo", "validate", "events"} <= registered
