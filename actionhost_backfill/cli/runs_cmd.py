"""``status``, ``verify`` and ``revert``: what became of the backfill runs.

``status`` and ``verify`` print the read-only reports (``reports.status``);
``revert`` undoes a run through ``engine.revert``, batched and throttled like
the backfill, with its progress and stop handling (``cli.backfill_cmd``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from actionhost_backfill.cli.allcells import CellsRequest, run_all_cells
from actionhost_backfill.cli.app import app
from actionhost_backfill.cli.backfill_cmd import (
    CheckIntervalOption,
    FailWithoutReplicasOption,
    NoProgressOption,
    ProgressIntervalOption,
    graceful_stop,
    progress_factory,
    throttle_line,
)
from actionhost_backfill.cli.common import (
    AllCellsOption,
    ApiDbOption,
    BatchSizeOption,
    CriticalLoadOption,
    DbOption,
    IncludeDisabledOption,
    JsonOption,
    LockTimeoutOption,
    MaxLagOption,
    MaxLoadOption,
    MaxRetriesOption,
    NovaConfOption,
    ParallelCellsOption,
    PauseFileOption,
    ReplicaOption,
    SleepOption,
    StateSchemaOption,
    TargetBatchSecondsOption,
    echo,
    emit_json,
    note,
    resolve_db,
)
from actionhost_backfill.engine.progress import DEFAULT_INTERVAL
from actionhost_backfill.engine.revert import RevertOptions, revert
from actionhost_backfill.engine.throttling import (
    POLL_SECONDS,
    ThrottleOptions,
)
from actionhost_backfill.errors import EXIT_CODE_HELP
from actionhost_backfill.reports import status as run_status
from actionhost_backfill.schema.settings import DEFAULT_LOCK_TIMEOUT


@app.command("status", epilog=EXIT_CODE_HELP)
def status_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    limit: Annotated[
        int, typer.Option("--limit", help="How many runs to list, newest first (at least 1).")
    ] = 20,
    all_cells: AllCellsOption = False,
    api_db: ApiDbOption = None,
    include_disabled: IncludeDisabledOption = False,
    parallel_cells: ParallelCellsOption = 1,
    json_output: JsonOption = False,
) -> None:
    """List backfill and revert runs and count the NULL-host events left.

    While a backfill or revert runs, shows its owner (user@host, pid, since),
    progress from its checkpoints, rate and ETA.  Exit code 0; 3 (busy) while a
    runner is alive (wait for it); 1 when a run is unfinished and nobody runs it
    (run the same command again to resume it).

    Example: actionhost-backfill status --db postgresql://nova@db/nova
    """
    if all_cells:

        def task(url):
            report = run_status.status(url, state_schema=state_schema, limit=limit)
            left = sum(report.null_hosts.values())
            summary = f"{left:,} NULL-host events; {len(report.runs)} runs" + (
                f"; run {report.live.run_id} running ({report.live.holder})"
                if report.live
                else (f"; run {report.unfinished_run} unfinished" if report.unfinished_run else "")
            )
            return report.exit_code, summary, report.to_dict()

        run_all_cells(
            "status",
            task,
            CellsRequest(db, nova_conf, api_db, include_disabled, parallel_cells, json_output),
        )
    report = run_status.status(resolve_db(db, nova_conf), state_schema=state_schema, limit=limit)
    if json_output:
        emit_json(report.to_dict())
        raise typer.Exit(report.exit_code)
    echo(f"database: {report.database}")
    for table, count in report.null_hosts.items():
        echo(f"NULL host: {count:,} rows in {table}")
    if not report.state_ready:
        echo(
            f"no backfill state yet in {report.state_location} (run `schema upgrade`, then `backfill`)"
        )
    elif not report.runs:
        echo("no runs yet")
    for run in report.runs:
        checkpoints = ", ".join(
            f"{t} at id {c['last_id']:,}/{c['horizon']:,}{' done' if c['done'] else ''}"
            for t, c in run["checkpoints"].items()
        )
        target = f" of run {run['target_run_id']}" if run["target_run_id"] else ""
        echo(
            f"run {run['id']}: {run['kind']}{target}, {run['state']}, started {run['started_at']:%Y-%m-%d %H:%M:%S}; {checkpoints}"
        )
        if run["filled_by_rule"]:
            echo("  filled: " + ", ".join(f"{k} {v:,}" for k, v in run["filled_by_rule"].items()))
        if run["null_by_reason"]:
            echo(
                "  left NULL: " + ", ".join(f"{k} {v:,}" for k, v in run["null_by_reason"].items())
            )
        if run["message"]:
            echo(f"  note: {run['message']}")
    if report.decided and (report.decided["filled"] or report.decided["left_null"]):
        echo(
            f"decided (each event once, latest decision): filled {report.decided['filled']:,}, "
            f"left NULL {report.decided['left_null']:,}"
        )
    if report.live is not None:
        echo(live_line(report.live))
    elif report.unfinished_run:
        echo(f"run {report.unfinished_run} is unfinished: run the same command again to resume it")
    raise typer.Exit(report.exit_code)


def live_line(live) -> str:
    """``run 5 (backfill) is running: nova@db1 pid 1234 since ...; 1,200 of 5,000 events ...``."""
    figures = f"{live.done:,}" + (f" of {live.planned:,}" if live.planned is not None else "")
    figures += " events"
    if live.rows_per_second:
        figures += f", {live.rows_per_second:,.0f} ev/s"
    if live.eta_seconds is not None:
        figures += f", ETA {live.eta_seconds:,.0f}s"
    since = f" since {live.since:%Y-%m-%d %H:%M:%S} UTC" if live.since else ""
    owner = live.holder or (f"pid {live.pid}" if live.pid else "another session")
    what = (
        f"run {live.run_id}" + (f" ({live.kind})" if live.kind else "")
        if live.run_id
        else "a runner"
    )
    return (
        f"{what} is running: {owner}{since}; {figures}; wait for it to finish "
        "(exit 3: busy; nothing to resume)"
    )


@app.command("verify", epilog=EXIT_CODE_HELP)
def verify_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    run: Annotated[
        int | None, typer.Option("--run", help="Verify one run (default: every backfill run).")
    ] = None,
    all_cells: AllCellsOption = False,
    api_db: ApiDbOption = None,
    include_disabled: IncludeDisabledOption = False,
    parallel_cells: ParallelCellsOption = 1,
    json_output: JsonOption = False,
) -> None:
    """Check that every value the backfill wrote is still in the table.

    Exit code 0 when everything matches, 4 when some audited value changed
    since (drift), 127 on bad input.  Rows archived to the shadow table since
    still count as matching; rows purged since are counted as missing.

    Example: actionhost-backfill verify --db sqlite:///nova.sqlite
    """
    if all_cells:

        def task(url):
            report = run_status.verify(url, state_schema=state_schema, run_id=run)
            summary = (
                f"checked {report.checked:,}: {report.matching:,} match, "
                f"{report.drift:,} changed, {report.missing:,} purged"
            )
            return report.exit_code, summary, report.to_dict()

        run_all_cells(
            "verify",
            task,
            CellsRequest(db, nova_conf, api_db, include_disabled, parallel_cells, json_output),
        )
    report = run_status.verify(resolve_db(db, nova_conf), state_schema=state_schema, run_id=run)
    if json_output:
        emit_json(report.to_dict())
        raise typer.Exit(report.exit_code)
    echo(f"verify: {report.database} (runs {', '.join(map(str, report.runs)) or 'none'})")
    for run_id, by in sorted(report.reverted.items()):
        echo(
            f"run {run_id} was reverted"
            + (f" by revert run {by}" if by else "")
            + ": none of its hosts is left to check"
        )
    echo(
        f"checked {report.checked:,} written values: {report.matching:,} match "
        f"({report.archived:,} archived since), {report.drift:,} changed, {report.missing:,} purged"
    )
    if report.filled_by_rule:
        echo(
            "filled by rule: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(report.filled_by_rule.items()))
        )
    if report.null_by_reason:
        echo(
            "left NULL: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(report.null_by_reason.items()))
        )
    for example in report.drift_examples:
        echo(
            f"drift: run {example['run_id']} wrote {example['written']} to {example['table']} id "
            f"{example['event_id']} ({example['rule']}); it is now {example['now'] or 'NULL'}"
        )
    raise typer.Exit(report.exit_code)


@app.command("revert", epilog=EXIT_CODE_HELP)
def revert_command(
    run: Annotated[int, typer.Option("--run", help="The backfill run to undo (see `status`).")],
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be reverted; change nothing.")
    ] = False,
    batch_size: BatchSizeOption = None,
    target_batch_seconds: TargetBatchSecondsOption = None,
    sleep: SleepOption = 0.0,
    max_rows: Annotated[
        int | None,
        typer.Option(
            "--max-rows",
            help="Revert at most this many rows now (rows written); exit 1 if more remain.",
        ),
    ] = None,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    max_retries: MaxRetriesOption = 5,
    max_lag: MaxLagOption = None,
    replica: ReplicaOption = None,
    max_load: MaxLoadOption = None,
    critical_load: CriticalLoadOption = None,
    pause_file: PauseFileOption = None,
    check_interval: CheckIntervalOption = POLL_SECONDS,
    fail_without_replicas: FailWithoutReplicasOption = False,
    no_progress: NoProgressOption = False,
    progress_interval: ProgressIntervalOption = DEFAULT_INTERVAL,
    json_output: JsonOption = False,
) -> None:
    """Set back to NULL the rows a backfill run filled, where the host is still its value.

    Rows whose host changed since are left alone and counted.  Batched,
    throttled, retried and resumable like the backfill (the same applier),
    under the same one-runner lock.

    Example: actionhost-backfill revert --run 3 --db mysql+pymysql://nova:PASS@db/nova --dry-run
    """
    progress = progress_factory(no_progress, progress_interval)
    with graceful_stop() as stop:
        result = revert(
            resolve_db(db, nova_conf),
            run,
            RevertOptions(
                dry_run=dry_run,
                batch_size=batch_size,
                target_batch_seconds=target_batch_seconds,
                sleep=sleep,
                max_rows=max_rows,
                lock_timeout=lock_timeout,
                max_retries=max_retries,
                throttle=ThrottleOptions(
                    max_lag,
                    replica or [],
                    max_load or [],
                    critical_load or [],
                    pause_file,
                    check_interval=check_interval,
                    fail_without_replicas=fail_without_replicas,
                ),
            ),
            state_schema=state_schema,
            stop=stop,
            progress=progress,
            notify=note,
        )
    if json_output:
        emit_json(result.to_dict())
        raise typer.Exit(result.exit_code)
    if result.nothing_to_revert:
        echo(result.message or "nothing to revert")
        raise typer.Exit(result.exit_code)
    title = "dry run (nothing changed)" if dry_run else f"revert run {result.run_id}"
    verb = "would revert" if dry_run else "reverted"
    echo(f"{title} of backfill run {run}: {result.database}")
    echo(
        f"{verb} {result.reverted:,} rows to NULL; kept {result.kept_changed:,} whose host changed since; "
        f"{result.missing:,} purged; {result.batches:,} batches in {result.elapsed:.1f}s"
    )
    if result.already_null:
        echo(
            f"{result.already_null:,} rows the run wrote are NULL already: nothing to undo there "
            "(was the cell database restored from a backup? `verify` lists them)"
        )
    throttled = throttle_line(result.throttle)
    if throttled:
        echo(throttled)
    echo(f"result: {'complete' if result.outcome == 'complete' else 'partial: more to do'}")
    if result.message:
        echo(result.message)
    raise typer.Exit(result.exit_code)
