"""``actionhost-backfill schema status | upgrade | downgrade | sql``."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from actionhost_backfill.cli import galera_cmd
from actionhost_backfill.cli.allcells import CellsRequest, run_all_cells
from actionhost_backfill.cli.app import app
from actionhost_backfill.cli.common import (
    AllCellsOption,
    ApiDbOption,
    DbOption,
    IncludeDisabledOption,
    JsonOption,
    LockTimeoutOption,
    NovaConfOption,
    ParallelCellsOption,
    StateSchemaOption,
    echo,
    emit_json,
    resolve_db,
)
from actionhost_backfill.dialects import for_url
from actionhost_backfill.dialects import galera as galera_dialect
from actionhost_backfill.errors import EXIT_CODE_HELP, BadInput, ExitCode
from actionhost_backfill.nova.catalog import EVENTS, HOST_INDEX
from actionhost_backfill.schema import galera_rolling, revisions
from actionhost_backfill.schema.galera_toi import DEFAULT_MAX_TOI_STALL, refuse_long_toi
from actionhost_backfill.schema.settings import DEFAULT_LOCK_TIMEOUT, parse_lock_timeout

schema_app = typer.Typer(
    help=(
        "Ensure the event host column and its index exist (Alembic revisions, online DDL).\n\n"
        "The toolkit's version table is <state schema>.actionhost_version, never Nova's "
        "alembic_version.\n\n" + EXIT_CODE_HELP
    ),
    no_args_is_help=True,
)
app.add_typer(schema_app, name="schema")


#: ``schema sql --dialect``: the backends offline SQL is rendered for.
OfflineDialect = enum.Enum(
    "OfflineDialect", {name: name for name in revisions.OFFLINE_URLS}, type=str
)


@schema_app.command("status", epilog=EXIT_CODE_HELP)
def status_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    all_cells: AllCellsOption = False,
    api_db: ApiDbOption = None,
    include_disabled: IncludeDisabledOption = False,
    parallel_cells: ParallelCellsOption = 1,
    json_output: JsonOption = False,
    node: galera_cmd.NodeOption = None,
) -> None:
    """Show what the database holds and what `schema upgrade` would do; changes nothing.

    Exit code 0 when at head, 1 when an upgrade is pending, 4 when the database
    lacks what the version table says was applied (a cell restored from a backup
    or re-created next to the state that outlived it: run `schema upgrade`, which
    re-ensures), 127 when this is not a usable Nova cell database, or when the
    user lacks a privilege the pending upgrade needs or cannot read the state
    schema (each missing privilege is listed with its GRANT).

    On a Galera node it also shows every node (or each --node URL): its state
    and whether it has the index; exit 4 when the revision is recorded but a
    node lacks the index, 1 while a rolling build is unfinished.

    Example: actionhost-backfill schema status --db mysql+pymysql://nova:PASS@db/nova
    """
    if all_cells:

        def task(url):
            result = revisions.status(url, state_schema=state_schema)
            code = _status_code(result)
            summary = {
                ExitCode.OK: f"at head ({result.head_revision})",
                ExitCode.PARTIAL: "upgrade pending: " + "; ".join(result.plan[:2]),
                ExitCode.DRIFT: "not what the version table says: " + "; ".join(result.drift[:2]),
            }.get(
                code,
                "not usable: "
                + "; ".join(result.privileges[:2] or result.plan[:2] or ["not a Nova cell"]),
            )
            return code, summary, result.to_dict()

        run_all_cells(
            "schema status",
            task,
            CellsRequest(db, nova_conf, api_db, include_disabled, parallel_cells, json_output),
        )
    url = resolve_db(db, nova_conf)
    result = revisions.status(url, state_schema=state_schema)
    nodes = galera_cmd.status_nodes(url, node) if result.is_nova else []
    if json_output:
        emit_json({**result.to_dict(), **({"galera_nodes": nodes} if nodes else {})})
    else:
        _print_status(result)
        galera_cmd.print_nodes(nodes)
    code = _status_code(result)
    if code == ExitCode.OK and any(not n["index"] and not n["error"] for n in nodes):
        code = ExitCode.DRIFT  # recorded, yet a node lacks the index
    raise typer.Exit(code)


def _status_code(result: revisions.SchemaStatus) -> ExitCode:
    if not result.is_nova or any(line.startswith("blocked") for line in result.plan):
        return ExitCode.BAD_INPUT
    # An upgrade pending (or the state unreadable) that this user cannot apply.
    if result.privileges and (
        result.state_access != "readable"
        or result.drift
        or result.current_revision != result.head_revision
    ):
        return ExitCode.BAD_INPUT
    if result.drift:
        return ExitCode.DRIFT
    return ExitCode.OK if result.current_revision == result.head_revision else ExitCode.PARTIAL


def _print_status(result: revisions.SchemaStatus) -> None:
    echo(f"database:        {result.database} ({result.backend} {result.server_version})")
    if result.is_nova:
        echo(f"nova cell db:    yes (found {', '.join(result.tables_found)})")
    else:
        echo(f"nova cell db:    NO (missing {', '.join(result.tables_missing)})")
    if result.tables_missing and result.is_nova:
        echo(f"missing tables:  {', '.join(result.tables_missing)} (the backfill needs them)")
    echo(
        f"nova revision:   {result.nova_alembic_version or '(no alembic_version table)'} in alembic_version (never touched)"
    )
    for column in result.host_columns:
        if not column["present"]:
            state = "missing"
        elif column["problem"]:
            state = f"INCOMPATIBLE: {column['problem']}"
        else:
            state = f"present, {column['type']}{'' if column['nullable'] else ' NOT NULL'}"
        echo(f"column:          {column['table']}.host {state}")
    if result.host_indexes:
        for index in result.host_indexes:
            flags = ", ".join(
                f
                for f in (
                    "the toolkit's" if index["ours"] else "not the toolkit's",
                    "valid" if index["valid"] else "INVALID",
                )
                if f
            )
            echo(f"index:           {index['name']} ({', '.join(index['columns'])}) [{flags}]")
    else:
        echo("index:           none led by host")
    seen = {
        "readable": "exists",
        "absent": "not created yet",
        "unreadable": "exists, but this user cannot read it",
        "unknown": "not visible to this user: it may exist",
    }[result.state_access]
    echo(f"state schema:    {result.state_location} ({seen})")
    echo(f"version table:   {result.version_table}")
    echo(
        f"revision:        {result.current_revision or '(none applied)'}; head is {result.head_revision}"
    )
    echo("upgrade would:")
    for line in result.plan:
        echo(f"  - {line}")
    for line in result.notes:
        echo(f"note: {line}")
    for line in result.privileges:
        echo(f"missing privilege: {line}")


@schema_app.command("upgrade", epilog=EXIT_CODE_HELP)
def upgrade_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    to: Annotated[str, typer.Option("--to", help="Target revision (default: head).")] = "head",
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    all_cells: AllCellsOption = False,
    api_db: ApiDbOption = None,
    include_disabled: IncludeDisabledOption = False,
    parallel_cells: ParallelCellsOption = 1,
    json_output: JsonOption = False,
    galera_rolling_build: galera_cmd.GaleraRollingOption = False,
    galera_toi: galera_cmd.GaleraToiOption = False,
    galera_max_toi_stall: galera_cmd.GaleraMaxToiStallOption = DEFAULT_MAX_TOI_STALL,
    node: galera_cmd.NodeOption = None,
    cluster_size: galera_cmd.ClusterSizeOption = None,
    sync_timeout: galera_cmd.SyncTimeoutOption = 600.0,
    gcache_check: galera_cmd.GcacheCheckOption = "refuse",
    sample_seconds: galera_cmd.SampleSecondsOption = 2.0,
    drain_timeout: galera_cmd.DrainTimeoutOption = 600.0,
) -> None:
    """Apply the revisions: ensure events.host (and its shadow copy) and its index.

    Revisions already applied are run again (they only create what is missing),
    so a cell restored from a backup converges whatever the version table says.

    Idempotent and online: MySQL/MariaDB use ALGORITHM=INSTANT or INPLACE with
    LOCK=NONE, PostgreSQL CREATE INDEX CONCURRENTLY under lock_timeout.  Changes
    the Nova tables instance_actions_events (index; column only if missing) and
    shadow_instance_actions_events (column only if missing), and creates the
    state schema with the version table and ledger.

    On Galera the index is built under TOI and the whole cluster stops committing
    meanwhile (about 1.8 s per million events): above --galera-max-toi-stall the
    upgrade refuses (exit 127) and asks for --galera-rolling (node by node, RSU;
    runbook 05) or --galera-toi.

    Example: actionhost-backfill schema upgrade --db postgresql://nova@db/nova
    """
    timeout = parse_lock_timeout(lock_timeout)
    if galera_rolling_build and galera_toi:
        raise BadInput("--galera-rolling and --galera-toi exclude each other: choose one")
    if gcache_check not in ("refuse", "warn"):
        raise BadInput(f"--gcache-check must be refuse or warn (got {gcache_check!r})")
    if galera_rolling_build:
        if all_cells or to != "head":
            raise BadInput("--galera-rolling upgrades one cell to head: drop --all-cells / --to")
        galera_cmd.run_rolling(
            resolve_db(db, nova_conf),
            state_schema=state_schema,
            options=galera_rolling.RollingOptions(
                nodes=list(node or []),
                expect_size=cluster_size,
                sync_timeout=sync_timeout,
                gcache=gcache_check,
                sample_seconds=sample_seconds,
                drain_timeout=drain_timeout,
                lock_timeout=timeout,
            ),
            json_output=json_output,
        )
        return
    if all_cells:

        def task(url):
            if not galera_toi:
                refuse_long_toi(url, galera_max_toi_stall)
            result = revisions.upgrade(
                url, state_schema=state_schema, target=to, lock_timeout=timeout
            )
            done = [
                a
                for a in result.actions
                if "nothing to do" not in a and not a.startswith("re-ensure ")
            ]
            summary = f"{result.before or 'base'} -> {result.after}" + (
                f": {len(done)} changes" if done else ": nothing to do"
            )
            return ExitCode.OK, summary, result.to_dict()

        run_all_cells(
            "schema upgrade",
            task,
            CellsRequest(db, nova_conf, api_db, include_disabled, parallel_cells, json_output),
        )
    url = resolve_db(db, nova_conf)
    if not galera_toi:
        refuse_long_toi(url, galera_max_toi_stall)
    result = revisions.upgrade(url, state_schema=state_schema, target=to, lock_timeout=timeout)
    _print_result(result, json_output, "upgrade")


@schema_app.command("downgrade", epilog=EXIT_CODE_HELP)
def downgrade_command(
    target: Annotated[
        str,
        typer.Argument(help="Revision to go down to: 0001_host_column, base, or -1."),
    ],
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    discard_audit: Annotated[
        bool,
        typer.Option(
            "--discard-audit",
            help="Drop the backfill state even though runs have hosts not reverted "
            "(revert then loses its only record of them). Never while a runner is alive.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Undo revisions, removing only what the toolkit itself created.

    Drops the toolkit's index, and the host column only where the ledger says
    the toolkit added it; Nova's own host column and its data are never dropped.

    Going below 0003_backfill_state drops the runs and their audit, the only
    record revert can undo a backfill from.  So it holds the runner lock while it
    drops, and refuses before changing anything: exit 3 while a backfill or
    revert is running (whatever the flags), exit 127 naming the runs whose hosts
    are not reverted (revert them first, or pass --discard-audit).

    Example: actionhost-backfill schema downgrade base --db sqlite:///nova.sqlite
    """
    timeout = parse_lock_timeout(lock_timeout)
    result = revisions.downgrade(
        resolve_db(db, nova_conf),
        target=target,
        state_schema=state_schema,
        lock_timeout=timeout,
        discard_audit=discard_audit,
    )
    _print_result(result, json_output, "downgrade")


