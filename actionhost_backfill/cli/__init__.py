"""Command-line interface: ``actionhost-backfill``.

A thin shell over the package's plain functions: it parses options, calls
them, prints results and maps errors to exit codes (see ``app.RootGroup``).

This module is the console script's entry point, and it imports nothing
until it is used.  ``backfill --workers N`` starts its planners with
``spawn``, which runs the parent's main script again in each planner: the
console script's ``from actionhost_backfill.cli import main``.  Were the
commands (Typer, and everything they reach) imported here, every planner
would load them, about 17 MB each, and never use them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

#: The modules that register their commands on the application.
_COMMANDS = ("backfill_cmd", "runs_cmd", "schema_cmd", "sim_cmd", "validate_cmd", "views_cmd")


def application() -> typer.Typer:
    """The Typer application, every command registered on it."""
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}")
    return importlib.import_module(f"{__name__}.app").app


def main() -> None:
    application()()


__all__ = ["application", "main"]
