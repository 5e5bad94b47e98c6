"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from sqlalchemy.engine import URL

from actionhost_backfill.db import parse_url
from actionhost_backfill.nova import novaconf
from actionhost_backfill.redact import scrub

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="ACTIONHOST_DB_URL",
        show_envvar=True,
        help="Cell database URL, e.g. mysql+pymysql://nova:PASS@db/nova (password never printed).",
    ),
]
StateSchemaOption = Annotated[
    str | None,
    typer.Option(
        "--state-schema",
        envvar="ACTIONHOST_STATE_SCHEMA",
        show_envvar=True,
        help=(
            "Where the toolkit's own tables live, outside the Nova schema: a PostgreSQL schema "
            "(default actionhost), a MySQL database (default <cell db>_actionhost) or the name "
            "of the SQLite state file <cell stem>.<name>.sqlite (default actionhost)."
        ),
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ReleasesOption = Annotated[
    str | None,
    typer.Option(
        "--releases",
        help=(
            "The cell's upgrade history, e.g. icehouse=2014-05-01,juno=2014-11-03,kilo=2015-06-01 "
            "(the first release named ran from the beginning).  Default: detect the eras from "
            "the rows, assuming Icehouse/Juno (live migrations with no record) wherever nothing "
            "proves Kilo or later."
        ),
    ),
]
LockTimeoutOption = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        envvar="ACTIONHOST_LOCK_TIMEOUT",
        help="Seconds a statement may wait for a table lock before giving up (never queue forever).",
    ),
]

BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help="Rows per batch, fixed. Default: sized toward --target-batch-seconds.",
    ),
]
TargetBatchSecondsOption = Annotated[
    float | None,
    typer.Option(
        "--target-batch-seconds",
        help="Size batches toward this duration, like pt-online-schema-change --chunk-time "
        "(default 0.1; ignored with --batch-size).",
    ),
]
SleepOption = Annotated[
    float, typer.Option("--sleep", help="Seconds to pause between batches (throttle).")
]
MaxRetriesOption = Annotated[
    int,
    typer.Option(
        "--max-retries",
        help="Retries of a batch on deadlock, lock wait timeout, serialization failure "
        "or Galera certification failure.",
    ),
]
MaxLagOption = Annotated[
    float | None,
    typer.Option(
        "--max-lag",
        help="Pause between batches while a replica is more than this many seconds behind "
        "(replicas found on the primary: pg_stat_replication, SHOW SLAVE HOSTS; or --replica). "
        "On Galera, also while flow control pauses the cluster.",
    ),
]
ReplicaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--replica",
        help="A replica to watch for --max-lag (URL, repeatable; password never printed). "
        "Default: the replicas the primary knows.",
    ),
]
MaxLoadOption = Annotated[
    list[str] | None,
    typer.Option(
        "--max-load",
        help="Pause while a status variable is over N, e.g. Threads_running=25 (repeatable; "
        "PostgreSQL: Threads_running = active backends).",
    ),
]
CriticalLoadOption = Annotated[
    list[str] | None,
    typer.Option(
        "--critical-load",
        help="Stop (exit 2, resumable) when a status variable is over N, e.g. Threads_running=100.",
    ),
]
PauseFileOption = Annotated[
    str | None,
    typer.Option("--pause-file", help="Pause between batches while this file exists."),
]

NovaConfOption = Annotated[
    list[str] | None,
    typer.Option(
        "--nova-conf",
        help="Read [database] connection from this nova.conf (repeatable; later files win). "
        "--db and ACTIONHOST_DB_URL take precedence.",
    ),
]
AllCellsOption = Annotated[
    bool,
    typer.Option(
        "--all-cells",
        help="Run on every cell in the API database's cell_mappings (cell0 included).",
    ),
]
ApiDbOption = Annotated[
    str | None,
    typer.Option(
        "--api-db",
        envvar="ACTIONHOST_API_DB_URL",
        show_envvar=True,
        help="Nova API database URL for --all-cells (default: [api_database] connection).",
    ),
]
IncludeDisabledOption = Annotated[
    bool, typer.Option("--include-disabled", help="With --all-cells: disabled cells too.")
]
ParallelCellsOption = Annotated[
    int, typer.Option("--parallel-cells", help="With --all-cells: cells processed in parallel.")
]


def resolve_db(db: str | None, nova_conf: list[str] | None = None) -> URL:
    """--db / ACTIONHOST_DB_URL, else [database] connection from --nova-conf
    (or /etc/nova/nova.conf when it exists, as nova-manage reads it)."""
    if not db and not nova_conf and novaconf.config_files(None):
        note(f"reading [database] connection from {novaconf.DEFAULT_PATH}")
    return parse_url(novaconf.database_url(db, nova_conf))


#: The version of every ``--json`` document's shape (docs/json.md): raised
#: when a key is removed or changes meaning, not when one is added.
JSON_FORMAT = 1

_STDOUT = {"closed": False, "json": False}


def echo(text: str = "") -> None:
    """Results to stdout, secrets masked.

    A reader that stops early (``| head``) closes the pipe: the rest of the
    output is dropped and the command finishes with its own exit code, as
    ``cat``/``grep`` users expect, instead of failing with a BrokenPipeError.
    """
    if _STDOUT["closed"]:
        return
    try:
        sys.stdout.write(scrub(text) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()


def stdout_is_broken() -> bool:
    """Whether stdout's reader is gone (a BrokenPipeError from a database socket is not that)."""
    if _STDOUT["closed"] or type(sys.stdout).__name__ == "PacifyFlushWrapper":
        return True  # Typer's main wraps stdout so after EPIPE (then exits 1)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    return False


def stdout_closed() -> None:
    """Point stdout at /dev/null so nothing (not even the exit flush) writes to the closed pipe."""
    _STDOUT["closed"] = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (CliRunner): nothing to redirect
        pass


def note(text: str) -> None:
    """Progress and hints to stderr, secrets scrubbed."""
    sys.stderr.write(scrub(text) + "\n")
    sys.stderr.flush()


def emit_json(payload: Any) -> None:
    """One JSON document on stdout, with its ``format`` version (docs/json.md)."""
    if isinstance(payload, dict) and "format" not in payload:
        payload = {"format": JSON_FORMAT, **payload}
    _STDOUT["json"] = True
    echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


def json_requested(args: list[str]) -> bool:
    """Whether the command line asks for ``--json`` (before any ``--``)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def emit_json_error(message: str, exit_code: int, kind: str) -> None:
    """The error of a ``--json`` invocation as a JSON object on stdout (docs/json.md).

    Never a second document: a command that printed its own and then failed keeps it.
    """
    if not _STDOUT["json"]:
        emit_json({"error": message, "error_type": kind, "exit_code": int(exit_code)})


def reset_output() -> None:
    """Forget what the previous invocation printed (CliRunner runs many in one process)."""
    _STDOUT["json"] = False


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
