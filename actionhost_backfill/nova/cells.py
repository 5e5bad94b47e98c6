"""Every cell of a cloud: ``cell_mappings`` from the API database, run per cell in parallel.

A cell's ``database_connection`` may be a template whose ``{scheme}``,
``{username}``, ``{password}``, ``{hostname}``, ``{port}``, ``{path}`` and
``{query}`` come from ``[database] connection`` (as Nova's CellMapping does).
Each cell runs on its own connection, with its own runner lock, checkpoint
and summary; a failing cell does not stop the others, and the overall exit
code is the most urgent cell's (``errors.PRECEDENCE``).  Output names cells, never passwords.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.errors import ActionHostError, BadInput, ExitCode, most_urgent
from actionhost_backfill.redact import mask_url, scrub

CELL0_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class CellMapping:
    uuid: str
    name: str | None
    url: str
    disabled: bool
    problem: str | None = None
    """Why this cell cannot be run (e.g. a bad template): it becomes the cell's row."""

    @property
    def label(self) -> str:
        return self.name or self.uuid


@dataclass
class CellOutcome:
    cell: CellMapping
    exit_code: int
    summary: str
    payload: dict | None = field(default_factory=dict)
    error: str | None = None
    """The one-line error that ended this cell (its ``summary`` then starts with ``error:``)."""

    @classmethod
    def failed(cls, cell: CellMapping, exit_code: int, message: str) -> CellOutcome:
        return cls(cell, int(exit_code), f"error: {message}", None, message)

    def to_dict(self) -> dict:
        return {
            "cell": self.cell.label,
            "uuid": self.cell.uuid,
            "database": mask_url(self.cell.url),
            "exit_code": self.exit_code,
            "summary": self.summary,
            "result": self.payload,
            "error": self.error,
        }


def expand_template(connection: str, database_connection: str | None) -> str:
    """Fill a cell's templated URL from ``[database] connection``."""
    if "{" not in connection:
        return connection
    if not database_connection:
        raise BadInput(
            "a cell's database_connection is a template ({...}) but no [database] connection "
            "is known to fill it: pass --nova-conf with a [database] section"
        )
    default = urlsplit(database_connection)
    values = {
        "scheme": default.scheme,
        "username": default.username or "",
        "password": default.password or "",
        "hostname": default.hostname or "",
        "port": default.port or "",
        "path": default.path.lstrip("/"),
        "query": default.query,
        "fragment": default.fragment,
    }
    try:
        return connection.format(**values)
    except (KeyError, IndexError, AttributeError) as exc:
        field_name = exc.args[0] if isinstance(exc, KeyError) else exc
        raise BadInput(
            f"database_connection template uses an unknown field {{{field_name}}}: known fields "
            "are {scheme} {username} {password} {hostname} {port} {path} {query} "
            "(fix it with nova-manage cell_v2 update_cell --database_connection)"
        ) from None
    except ValueError as exc:
        raise BadInput(
            f"database_connection template is malformed ({exc}): fix it with nova-manage "
            "cell_v2 update_cell --database_connection"
        ) from None


def load_cells(
    api_url: URL, *, database_connection: str | None, include_disabled: bool = False
) -> list[CellMapping]:
    """The cells in ``cell_mappings`` (cell0 included), with their expanded URLs."""
    engine = db.create_engine(api_url, None)
    try:
        with db.connect(engine) as conn:
            try:
                names = set(sa.inspect(conn).get_table_names())
                if "cell_mappings" not in names:
                    raise BadInput(
                        f"{mask_url(api_url)} has no cell_mappings table: --api-db must be "
                        "Nova's API database ([api_database] connection), not a cell"
                    )
                rows = conn.execute(
                    sa.text(
                        "SELECT uuid, name, database_connection, disabled FROM cell_mappings "
                        "ORDER BY id"
                    )
                ).all()
            except sa.exc.DBAPIError as exc:
                raise db.translate_error(exc, api_url) from None
    finally:
        engine.dispose()
    cells = []
    for uuid, name, connection, disabled in rows:
        if not connection or (disabled and not include_disabled):
            continue
        try:
            url, problem = expand_template(connection, database_connection), None
        except BadInput as exc:  # this cell's row, never the whole run
            url, problem = connection, str(exc)
        cells.append(CellMapping(uuid, name, url, bool(disabled), problem))
    if not cells:
        raise BadInput(
            f"{mask_url(api_url)} maps no enabled cell: check cell_mappings "
            "(nova-manage cell_v2 list_cells), or pass --include-disabled"
        )
    return cells


CellTask = Callable[[URL], tuple[int, str, dict]]


def run_cells(
    cells: list[CellMapping],
    task: CellTask,
    *,
    workers: int = 1,
    stop: threading.Event | None = None,
) -> list[CellOutcome]:
    """Run ``task`` on every cell (``workers`` at a time); failures stay per cell."""
    if workers < 1:
        raise BadInput(f"--parallel-cells must be at least 1 (got {workers})")

    def one(cell: CellMapping) -> CellOutcome:
        if stop is not None and stop.is_set():
            return CellOutcome(cell, ExitCode.PARTIAL, "not started (stopping)", None)
        if cell.problem is not None:
            return CellOutcome.failed(cell, ExitCode.BAD_INPUT, scrub(cell.problem))
        try:
            url = db.parse_url(cell.url, option="database_connection")
            code, summary, payload = task(url)
            return CellOutcome(cell, int(code), summary, payload)
        except ActionHostError as exc:
            return CellOutcome.failed(cell, exc.exit_code, scrub(str(exc)))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            return CellOutcome.failed(
                cell, ExitCode.INTERVENE, f"internal error {type(exc).__name__}: {scrub(first)}"
            )

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, cells))


def worst(outcomes: list[CellOutcome]) -> int:
    """The most urgent cell's exit code (see :data:`~actionhost_backfill.errors.PRECEDENCE`)."""
    return most_urgent([o.exit_code for o in outcomes])
