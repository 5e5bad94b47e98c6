"""``simulate``, ``accuracy`` and ``demo``: a history with known truth, and how right we are."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from actionhost_backfill.cli.app import app
from actionhost_backfill.cli.backfill_cmd import (
    NoProgressOption,
    graceful_stop,
    print_summary,
    progress_factory,
)
from actionhost_backfill.cli.common import (
    DbOption,
    JsonOption,
    NovaConfOption,
    StateSchemaOption,
    echo,
    emit_json,
    note,
    resolve_db,
)
from actionhost_backfill.db import parse_url
from actionhost_backfill.engine.backfill import BackfillOptions, run_backfill
from actionhost_backfill.errors import EXIT_CODE_HELP, BadInput
from actionhost_backfill.nova.releases import SIMULATED
from actionhost_backfill.schema import revisions
from actionhost_backfill.sim.accuracy import AccuracyReport, accuracy
from actionhost_backfill.sim.simulate import SimulationOptions, SimulationResult, simulate
from actionhost_backfill.state.location import resolve_state_location

DEMO_DB = "sqlite:///actionhost-demo.sqlite"

SeedOption = Annotated[int, typer.Option("--seed", help="Random seed: same seed, same history.")]
EventsOption = Annotated[
    int | None,
    typer.Option("--events", help="About how many events to write (sets the instance count)."),
]


#: The Nova releases a simulated history can start and end with (Rocky follows the cut-over).
ReleaseChoice = Enum("ReleaseChoice", {name: name for name in SIMULATED}, type=str)


def _print_simulation(result: SimulationResult) -> None:
    echo(
        f"simulated {result.instances:,} instances, {result.events:,} events "
        f"in {result.seconds:.1f}s: {result.database}"
    )
    echo("rows: " + ", ".join(f"{name} {count:,}" for name, count in result.counts.items()))
    echo(f"truth: {result.truth_location}")


@app.command("simulate", epilog=EXIT_CODE_HELP)
def simulate_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    seed: SeedOption = 42,
    events: EventsOption = None,
    instances: Annotated[
        int | None, typer.Option("--instances", help="Number of instances (instead of --events).")
    ] = None,
    hosts: Annotated[int, typer.Option("--hosts", help="Number of compute hosts.")] = 40,
    days: Annotated[int, typer.Option("--days", help="Length of the history in days.")] = 1460,
    cutover: Annotated[
        float,
        typer.Option(
            "--cutover",
            help="Share of the period after which the cloud runs Rocky (events carry their host).",
        ),
    ] = 0.88,
    first_release: Annotated[
        ReleaseChoice,
        typer.Option(
            "--first-release",
            help="Nova release in service when the history starts.",
            case_sensitive=False,
        ),
    ] = ReleaseChoice("kilo"),
    last_release: Annotated[
        ReleaseChoice,
        typer.Option(
            "--last-release",
            help="Last release before the cut-over (each release gets an equal share).",
            case_sensitive=False,
        ),
    ] = ReleaseChoice("queens"),
    rolling_days: Annotated[
        int,
        typer.Option(
            "--rolling-days",
            help="Upgrade the computes one by one over this many days after each "
            "control-plane upgrade, each drained with host-evacuate-live first (0: all at once).",
        ),
    ] = 0,
    same_host_resizes: Annotated[
        float,
        typer.Option(
            "--same-host-resizes",
            help="Share of resizes the scheduler places on their own host "
            "(allow_resize_to_same_host; 0 by default).",
        ),
    ] = 0.0,
    api_clock_skew: Annotated[
        float,
        typer.Option(
            "--api-clock-skew",
            help="Seconds nova-api's clock runs ahead of the conductors' (negative: behind); "
            "stamps actions and Liberty+ evacuation rows. Opt-in, default 0.",
        ),
    ] = 0.0,
    surgery_rate: Annotated[
        float,
        typer.Option(
            "--surgery-rate",
            help="Share of operations that are operator DB surgery instead (UPDATE "
            "instances SET host, node, then a hard reboot; nothing records the move). "
            "Opt-in, default 0.",
        ),
    ] = 0.0,
    contradiction_rate: Annotated[
        float,
        typer.Option(
            "--contradiction-rate",
            help="Share of actions whose repeated steps each keep their own finish and "
            "result, as no Nova release writes them (a patched Nova). Opt-in, default 0.",
        ),
    ] = 0.0,
    json_output: JsonOption = False,
) -> None:
    """Write a Nova cell history recorded release by release, with known true hosts.

    The period before --cutover is shared equally by the releases --first-release
    .. --last-release (icehouse, juno, kilo, liberty, mitaka, newton, ocata,
    pike, queens), each recording history the way that Nova release did
    (Icehouse/Juno: live migrations with no record at all, Icehouse builds
    through the legacy run_instance; Kilo: live migrations without events or
    rows; Liberty-Pike: a row per rescheduled resize candidate, ...); from the
    cut-over on the cloud runs
    Rocky and every event stores its host.  Only writes into an empty
    database: a new SQLite file, or an empty PostgreSQL/MySQL database (the
    Nova tables are created when missing).  The true host of every event goes
    to <state schema>.simulation_truth.  Default size: about 20,000 events.

    Example: actionhost-backfill simulate --db sqlite:///sim.sqlite --events 100000 --first-release newton
    """
    if instances is not None and events is not None:
        raise BadInput("pass --events or --instances, not both")
    options = SimulationOptions(
        seed=seed,
        events=events,
        instances=instances,
        hosts=hosts,
        days=days,
        cutover=cutover,
        first_release=first_release.value,
        last_release=last_release.value,
        rolling_days=rolling_days,
        same_host_resizes=same_host_resizes,
        api_clock_skew=api_clock_skew,
        surgery_rate=surgery_rate,
        contradiction_rate=contradiction_rate,
    )
    result = simulate(resolve_db(db, nova_conf), options, state_schema=state_schema)
    if json_output:
        emit_json(result.to_dict())
    else:
        _print_simulation(result)


def print_accuracy(report: AccuracyReport) -> None:
    echo(f"accuracy: {report.database}")
    width = max([len("Rule")] + [len(rule) for rule in report.by_rule])
    line = f"+-{'-' * width}-+-{'-' * 10}-+-{'-' * 8}-+-{'-' * 9}-+"
    echo(line)
    echo(f"| {'Rule':<{width}} | {'Filled':>10} | {'Wrong':>8} | {'Precision':>9} |")
    echo(line)
    rows = [(rule, s["filled"], s["wrong"], s["precision"]) for rule, s in report.by_rule.items()]
    rows.append(("total", report.filled, report.wrong, report.precision))
    for rule, filled, wrong, precision in rows:
        shown = "-" if precision is None else f"{precision:.2f}%"
        echo(f"| {rule:<{width}} | {filled:>10,} | {wrong:>8,} | {shown:>9} |")
    echo(line)
    if report.null_by_reason:
        echo(
            "left NULL: "
            + ", ".join(f"{reason} {count:,}" for reason, count in report.null_by_reason.items())
        )

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}%"

    echo(
        f"coverage: {pct(report.compute_coverage)} of {report.compute_was_null:,} NULL compute_* "
        f"events (the inferable ones); {pct(report.coverage)} of all {report.was_null:,} NULL "
        "events (conductor_*/api_* ran on control-plane nodes recorded nowhere)"
    )
    if report.by_era:
        echo("by era (the release that recorded the events):")
        echo(
            f"  {'Era':<8} {'NULL compute_*':>14} {'Filled':>8} {'Wrong':>6} {'Coverage':>9}  Filled by rule"
        )
        for era, figures in report.by_era.items():
            rules = ", ".join(
                f"{rule} {n:,}" for rule, n in sorted(figures["filled_by_rule"].items())
            )
            echo(
                f"  {era:<8} {figures['compute_null_events']:>14,} {figures['filled']:>8,} "
                f"{figures['wrong']:>6,} {pct(figures['compute_coverage_pct']):>9}  {rules}"
            )
    if report.not_examined:
        echo(f"not examined yet: {report.not_examined:,} NULL events (run the backfill again)")
    for example in report.wrong_examples:
        echo(
            f"wrong: {example['event_table']} id {example['event_id']} {example['event']}: "
            f"wrote {example['host']}, truth {example['truth']} [{example['rule']}]"
        )
    misses = report.misses
    echo("targets: " + ("met" if not misses else "NOT met: " + "; ".join(misses)))


@app.command("accuracy", epilog=EXIT_CODE_HELP)
def accuracy_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    examples: Annotated[int, typer.Option("--examples", help="Wrong values to show per rule.")] = 5,
    json_output: JsonOption = False,
) -> None:
    """Compare what the backfill wrote with a simulated history's true hosts.

    Precision overall and per rule (with examples of wrong values), reasons for
    the NULLs left, and coverage of the compute_* events.  Works only on a
    database written by `simulate` or `demo`.  Reads only.

    Example: actionhost-backfill accuracy --db sqlite:///sim.sqlite --json
    """
    report = accuracy(resolve_db(db, nova_conf), state_schema=state_schema, examples=examples)
    if json_output:
        emit_json(report.to_dict())
    else:
        print_accuracy(report)


@app.command("demo", epilog=EXIT_CODE_HELP)
def demo_command(
    db: Annotated[
        str,
        typer.Option(
            "--db", help="Where to build the demo: a new SQLite file, or an empty database."
        ),
    ] = DEMO_DB,
    events: Annotated[
        int, typer.Option("--events", help="Size of the simulated history.")
    ] = 150_000,
    seed: SeedOption = 42,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Delete an existing demo SQLite file (and its state) first."),
    ] = False,
    no_progress: NoProgressOption = False,
) -> None:
    """Simulate a Nova history, upgrade the schema, backfill it and report accuracy.

    Runs the toolkit's whole job in about a minute on an embedded SQLite file
    (./actionhost-demo.sqlite by default); prints each step's command so the
    same can be run against a real cell database.

    Example: actionhost-backfill demo --fresh
    """
    url = parse_url(db)
    location = resolve_state_location(url, None)
    files = location.dialect.database_files(url, location)
    if files is not None:  # a file-backed database: start from fresh files
        cell = Path(url.database or "")
        leftovers = [p for p in map(Path, (f or "" for f in files)) if p.is_file()]
        if leftovers and not fresh:
            raise BadInput(
                f"{cell} already exists: pass --fresh to recreate it, or --db sqlite:///other.sqlite"
            )
        for path in leftovers:
            path.unlink()
    shown = str(url.render_as_string(hide_password=True))

    note(f"1/4 simulate: actionhost-backfill simulate --db {shown} --events {events}")
    result = simulate(url, SimulationOptions(seed=seed, events=events))
    _print_simulation(result)

    note(f"2/4 schema: actionhost-backfill schema upgrade --db {shown}")
    upgraded = revisions.upgrade(url)
    for line in upgraded.actions:
        echo(f"  {line}")

    note(f"3/4 backfill: actionhost-backfill backfill --include-shadow --db {shown}")
    with graceful_stop() as stop:
        outcome = run_backfill(
            url,
            BackfillOptions(include_shadow=True),
            stop=stop,
            progress=progress_factory(no_progress),
        )
    print_summary(outcome)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)

    note(f"4/4 accuracy: actionhost-backfill accuracy --db {shown}")
    print_accuracy(accuracy(url))
    note(
        f"next: actionhost-backfill status --db {shown}; "
        f"actionhost-backfill revert --run {outcome.run_id} --db {shown} --dry-run"
    )