def _print_result(result: revisions.SchemaResult, json_output: bool, verb: str) -> None:
    if json_output:
        emit_json(result.to_dict())
        return
    echo(f"{verb}: {result.database}")
    for line in result.actions:
        echo(f"  - {line}")
    echo(f"revision: {result.before or '(none)'} -> {result.after or '(none)'}")
    echo(f"state schema: {result.state_location}")


@schema_app.command("sql", epilog=EXIT_CODE_HELP)
def sql_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    dialect: Annotated[
        OfflineDialect | None,
        typer.Option(
            "--dialect",
            help="Render for postgresql, mysql (MySQL 8), mariadb or sqlite without a URL.",
        ),
    ] = None,
    state_schema: StateSchemaOption = None,
    from_revision: Annotated[str | None, typer.Option("--from", help="Start revision.")] = None,
    to_revision: Annotated[str | None, typer.Option("--to", help="End revision.")] = None,
    downgrade_sql: Annotated[
        bool, typer.Option("--downgrade", help="Render the downgrade (head to base by default).")
    ] = False,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    discard_audit: Annotated[
        bool,
        typer.Option(
            "--discard-audit",
            help="With --downgrade: the script drops the state even though runs have hosts "
            "not reverted (it still stops while a runner is alive).",
        ),
    ] = False,
    galera_rolling_sql: Annotated[
        bool,
        typer.Option(
            "--galera-rolling",
            help="Print the per-node procedure (wsrep_OSU_method=RSU) that builds the index on "
            "a Galera cluster one node at a time, for a DBA who runs it by hand.",
        ),
    ] = False,
) -> None:
    """Print the SQL the revisions would run, for review; never connects.

    Every statement is guarded, so a script applied twice succeeds twice and
    leaves the same schema: PostgreSQL DO blocks and IF [NOT] EXISTS; MySQL and
    MariaDB statements prepared from information_schema (MySQL 8 has no ADD
    COLUMN IF NOT EXISTS); SQLite IF [NOT] EXISTS, and a check that stops the
    script where host is missing (SQLite cannot add a column conditionally).

    --dialect always wins over --db / ACTIONHOST_DB_URL (whose database name is
    kept for the same family, as the state location is named after it).

    A downgrade script stops before it drops the runs and their audit while a
    backfill or revert is running, or while runs have hosts not reverted
    (unless rendered with --discard-audit), as `schema downgrade` does.

    Example: actionhost-backfill schema sql --dialect postgresql > upgrade.sql
    """
    timeout = parse_lock_timeout(lock_timeout)
    if dialect:
        like = resolve_db(db, nova_conf) if db or nova_conf else None
        url = revisions.offline_url(dialect.value, like)
    else:
        url = resolve_db(db, nova_conf)
    if galera_rolling_sql:
        if not for_url(url).may_be_galera:
            raise BadInput("--galera-rolling renders for mysql or mariadb: pass --dialect mariadb")
        echo(
            galera_dialect.procedure(
                url.database, EVENTS, HOST_INDEX, max(1, round(timeout))
            ).rstrip("\n")
        )
        return
    text = revisions.offline_sql(
        url,
        state_schema=state_schema,
        from_revision=from_revision,
        to_revision=to_revision,
        downgrade_sql=downgrade_sql,
        lock_timeout=timeout,
        discard_audit=discard_audit,
    )
    echo(text.rstrip("\n"))
