"""Schema commands as plain functions: status, upgrade, downgrade, offline SQL.

These drive Alembic with the toolkit's own environment (``migrations/env.py``)
and revisions (``versions/``).  Every change-making function checks first,
against a connection that changes nothing, that the database is a Nova cell
database with a usable ``host`` column; only then does it create the state
schema and run the revisions.
"""

from __future__ import annotations

import functools
import io
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic import util as alembic_util
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from actionhost_backfill import db, dialects, preflight
from actionhost_backfill.errors import ActionHostError, BadInput
from actionhost_backfill.nova import catalog
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema import ddl
from actionhost_backfill.schema.settings import (
    DEFAULT_LOCK_TIMEOUT,
    SETTINGS_KEY,
    SchemaSettings,
)
from actionhost_backfill.state.location import (
    VERSION_TABLE,
    StateLocation,
    resolve_state_location,
    state_schema_exists,
)
from actionhost_backfill.state.tables import state

PACKAGE_DIR = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
OFFLINE_URLS = {
    "postgresql": "postgresql+psycopg://nova@localhost/nova",
    "mysql": "mysql+pymysql://nova@localhost/nova",
    "mariadb": "mariadb+pymysql://nova@localhost/nova",
    "sqlite": "sqlite:///nova.sqlite",
}


def versions_dir() -> Path:
    """The revision scripts: inside an installed wheel, or the checkout's ``versions/``."""
    for candidate in (PACKAGE_DIR / "versions", PACKAGE_DIR.parent / "versions"):
        if candidate.is_dir() and any(candidate.glob("*.py")):
            return candidate
    raise ActionHostError(
        "the toolkit's revision scripts are missing (no versions/ directory): reinstall actionhost-backfill"
    )


def make_config(settings: SchemaSettings, *, output: io.StringIO | None = None) -> Config:
    """An Alembic config for the toolkit, independent of any alembic.ini."""
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("version_locations", str(versions_dir()).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes[SETTINGS_KEY] = settings
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    """The revisions on disk (read once: status, targets and drift all consult them)."""
    dummy = SchemaSettings(
        url=sa.engine.make_url("sqlite:///x.sqlite"), location=StateLocation("sqlite", "x")
    )
    return ScriptDirectory.from_config(make_config(dummy))


def head_revision() -> str:
    try:
        return script_directory().get_current_head()
    except alembic_util.CommandError as exc:  # several heads: a broken install
        raise ActionHostError(f"the toolkit's revisions are broken ({exc}): reinstall it") from None


def revision_ids() -> list[str]:
    """Every revision, base first."""
    return [s.revision for s in reversed(list(script_directory().walk_revisions()))]


def current_revision(conn: sa.Connection, location: StateLocation) -> str | None:
    """The toolkit's applied revision (None when never upgraded)."""
    if not state_schema_exists(conn, location):
        return None
    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": location.schema}
    )
    heads = context.get_current_heads()
    return heads[0] if heads else None


# --------------------------------------------------------------------------- status


@dataclass
class SchemaStatus:
    database: str
    backend: str
    server_version: str
    is_nova: bool
    tables_found: list[str]
    tables_missing: list[str]
    nova_alembic_version: str | None
    host_columns: list[dict]
    host_indexes: list[dict]
    state_location: str
    state_exists: bool
    version_table: str
    current_revision: str | None
    head_revision: str
    ledger: list[dict] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    """What an applied revision ensures but the database lacks (restored cell?)."""
    plan: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    state_access: str = "absent"
    """What this user sees of the state schema: absent, readable, unreadable, unknown."""
    privileges: list[str] = field(default_factory=list)
    """What ``schema upgrade`` would need and this user lacks, each with its GRANT."""

    def to_dict(self) -> dict:
        return asdict(self)


def status(url: URL, *, state_schema: str | None = None) -> SchemaStatus:
    """Describe the database and what ``upgrade`` would do; changes nothing."""
    location = resolve_state_location(url, state_schema)
    engine = db.create_engine(url, location, attach="if-exists")
    try:
        with db.connect(engine) as conn:
            return _status(conn, url, location)
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()


