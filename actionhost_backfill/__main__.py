"""``python -m actionhost_backfill`` runs the CLI."""

from actionhost_backfill.cli import main

main()
