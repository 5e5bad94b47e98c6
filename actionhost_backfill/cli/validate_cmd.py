"""``validate`` and ``explain``: what the rules would do, before anything is written."""

from __future__ import annotations

from typing import Annotated

import typer

from actionhost_backfill.cli.allcells import CellsRequest, run_all_cells
from actionhost_backfill.cli.app import app
from actionhost_backfill.cli.common import (
    AllCellsOption,
    ApiDbOption,
    DbOption,
    IncludeDisabledOption,
    JsonOption,
    NovaConfOption,
    ParallelCellsOption,
    ReleasesOption,
    StateSchemaOption,
    echo,
    emit_json,
    resolve_db,
)
from actionhost_backfill.errors import EXIT_CODE_HELP
from actionhost_backfill.inference.model import RULES
from actionhost_backfill.inference.rules import excluded_rules
from actionhost_backfill.nova.tables import EVENT_TABLES
from actionhost_backfill.reports.explain import Explanation, explain
from actionhost_backfill.reports.validate import (
    CONFIDENCE,
    ValidateOptions,
    ValidationReport,
    run_validate,
)

ExcludeRuleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude-rule",
        help=f"Write nothing by this rule (repeatable; one of {', '.join(RULES)}), e.g. "
        "current-host and host-timeline after operator DB surgery on instances.host.",
    ),
]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def print_validation(report: ValidationReport) -> None:
    echo(f"validate: {report.database}")
    echo(
        f"sampled {report.instances_sampled:,} of {report.instances_eligible:,} instances with "
        f"recorded hosts (--sample {report.sample}, --seed {report.seed}); hid "
        f"{report.hidden_events:,} recorded events behind a pseudo cut-over per instance"
    )
    if report.eras is not None:
        for line in report.eras.lines():
            echo(line)
    if report.clock_line:
        echo(report.clock_line)
    if report.excluded_rules:
        echo("excluded rules (--exclude-rule): " + ", ".join(report.excluded_rules))
    if not report.instances_eligible:
        echo("nothing to measure: no event of this cell has a host Nova recorded (Rocky or later)")
        return
    total = report.total.figures()
    bound = int(CONFIDENCE * 100)
    echo(
        f"decided {total['filled']:,} of {total['hidden']:,} hidden compute events "
        f"(coverage {_pct(total['coverage_pct'])}); wrong {total['wrong']:,}; precision "
        f"{_pct(total['precision_pct'])} (one-sided {bound}% lower bound "
        f"{_pct(total['precision_lower_bound_pct'])})"
    )
    width = max([len("Rule")] + [len(r) for r in report.by_rule])
    echo(
        f"{'Rule':<{width}}  {'Filled':>8}  {'Wrong':>6}  {'Precision':>9}  {'>= ' + str(bound) + '%':>9}"
    )
    for rule, tally in sorted(report.by_rule.items()):
        f = tally.figures()
        echo(
            f"{rule:<{width}}  {f['filled']:>8,}  {f['wrong']:>6,}  {_pct(f['precision_pct']):>9}  "
            f"{_pct(f['precision_lower_bound_pct']):>9}"
        )
    width = max([len("Event")] + [len(e) for e in report.by_event])
    echo(f"{'Event':<{width}}  {'Hidden':>8}  {'Filled':>8}  {'Wrong':>6}  {'Coverage':>9}")
    for name, tally in sorted(report.by_event.items()):
        f = tally.figures()
        echo(
            f"{name:<{width}}  {f['hidden']:>8,}  {f['filled']:>8,}  {f['wrong']:>6,}  "
            f"{_pct(f['coverage_pct']):>9}"
        )
    if report.null_by_reason:
        echo(
            "left NULL: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(report.null_by_reason.items()))
        )
    for wrong in report.wrong_examples:
        echo(
            f"WRONG: event {wrong['event_id']} {wrong['event']} of instance {wrong['instance_uuid']}: "
            f"recorded {wrong['expected']}, inferred {wrong['inferred']} [{wrong['rule']}] "
            f"(see `actionhost-backfill explain {wrong['event_id']}`)"
        )
    if report.total.wrong:
        echo(
            "the rules disagree with hosts Nova recorded: do not backfill; report the events above"
        )
    echo(
        "note: the hidden events were recorded by Rocky or later; behaviours only older releases "
        "had are measured by `accuracy` on a simulated history, not here; a host changed by "
        "hand in the database (no action, no row) is invisible here too (runbook 3)"
    )


