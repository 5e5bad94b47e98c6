"""``--all-cells``: run a command on every cell and print one line per cell."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import typer

from actionhost_backfill.cli.common import echo, emit_json, note
from actionhost_backfill.db import parse_url
from actionhost_backfill.errors import BadInput
from actionhost_backfill.nova import cells, novaconf


@dataclass(frozen=True)
class CellsRequest:
    """What a command's --all-cells options asked for."""

    db: str | None
    nova_conf: list[str] | None
    api_db: str | None
    include_disabled: bool
    parallel_cells: int
    json_output: bool


def run_all_cells(
    title: str,
    task: cells.CellTask,
    request: CellsRequest,
    stop: threading.Event | None = None,
) -> None:
    """Load the cells, run ``task`` on each, print the table (or JSON), exit with the most urgent code."""
    if request.parallel_cells < 1:
        raise BadInput(f"--parallel-cells must be at least 1 (got {request.parallel_cells})")
    if request.db:
        raise BadInput(
            "--all-cells reads each cell's URL from the API database: drop --db "
            "(and ACTIONHOST_DB_URL), pass --api-db or --nova-conf"
        )
    files = novaconf.config_files(request.nova_conf)  # --nova-conf, else /etc/nova/nova.conf
    conf = novaconf.read(files) if files else None
    api_raw = request.api_db or (conf.require_api_database() if conf else None)
    if not api_raw:
        raise BadInput(
            "--all-cells needs the Nova API database: pass --api-db URL, set "
            "ACTIONHOST_API_DB_URL, or --nova-conf with an [api_database] section"
        )
    api_url = parse_url(api_raw, option="--api-db")
    found = cells.load_cells(
        api_url,
        database_connection=conf.database if conf else None,
        include_disabled=request.include_disabled,
    )
    note(f"{title}: {len(found)} cells, {request.parallel_cells} at a time")
    outcomes = cells.run_cells(found, task, workers=request.parallel_cells, stop=stop)
    code = cells.worst(outcomes)
    if request.json_output:
        emit_json({"command": title, "cells": [o.to_dict() for o in outcomes], "exit_code": code})
        raise typer.Exit(code)
    width = max(len("Cell"), *(len(o.cell.label) for o in outcomes))
    echo(f"{'Cell':<{width}}  Exit  Result")
    for outcome in outcomes:
        echo(f"{outcome.cell.label:<{width}}  {outcome.exit_code:>4}  {outcome.summary}")
    fine = sum(1 for o in outcomes if o.exit_code == 0)
    echo(f"exit {code}: the most urgent cell's ({fine} of {len(outcomes)} cells exited 0)")
    raise typer.Exit(code)
