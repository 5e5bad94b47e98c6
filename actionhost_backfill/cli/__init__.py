"""Command-line interface: ``actionhost-backfill``.

A thin shell over the package's plain functions: it parses options, calls
them, prints results and maps errors to exit codes (see ``app.RootGroup``).
"""

from __future__ import annotations

from actionhost_backfill.cli import (  # noqa: F401  (register their commands)
    backfill_cmd,
    runs_cmd,
    schema_cmd,
    sim_cmd,
    validate_cmd,
    views_cmd,
)
from actionhost_backfill.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
