"""``backfill``, and what the commands that write in batches share: progress, stop, throttle."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Annotated

import typer

from actionhost_backfill.cli.allcells import CellsRequest, run_all_cells
from actionhost_backfill.cli.app import app
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
    ReleasesOption,
    ReplicaOption,
    SleepOption,
    StateSchemaOption,
    TargetBatchSecondsOption,
    echo,
    emit_json,
    note,
    resolve_db,
    stderr_is_terminal,
)
from actionhost_backfill.cli.validate_cmd import ExcludeRuleOption
from actionhost_backfill.engine.backfill import BackfillOptions, BackfillResult, run_backfill
from actionhost_backfill.engine.progress import DEFAULT_INTERVAL, PlainProgress, bar
from actionhost_backfill.engine.throttling import (
    POLL_SECONDS,
    ThrottleOptions,
    ThrottleStats,
    throttle_dict,
)
from actionhost_backfill.errors import EXIT_CODE_HELP, BadInput
from actionhost_backfill.inference.rules import excluded_rules
from actionhost_backfill.schema.settings import DEFAULT_LOCK_TIMEOUT

NoProgressOption = Annotated[
    bool,
    typer.Option(
        "--no-progress",
        help="No progress on stderr (neither the bar on a terminal nor the periodic lines without one).",
    ),
]
ProgressIntervalOption = Annotated[
    float,
    typer.Option(
        "--progress-interval",
        help="When stderr is not a terminal (cron, | tee, nohup, Ansible): print a progress line "
        "(rows done/total, rate, ETA, throttle state) every this many seconds, also while paused.",
    ),
]
CheckIntervalOption = Annotated[
    float,
    typer.Option(
        "--check-interval",
        help="While paused by a throttle check (--max-lag, --max-load, --pause-file): seconds "
        "between two looks (pt-online-schema-change's name).",
    ),
]
FailWithoutReplicasOption = Annotated[
    bool,
    typer.Option(
        "--fail-without-replicas",
        help="With --max-lag: refuse (exit 127, nothing written) when no replica is found, "
        "instead of saying so once and running without lag throttling.",
    ),
]


@contextlib.contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    """First Ctrl-C / SIGTERM: finish the batch in flight, then stop; second Ctrl-C: abort it."""
    stop = threading.Event()

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        note(
            f"\n{name}: stopping after the batch in flight (Ctrl-C again aborts it; both are safe)"
        )

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def progress_factory(no_progress: bool, interval: float = DEFAULT_INTERVAL):
    """A bar on a terminal; without one, a plain line every ``interval`` seconds."""
    if not 0.05 <= interval <= 86_400:
        raise BadInput(
            f"--progress-interval must be between 0.05 and 86400 seconds (got {interval:g})"
        )
    if no_progress:
        return lambda total, description: bar(total, description, enabled=False)
    if stderr_is_terminal():
        return lambda total, description: bar(total, description, enabled=True)
    return lambda total, description: PlainProgress(
        total, description, interval=interval, write=note
    )


def _table(rows: list[tuple[str, str]], headers: tuple[str, str]) -> list[str]:
    width = max([len(headers[0])] + [len(r[0]) for r in rows])
    count_width = max([len(headers[1])] + [len(r[1]) for r in rows])
    line = f"+-{'-' * width}-+-{'-' * count_width}-+"
    out = [line, f"| {headers[0]:<{width}} | {headers[1]:>{count_width}} |", line]
    out += [f"| {name:<{width}} | {value:>{count_width}} |" for name, value in rows]
    out.append(line)
    return out


def throttle_line(stats: ThrottleStats | None) -> str | None:
    """``throttled 12.5s in 3 pauses (replica lag 10.0s, load 2.5s); worst replica lag 4.2s``."""
    figures = throttle_dict(stats)
    if not figures or not figures["pauses"]:
        return None
    parts = ", ".join(f"{name} {sec:.1f}s" for name, sec in figures["by_check"].items())
    line = f"throttled {figures['seconds']:.1f}s in {figures['pauses']} pauses ({parts})"
    lag = figures["worst_lag_seconds"]
    if lag is not None:
        line += f"; worst replica lag {lag if lag == 'unknown' else f'{lag:.1f}s'}"
    return line


def print_summary(result: BackfillResult) -> None:
    if result.nothing_to_decide:
        echo(result.message or "nothing to decide")
        return
    verb = "would fill" if result.dry_run else "filled"
    title = (
        "dry run (nothing written)"
        if result.dry_run
        else f"run {result.run_id}" + (" (resumed)" if result.resumed else "")
    )
    echo(f"{title}: {result.database}")
    filled = sorted(result.filled_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
    left = sorted(result.null_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    for line in _table(
        [(k, f"{v:,}") for k, v in filled] + [("total", f"{result.filled:,}")],
        ("Rule", verb.capitalize()),
    ):
        echo(line)
    for line in _table(
        [(k, f"{v:,}") for k, v in left] + [("total", f"{result.left_null:,}")],
        ("Left NULL because", "Rows"),
    ):
        echo(line)
    if result.skipped:
        echo(
            f"skipped {result.skipped:,} rows whose host Nova recorded meanwhile (never overwritten)"
        )
    if result.already_decided:
        echo(
            f"left alone {result.already_decided:,} NULL-host events earlier complete runs "
            "decided (evidence unchanged since)"
        )
    if result.dry_run:
        echo(
            f"planned {result.examined:,} events in {result.elapsed:.1f}s "
            f"({result.rows_per_second:,.0f} rows/s): would fill "
            f"{result.filled:,} and leave {result.left_null:,} NULL; nothing was written"
        )
    else:
        echo(
            f"examined {result.examined:,} events in {result.batches:,} batches, "
            f"{result.retries} retries, {result.elapsed:.1f}s, {result.rows_per_second:,.0f} rows/s"
            + (f", {result.passes} passes" if result.passes else "")
        )
    throttled = throttle_line(result.throttle)
    if throttled:
        echo(throttled)
    if result.snapshot is not None and result.snapshot.clock_line:
        echo(result.snapshot.clock_line)
    if result.excluded_rules:
        echo("excluded rules (--exclude-rule): " + ", ".join(sorted(result.excluded_rules)))
    if result.snapshot is not None:
        s = result.snapshot
        echo(
            f"evidence: {s.events:,} events, {s.migrations:,} migrations, "
            f"{s.shelve_records:,} shelve records, {s.volume_connectors:,} volume connectors, "
            f"{s.compute_hosts:,} compute hosts (snapshot {s.seconds:.1f}s)"
        )
        if s.eras is not None:
            for line in s.eras.lines():
                echo(line)
    if result.samples:
        echo("sample:")
        for sample in result.samples:
            echo(
                f"  {sample['table']} id {sample['event_id']} {sample['event']} "
                f"(instance {sample['instance_uuid']}, {sample['request_id']}): "
                f"{sample['host'] or 'NULL'} [{sample['rule']}]"
            )
    if result.dry_run:
        state = {
            "complete": "dry run, every NULL-host event planned",
            "partial": "dry run, planned up to --max-rows",
            "interrupted": "dry run, interrupted",
        }[result.outcome]
    else:
        state = {
            "complete": "complete",
            "partial": "partial: more to do",
            "interrupted": "interrupted",
        }[result.outcome]
    echo(
        f"result: {state}"
        + (f"; {result.remaining:,} NULL-host events not examined yet" if result.remaining else "")
    )
    if result.message:
        echo(result.message)


@app.command("backfill", epilog=EXIT_CODE_HELP)
def backfill_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Compute and report everything; write nothing (state schema included).",
        ),
    ] = False,
    batch_size: BatchSizeOption = None,
    target_batch_seconds: TargetBatchSecondsOption = None,
    sleep: SleepOption = 0.0,
    max_rows: Annotated[
        int | None,
        typer.Option(
            "--max-rows",
            help="Write at most this many hosts now (rows written, not examined); exit 1 if more "
            "remain. With --until-complete: at most this many per pass, passes until nothing is "
            "left (nova-manage's --max-count).",
        ),
    ] = None,
    until_complete: Annotated[
        bool,
        typer.Option(
            "--until-complete",
            help="Keep going past the run's starting horizon until no NULL-host event is left (events written meanwhile).",
        ),
    ] = False,
    include_shadow: Annotated[
        bool,
        typer.Option(
            "--include-shadow",
            help="Also backfill shadow_instance_actions_events (archived history).",
        ),
    ] = False,
    new_run: Annotated[
        bool,
        typer.Option(
            "--new-run", help="Start a new run instead of resuming the latest unfinished one."
        ),
    ] = False,
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
    all_cells: AllCellsOption = False,
    api_db: ApiDbOption = None,
    include_disabled: IncludeDisabledOption = False,
    parallel_cells: ParallelCellsOption = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Planners, each in a process of its own with its own connection, reading "
            "and deciding a share of the instances; the decisions are the same for any N "
            "(default: 2 when at least 200,000 NULL-host events are to be decided and the "
            "machine has 2 CPUs or more, else 1; see runbook 3).",
            show_default=False,
        ),
    ] = None,
    releases: ReleasesOption = None,
    exclude_rule: ExcludeRuleOption = None,
    json_output: JsonOption = False,
) -> None:
    """Infer and write the host of historical events, in resumable batches.

    Writes only rows whose host is NULL, with an audit row per event (the rule
    that produced its value, or why it stays NULL) in the state schema.
    Resumes the latest unfinished run unless --new-run.  Ctrl-C or SIGTERM
    finishes the batch in flight and exits 1; run again to resume.

    Example: actionhost-backfill backfill --db mysql+pymysql://nova:PASS@db/nova --dry-run
    """
    options = BackfillOptions(
        batch_size=batch_size,
        target_batch_seconds=target_batch_seconds,
        sleep=sleep,
        max_rows=max_rows,
        until_complete=until_complete,
        include_shadow=include_shadow,
        dry_run=dry_run,
        new_run=new_run,
        lock_timeout=lock_timeout,
        max_retries=max_retries,
        sample=5 if dry_run else 0,
        releases=releases,
        exclude_rules=excluded_rules(exclude_rule),
        workers=workers,
        throttle=ThrottleOptions(
            max_lag,
            replica or [],
            max_load or [],
            critical_load or [],
            pause_file,
            check_interval=check_interval,
            fail_without_replicas=fail_without_replicas,
        ),
    )
    progress = progress_factory(no_progress, progress_interval)
    if all_cells:
        options.validate()
        with graceful_stop() as stop:

            def task(url):
                result = run_backfill(
                    url,
                    options,
                    state_schema=state_schema,
                    stop=stop,
                    progress=progress_factory(no_progress or parallel_cells > 1, progress_interval),
                    notify=note,
                )
                summary = (
                    result.message
                    if result.nothing_to_decide
                    else (
                        f"{result.outcome}: filled {result.filled:,}, left NULL {result.left_null:,}"
                        f", {result.rows_per_second:,.0f} rows/s"
                        + (f", run {result.run_id}" if result.run_id else "")
                    )
                )
                return result.exit_code, summary, result.to_dict()

            run_all_cells(
                "backfill" + (" --dry-run" if dry_run else ""),
                task,
                CellsRequest(db, nova_conf, api_db, include_disabled, parallel_cells, json_output),
                stop=stop,
            )
    url = resolve_db(db, nova_conf)
    with graceful_stop() as stop:
        result = run_backfill(
            url, options, state_schema=state_schema, stop=stop, progress=progress, notify=note
        )
    if json_output:
        emit_json(result.to_dict())
    else:
        print_summary(result)
    raise typer.Exit(result.exit_code)