def _status(conn: sa.Connection, url: URL, location: StateLocation) -> SchemaStatus:
    tables = catalog.check_tables(conn, catalog.BACKFILL_TABLES)
    is_nova = all(t in tables.found for t in catalog.SCHEMA_TABLES)
    nova_version = None
    if "alembic_version" in catalog.list_tables(conn):
        nova_version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    columns = catalog.check_host_columns(conn) if catalog.EVENTS in tables.found else []
    indexes = catalog.host_indexes(conn) if catalog.EVENTS in tables.found else []
    access = preflight.state_access(conn, location)
    exists = state_schema_exists(conn, location) and access != "unknown"
    current = current_revision(conn, location) if access == "readable" and exists else None
    head = head_revision()
    ledger = []
    if exists and current is not None:
        try:
            ledger_table = state(location.schema).ledger
            c = ledger_table.c
            rows = conn.execute(
                sa.select(c.revision, c.kind, c.table_name, c.object_name, c.detail).order_by(c.id)
            ).fetchall()
            ledger = [dict(r._mapping) for r in rows]
        except sa.exc.DBAPIError:
            conn.rollback()
    result = SchemaStatus(
        database=mask_url(url),
        backend=conn.dialect.name,
        server_version=db.server_version(conn),
        is_nova=is_nova,
        tables_found=tables.found,
        tables_missing=[t for t in catalog.BACKFILL_TABLES if t not in tables.found],
        nova_alembic_version=nova_version,
        host_columns=[
            {
                "table": c.table,
                "present": c.present,
                "type": c.type_text,
                "nullable": c.nullable,
                "compatible": c.compatible,
                "problem": c.problem,
            }
            for c in columns
        ],
        host_indexes=[
            {"name": ix.name, "columns": ix.columns, "valid": ix.valid, "ours": ix.ours}
            for ix in indexes
        ],
        state_location=location.describe(),
        state_exists=exists,
        version_table=location.qualified(VERSION_TABLE),
        current_revision=current,
        head_revision=head,
        ledger=ledger,
        state_access=access,
    )
    if is_nova:
        if access in ("unreadable", "unknown"):
            read = preflight.state_read_request(url, location)
            result.privileges.extend(
                f"read the state schema: {m.describe()}" for m in preflight.missing(conn, read)
            )
        upgrade_needs = preflight.upgrade_request(conn, url, location)
        result.privileges.extend(
            f"schema upgrade: {m.describe()}" for m in preflight.missing(conn, upgrade_needs)
        )
    result.drift = _drift(conn, result, columns, indexes, location)
    result.plan = _plan(conn, result, columns, indexes, location)
    result.notes.extend(dialects.for_connection(conn).schema_notes(conn))
    return result


def _plan(conn, result: SchemaStatus, columns, indexes, location: StateLocation) -> list[str]:
    if not result.is_nova:
        missing = ", ".join(t for t in catalog.SCHEMA_TABLES if t not in result.tables_found)
        return [f"blocked: {missing} not found; this is not a Nova cell database"]
    bad = [c for c in columns if c.present and c.problem]
    if bad:
        return [f"blocked: {c.table}.host {c.problem}" for c in bad]
    if result.state_access in ("unreadable", "unknown"):
        return [
            f"unknown: this user cannot read {location.describe()}, so which revisions are "
            "applied is unknown (see the privileges it lacks)"
        ]
    plan: list[str] = []
    if not result.state_exists:
        plan.append(f"create the state schema: {location.describe()}")
    pending = _pending(result.current_revision)
    if result.drift:
        plan.extend(f"re-ensure: {line}" for line in result.drift)
    if not pending:
        if not result.drift:
            plan.append(f"nothing: already at head ({result.head_revision})")
        return plan
    dialect = location.dialect
    if "0001_host_column" in pending:
        plan.append(f"create the ledger {location.qualified('schema_changes')}")
        for column in columns:
            if column.present:
                plan.append(f"keep {column.table}.host ({column.type_text}): already present")
            else:
                how = dialect.add_column_plan
                plan.append(f"add {column.table}.host VARCHAR(255) NULL ({how})")
    if "0002_host_index" in pending:
        ours = next((ix for ix in indexes if ix.ours), None)
        others = [ix for ix in indexes if ix.valid and not ix.ours]
        how = dialect.create_index_plan
        if ours is not None and ours.valid:
            plan.append(f"keep index {catalog.HOST_INDEX}: already present")
        elif ours is not None:
            plan.append(
                f"drop the INVALID index {catalog.HOST_INDEX} left by a failed build and build it again ({how})"
            )
        elif others:
            plan.append(
                f"skip the index: {', '.join(ix.name for ix in others)} already indexes host"
            )
        else:
            plan.append(f"create index {catalog.HOST_INDEX} on {catalog.EVENTS}(host) ({how})")
    for revision in pending:
        if revision not in ("0001_host_column", "0002_host_index"):
            plan.append(f"apply {revision}")
    plan.append(f"record revision {result.head_revision} in {result.version_table}")
    return plan


