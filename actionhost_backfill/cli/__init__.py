"""Command-line interface: ``actionhost-backfill``.

A thin shell over the package's plain functions: it parses options, calls
them, prints results and maps errors to exit codes (see ``app.RootGroup``).
"""

from __future__ import annotations

from . import schema_cmd  # noqa: F401  (registers the schema group)
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
