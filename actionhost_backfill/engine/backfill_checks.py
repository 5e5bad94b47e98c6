"""What a backfill refuses before it writes: bad input, a schema not ready, missing
privileges (catalog first, then each write tried and rolled back), and a run that
cannot resume on this copy of the cell database.  Every refusal leaves the database
as it was."""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db, dialects, preflight
from actionhost_backfill.engine.backfill_options import BackfillOptions
from actionhost_backfill.errors import (
    BadInput,
    PrivilegeError,
    SchemaNotReady,
    StateMismatch,
)
from actionhost_backfill.nova import catalog
from actionhost_backfill.nova.tables import nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema import revisions
from actionhost_backfill.schema.ready import state_ready
from actionhost_backfill.state import audit
from actionhost_backfill.state.location import (
    StateLocation,
    state_schema_exists,
)
from actionhost_backfill.state.tables import StateTables, state

# --------------------------------------------------------------------------- preflight


def preflight_backfill(
    conn: sa.Connection, url: URL, location: StateLocation, options: BackfillOptions
) -> bool:
    """Refuse bad input before anything is written; return whether state is ready."""
    catalog.require_nova(conn, catalog.BACKFILL_TABLES)
    names = catalog.list_tables(conn)
    for table in options.tables():
        if table not in names:
            raise BadInput(
                f"--include-shadow: table {table} not found in {mask_url(url)}: drop the option "
                "(this cell has no archived events)"
            )
        column = catalog.host_column(conn, table)
        if not column.present:
            raise SchemaNotReady(
                f"{table}.host is missing in {mask_url(url)}: run `actionhost-backfill schema upgrade` first"
            )
        if column.problem:
            catalog.raise_if_incompatible(conn, [column])
    access = preflight.state_access(conn, location)
    if options.dry_run:
        request = preflight.read_request(conn, url, location, access=access)
        preflight.require(conn, url, request, "backfill --dry-run")
    elif access != "absent":
        request = preflight.backfill_request(
            conn, url, location, tables=options.tables(), throttle=options.throttle
        )
        preflight.require(conn, url, request, "backfill")
    ready = state_ready(conn, location)
    if not options.dry_run and not ready:
        current = (
            revisions.current_revision(conn, location)
            if state_schema_exists(conn, location)
            else None
        )
        raise SchemaNotReady(
            f"the toolkit's schema in {location.describe()} is at {current or 'no revision'}, "
            f"the backfill needs {revisions.head_revision()}: run `actionhost-backfill schema upgrade` "
            "first (or use --dry-run, which needs no schema change)"
        )
    if not options.dry_run:
        check_write_privileges(conn, url, location, options)
    return ready


def check_write_privileges(
    conn: sa.Connection, url: URL, location: StateLocation, options: BackfillOptions
) -> None:
    """Statements that touch no row still need their privileges: try them, roll back.

    A second line behind the catalog check (:mod:`actionhost_backfill.preflight`),
    for what a catalog cannot show (e.g. MySQL partial revokes).
    """
    files = location.dialect.database_files(url, location)
    if files is not None:  # a file-backed database: its permissions tell
        for path in files:
            if path and not os.access(path, os.W_OK):
                raise PrivilegeError(
                    f"{path} is read-only: the backfill writes to it; fix its permissions"
                )
        return
    st = state(location.schema)
    probes = [
        (t, nova(t).update().where(nova(t).c.id == -1).values(host=nova(t).c.host))
        for t in options.tables()
    ]
    probes += [
        (
            f"{location.schema}.audit",
            st.audit.insert().from_select(
                list(st.audit.c.keys()), sa.select(*st.audit.c).where(sa.false())
            ),
        ),
        (
            f"{location.schema}.runs",
            st.runs.update().where(st.runs.c.id == -1).values(message=None),
        ),
        (
            f"{location.schema}.checkpoints",
            st.checkpoints.update().where(st.checkpoints.c.run_id == -1).values(done=False),
        ),
    ]
    user = url.username or "<user>"
    try:
        for name, statement in probes:
            try:
                conn.execute(statement)
            except sa.exc.DBAPIError as exc:
                if isinstance(db.translate_error(exc, url), PrivilegeError):
                    conn.rollback()
                    grant = dialects.for_connection(conn).write_grant(
                        user, name, location.schema if "." in name else None, url.database
                    )
                    raise PrivilegeError(
                        f"user {user} may not write {name} in {mask_url(url)}: run {grant} (nothing was changed)"
                    ) from None
                raise
    finally:
        conn.rollback()


def scope_words(scope: dict) -> str:
    """A run's scope as the options that give it (for the resume refusal)."""
    words = ["--include-shadow" if scope.get("include_shadow") else "without --include-shadow"]
    if scope.get("releases"):
        words.append("--releases " + ",".join(f"{k}={v}" for k, v in scope["releases"].items()))
    words += [f"--exclude-rule {name}" for name in scope.get("exclude_rules", ())]
    return " ".join(words)


def refuse_foreign_checkpoints(
    conn: sa.Connection, st: StateTables, run_id: int, tables: list[str]
) -> None:
    """Refuse to resume a run whose last writes are not in this cell database.

    Resuming would start after the run's checkpoint and silently skip every
    row the other copy had and this one lost.
    """
    for found in audit.unwritten(conn, st, run_id, tables):
        if found.null_ids:
            conn.rollback()
            ids = found.null_ids
            raise StateMismatch(
                f"run {run_id} cannot resume: {len(ids)} of the last {found.checked} {found.table} "
                f"rows its audit says it filled are NULL here (ids {ids[0]}..{ids[-1]}), so this cell "
                "database is not the copy the run wrote to (restored from a backup or re-created?); "
                "nothing was changed: start over with `backfill --new-run` "
                f"(`verify --run {run_id}` lists every such row)"
            )


def resume_hint(run_id: int) -> str:
    return f"run {run_id} stopped at its checkpoint: run the same command again to resume it (--new-run starts over)"