def _drift(conn, result: SchemaStatus, columns, indexes, location: StateLocation) -> list[str]:
    """What the applied revisions ensure and the database does not hold.

    The state schema can outlive its cell database: a cell restored from a
    backup taken before the upgrade (or re-created) lacks the index while the
    version table still says it was built.  ``schema upgrade`` re-ensures.
    """
    ids = revision_ids()
    if result.current_revision not in ids or not result.is_nova:
        return []
    applied = ids[: ids.index(result.current_revision) + 1]
    why = "the version table says {} is applied: was the cell database restored or re-created?"
    drift = []
    if "0001_host_column" in applied:
        drift.extend(
            f"add {c.table}.host ({why.format('0001_host_column')})"
            for c in columns
            if not c.present
        )
    if "0002_host_index" in applied:
        ours = next((ix for ix in indexes if ix.ours), None)
        others = [ix for ix in indexes if ix.valid and not ix.ours]
        if ours is not None and not ours.valid:
            drift.append(
                f"rebuild the INVALID index {catalog.HOST_INDEX} ({why.format('0002_host_index')})"
            )
        elif ours is None and not others:
            drift.append(
                f"create index {catalog.HOST_INDEX} on {catalog.EVENTS}(host), missing "
                f"({why.format('0002_host_index')})"
            )
    inspector = sa.inspect(conn)
    wanted = {"0001_host_column": (ddl.LEDGER,), "0003_backfill_state": ddl.BACKFILL_STATE_TABLES}
    for revision, tables in wanted.items():
        if revision in applied:
            missing = [t for t in tables if not inspector.has_table(t, schema=location.schema)]
            if missing:
                drift.append(
                    f"create the missing state tables {', '.join(missing)} ({why.format(revision)})"
                )
    return drift


def _pending(current: str | None) -> list[str]:
    ids = revision_ids()
    if current is None:
        return ids
    if current not in ids:
        return []
    return ids[ids.index(current) + 1 :]


# --------------------------------------------------------------------------- changes


@dataclass
class SchemaResult:
    database: str
    state_location: str
    before: str | None
    after: str | None
    actions: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _preflight(url: URL, location: StateLocation) -> None:
    """Refuse, before any change, what would fail halfway."""
    engine = db.create_engine(url, location, attach="never")
    try:
        with db.connect(engine) as conn:
            catalog.require_nova(conn)
            catalog.raise_if_incompatible(conn, catalog.check_host_columns(conn))
            request = preflight.upgrade_request(conn, url, location)
            preflight.require(conn, url, request, "schema upgrade")
    except sa.exc.DBAPIError as exc:
        raise db.translate_error(exc, url) from None
    finally:
        engine.dispose()