@app.command("validate", epilog=EXIT_CODE_HELP)
def validate_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    sample: Annotated[
        int, typer.Option("--sample", help="Instances with recorded hosts to sample.")
    ] = 500,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same sample.")] = 1,
    examples: Annotated[
        int, typer.Option("--examples", help="Wrong decisions to list (all are counted).")
    ] = 20,
    all_cells: AllCellsOption = False,
    api_db: ApiDbOption = None,
    include_disabled: IncludeDisabledOption = False,
    parallel_cells: ParallelCellsOption = 1,
    releases: ReleasesOption = None,
    exclude_rule: ExcludeRuleOption = None,
    json_output: JsonOption = False,
) -> None:
    """Measure the rules' precision on this cell's own recorded hosts, writing nothing.

    Hides the hosts Nova recorded (Rocky+) on a sample of instances, before a
    pseudo cut-over in each, decides them as the backfill would and compares:
    precision per rule and per event with a one-sided 95% lower bound,
    coverage, and every wrong host found.  Run it before the first backfill.
    Exit 0 when no inferred host is wrong, 5 otherwise.

    Example: actionhost-backfill validate --db mysql+pymysql://nova:PASS@db/nova --sample 1000
    """
    options = ValidateOptions(
        sample=sample,
        seed=seed,
        examples=examples,
        releases=releases,
        exclude_rules=excluded_rules(exclude_rule),
    )
    if all_cells:

        def task(url):
            report = run_validate(url, options, state_schema=state_schema)
            f = report.total.figures()
            summary = (
                f"{f['filled']:,} of {f['hidden']:,} hidden events decided, "
                f"{f['wrong']:,} wrong, precision {_pct(f['precision_pct'])}"
            )
            return report.exit_code, summary, report.to_dict()

        run_all_cells(
            "validate",
            task,
            CellsRequest(db, nova_conf, api_db, include_disabled, parallel_cells, json_output),
        )
    report = run_validate(resolve_db(db, nova_conf), options, state_schema=state_schema)
    if json_output:
        emit_json(report.to_dict())
    else:
        print_validation(report)
    raise typer.Exit(report.exit_code)


def print_explanation(report: Explanation) -> None:
    e = report.event
    source = {"recorded": " (recorded by Nova)", "inferred": " (written by a backfill)"}.get(
        e.get("host_source") or "", ""
    )
    echo(
        f"event {e['id']} {e['event']} in {e['table']}: start {e['start_time']}, finish "
        f"{e['finish_time']}, result {e['result']}, host {e['host'] or 'NULL'}{source}"
    )
    if report.action is None:
        echo("its action is gone: nothing to infer from")
    else:
        a = report.action
        echo(f"action {a['id']} {a['action']} ({a['request_id']}), started {a['start_time']}")
    if report.instance is not None:
        i = report.instance
        state = "" if i["found"] else " (its row is gone)"
        echo(
            f"instance {i['uuid']}{state}: host {i['host'] or 'NULL'}, launched_on "
            f"{i['launched_on'] or 'NULL'}, launched_at {i['launched_at'] or 'NULL'}"
        )
    if report.steps:
        echo("what its actions did to its host:")
        for step in report.steps:
            span = (
                f"{step['from']} .. {step['to'] or 'next request'}"
                if step["changes_host"]
                else "no host change"
            )
            move = ""
            if step["changes_host"] and step["kind"] != "build":
                move = f": {step['before'] or '?'} -> {step['after'] or '?'}"
            migration = step["migration"]
            row = (
                f" [migration {migration['id']} {migration['type']} {migration['source']} -> "
                f"{migration['dest']}, {migration['status']}]"
                if migration
                else ""
            )
            echo(
                f"  {step['action']} (action {step['action_id']}) {span}{move}{row} - {step['note']}"
            )
    if report.segments:
        echo("host-constant segments and their evidence:")
        for segment in report.segments:
            mark = "  <- this event" if segment["index"] == report.event_segment else ""
            evidence = (
                "; ".join(
                    f"{host} ({', '.join(kinds)})" for host, kinds in segment["evidence"].items()
                )
                or "no evidence"
            )
            echo(
                f"  #{segment['index']} "
                f"{segment['from'] or ('?' if segment['open_start'] else 'creation')} .. "
                f"{segment['to'] or 'now'}: "
                f"{evidence}{mark}"
            )
    if report.eras is not None:
        for line in report.eras.lines():
            echo(line)
    if report.clock:
        echo(
            f"clocks: nova-api ahead of the conductors by up to "
            f"{report.clock['api_ahead_max_seconds']:.0f} s in this cell; time matching "
            f"allows up to {report.clock['margin_seconds']:.0f} s around a request"
        )
    d = report.decision
    echo(f"decision: {d['host'] or 'NULL'} [{d['rule']}]")
    if report.relies_on:
        echo(f"  relies on Nova: {report.relies_on}")
    if report.contradicts:
        echo(f"  its rows contradict what the rules rely on: {report.contradicts}")
    if report.excluded:
        excluded = report.excluded
        echo(f"  excluded by --exclude-rule: {excluded['rule']} would write {excluded['host']}")
    for entry in report.audit:
        reverted = f", reverted by run {entry['reverted_by']}" if entry["reverted_by"] else ""
        echo(
            f"run {entry['run_id']}: {entry['outcome']} {entry['host'] or ''} [{entry['rule']}]{reverted}"
        )


@app.command("explain", epilog=EXIT_CODE_HELP)
def explain_command(
    event_id: Annotated[int, typer.Argument(help="Id of the instance action event.")],
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            help=f"Look only in this table ({' or '.join(EVENT_TABLES)}); default: live, then archived.",
        ),
    ] = None,
    releases: ReleasesOption = None,
    exclude_rule: ExcludeRuleOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show why an event gets the host it gets (or stays NULL): its instance's
    moves, segments and evidence, the rule or reason, and what runs wrote.

    Example: actionhost-backfill explain 48213 --db postgresql://nova@db/nova
    """
    excluded = excluded_rules(exclude_rule)
    report = explain(
        resolve_db(db, nova_conf),
        event_id,
        table=table,
        state_schema=state_schema,
        releases=releases,
        exclude_rules=excluded,
    )
    if json_output:
        emit_json(report.to_dict())
    else:
        print_explanation(report)