def upgrade(
    url: URL,
    *,
    state_schema: str | None = None,
    target: str = "head",
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> SchemaResult:
    """Apply the toolkit's revisions up to ``target``, and run again those already applied.

    Every revision is an "ensure" step, so this converges the database to what
    ``target`` describes whatever the version table says.
    """
    location = resolve_state_location(url, state_schema)
    _check_target(target)
    _preflight(url, location)
    reensure = target if target in revision_ids() else "head"
    return _run(
        url, location, lock_timeout, lambda cfg: command.upgrade(cfg, target), reensure=reensure
    )


def downgrade(
    url: URL,
    *,
    target: str,
    state_schema: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    discard_audit: bool = False,
) -> SchemaResult:
    """Undo revisions down to ``target``, removing only what the toolkit created.

    A downgrade that drops the backfill state is refused while a runner holds
    the lock (:class:`RunnerBusy`) and, unless ``discard_audit``, while runs have
    hosts not reverted (:class:`AuditAtRisk`); ``migrations/env.py`` checks this,
    holding the runner lock, before the first step, so stock ``alembic
    downgrade`` is guarded the same way.
    """
    location = resolve_state_location(url, state_schema)
    _check_target(target, downgrade=True)
    engine = db.create_engine(url, location, attach="if-exists")
    try:
        with db.connect(engine) as conn:
            catalog.require_nova(conn)
            if current_revision(conn, location) is None:
                return SchemaResult(
                    mask_url(url),
                    location.describe(),
                    None,
                    None,
                    ["nothing to downgrade: the toolkit's revisions are not applied"],
                )
    finally:
        engine.dispose()
    return _run(
        url,
        location,
        lock_timeout,
        lambda cfg: command.downgrade(cfg, target),
        discard_audit=discard_audit,
    )


def _check_target(target: str, *, downgrade: bool = False) -> None:
    valid = {"head", "heads", "base", *revision_ids()}
    relative = target.startswith(("-", "+")) and target[1:].isdigit()
    if target not in valid and not relative:
        choices = ", ".join(sorted(valid - {"heads"}))
        raise BadInput(
            f"unknown revision {target!r}: use one of {choices}" + (", or -1" if downgrade else "")
        )


#: Alembic's ``op`` and ``context`` are process-wide proxies: revisions of two
#: cells (``--all-cells --parallel-cells N``) must not run in two threads at once.
_ALEMBIC = threading.Lock()


def _run(
    url: URL,
    location: StateLocation,
    lock_timeout: float,
    action,
    *,
    reensure: str | None = None,
    discard_audit: bool = False,
) -> SchemaResult:
    settings = SchemaSettings(
        url=url,
        location=location,
        lock_timeout=lock_timeout,
        from_cli=True,
        reensure=reensure,
        discard_audit=discard_audit,
    )
    config = make_config(settings)
    engine = db.create_engine(url, location, attach="create")
    try:
        with db.connect(engine) as conn:
            before = current_revision(conn, location)
            conn.commit()
            config.attributes["connection"] = conn
            try:
                with _ALEMBIC:
                    action(config)
            except sa.exc.DBAPIError as exc:
                raise db.translate_error(exc, url) from None
            after = current_revision(conn, location)
            conn.commit()
    finally:
        engine.dispose()
    return SchemaResult(mask_url(url), location.describe(), before, after, settings.report)


def offline_sql(
    url: URL,
    *,
    state_schema: str | None = None,
    from_revision: str | None = None,
    to_revision: str | None = None,
    downgrade_sql: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    discard_audit: bool = False,
) -> str:
    """The SQL the revisions would run, rendered without a connection.

    A downgrade script that drops the backfill state checks first, as ``schema
    downgrade`` does, and stops while a runner is alive or (unless
    ``discard_audit``) while runs have hosts not reverted.
    """
    location = resolve_state_location(url, state_schema)
    settings = SchemaSettings(
        url=url,
        location=location,
        lock_timeout=lock_timeout,
        from_cli=True,
        discard_audit=discard_audit,
    )
    output = io.StringIO()
    config = make_config(settings, output=output)
    if downgrade_sql:
        start = from_revision or "head"
        end = to_revision or "base"
        for rev in (start, end):
            _check_target(rev, downgrade=True)
        command.downgrade(config, f"{start}:{end}", sql=True)
    else:
        end = to_revision or "head"
        _check_target(end)
        if from_revision:
            _check_target(from_revision)
            command.upgrade(config, f"{from_revision}:{end}", sql=True)
        else:
            command.upgrade(config, end, sql=True)
    return output.getvalue()


def offline_url(dialect: str, like: URL | None = None) -> URL:
    """The URL ``schema sql --dialect`` renders for; never connected to.

    ``--dialect`` always wins over ``--db`` / ``ACTIONHOST_DB_URL``: from ``like``
    only the database name is kept, and only for the same family (MySQL and
    MariaDB share one), because the state location is named after it.
    """
    try:
        url = sa.engine.make_url(OFFLINE_URLS[dialect])
    except KeyError:
        raise BadInput(
            f"--dialect must be one of {', '.join(OFFLINE_URLS)} (got {dialect!r})"
        ) from None
    if like is not None and like.database and dialects.family_of(like) == dialects.family_of(url):
        url = url.set(database=like.database)
    return url
