"""``events show | list`` (the 2.62 event view) and ``failures`` (which hosts are failing)."""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta
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
    StateSchemaOption,
    echo,
    emit_json,
    resolve_db,
)
from actionhost_backfill.clock import utcnow
from actionhost_backfill.errors import EXIT_CODE_HELP, BadInput
from actionhost_backfill.reports import views

events_app = typer.Typer(
    help="Instance actions and their events as Nova's API shows them (microversion 2.62).",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events")


class ViewerChoice(str, enum.Enum):
    admin = "admin"
    member = "member"


AsOption = Annotated[
    ViewerChoice,
    typer.Option(
        "--as",
        help="admin: host and traceback shown; member: neither (hostId only), as Nova's policy.",
    ),
]


def _grid(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    out.append(line)
    for row in rows:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    out.append(line)
    return out


@events_app.command("show", epilog=EXIT_CODE_HELP)
def show_command(
    instance: Annotated[str, typer.Argument(help="Instance UUID.")],
    request_id: Annotated[str, typer.Argument(help="Request id of the action (req-...).")],
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    as_: AsOption = ViewerChoice.admin,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the 2.62 API body (instanceAction), plus the format version (docs/json.md).",
        ),
    ] = False,
    provenance: Annotated[
        bool,
        typer.Option(
            "--provenance",
            help="With --json: add a separate 'provenance' list (recorded or inferred, rule, "
            "run) next to the untouched API body; admins only.",
        ),
    ] = False,
) -> None:
    """One action and its events, with host (admins) and hostId (everyone).

    For admins each host says where it came from: recorded by Nova, or
    inferred by a backfill run (rule and run), or changed since a run wrote
    it; "provenance unknown" without the backfill's audit.  Members see
    neither host nor provenance.

    Example: actionhost-backfill events show 9f2c... req-4c1d... --as member --json
    """
    role = as_.value
    found = views.load_actions(
        resolve_db(db, nova_conf),
        instance,
        request_id=request_id,
        provenance=role == "admin",
        state_schema=state_schema,
    )
    action = found.actions[0]
    events = found.events.get(action["id"], [])
    body = views.action_body(action, events, role, instance_project_id=found.project_id)
    if json_output:
        if provenance and role == "admin":
            body["provenance"] = views.provenance_body(events, found.provenance, role)
        emit_json(body)
        return
    shown = body["instanceAction"]
    echo(
        f"action {shown['action']} of instance {shown['instance_uuid']}"
        + (" (archived)" if found.archived else "")
        + f": request {shown['request_id']}, project {shown['project_id']}, "
        f"started {shown['start_time']}"
        + (f", message {shown['message']}" if shown["message"] else "")
    )
    headers = ["Event", "Result", "Start Time", "Finish Time"]
    headers += ["Host", "Host source", "hostId"] if role == "admin" else ["hostId"]
    rows = []
    for event, raw in zip(shown["events"], events, strict=True):
        row = [
            event["event"] or "",
            event["result"] or "",
            event["start_time"] or "",
            event["finish_time"] or "",
        ]
        if role == "admin":
            row.append(event["host"] or "(unknown)")
            known = found.provenance.get(raw["id"]) if event["host"] else None
            row.append(known.label() if known else "")
        row.append(event["hostId"] or '""')
        rows.append(row)
    for line in _grid(headers, rows):
        echo(line)
    if role == "admin":
        for event in shown["events"]:
            if event.get("traceback"):
                echo(f"traceback of {event['event']}:")
                echo(event["traceback"])


@events_app.command("list", epilog=EXIT_CODE_HELP)
def list_command(
    instance: Annotated[str, typer.Argument(help="Instance UUID.")],
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    state_schema: StateSchemaOption = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the 2.62 API body (instanceActions), plus the format version (docs/json.md).",
        ),
    ] = False,
) -> None:
    """An instance's actions, newest first, like `nova instance-action-list`.

    The table adds, per action, how many of its events' hosts Nova recorded
    and how many a backfill inferred (an admin view).

    Example: actionhost-backfill events list 9f2c...
    """
    found = views.load_actions(
        resolve_db(db, nova_conf),
        instance,
        provenance=not json_output,
        state_schema=state_schema,
        with_events=not json_output,
    )
    body = views.actions_body(found.actions)
    if json_output:
        emit_json(body)
        return
    rows = []
    for action, shown in zip(found.actions, body["instanceActions"], strict=True):
        sources = views.host_sources(found.events.get(action["id"], []), found.provenance)
        rows.append(
            [
                shown["action"] or "",
                shown["request_id"] or "",
                shown["message"] or "",
                shown["start_time"] or "",
                sources,
            ]
        )
    for line in _grid(["Action", "Request_ID", "Message", "Start_Time", "Event hosts"], rows):
        echo(line)


_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(value: str | None, option: str, now: datetime | None = None) -> datetime | None:
    """``7d``, ``12h``, ``30m`` (ago, UTC) or an ISO date/time (UTC, as Nova stores it)."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        now = now or utcnow()
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadInput(
            f"{option} {value!r} is neither a duration (7d, 12h, 30m) nor an ISO time "
            "(2024-05-01 or 2024-05-01T10:00:00, UTC)"
        ) from None


@app.command("failures", epilog=EXIT_CODE_HELP)
def failures_command(
    db: DbOption = None,
    nova_conf: NovaConfOption = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Start: 7d, 12h, 30m ago, or an ISO time (UTC).")
    ] = "7d",
    until: Annotated[
        str | None, typer.Option("--until", help="End (exclusive), same forms; default now.")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Only this host.")] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="Only this event name, e.g. compute_prep_resize.")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="How many hosts to show.")] = 10,
    recorded_only: Annotated[
        bool,
        typer.Option(
            "--recorded-only",
            help="Count only failed events whose host Nova recorded (not inferred by a backfill).",
        ),
    ] = False,
    state_schema: StateSchemaOption = None,
    all_time: Annotated[
        bool, typer.Option("--all-time", help="No start: every failed event on record.")
    ] = False,
    all_cells: AllCellsOption = False,
    api_db: ApiDbOption = None,
    include_disabled: IncludeDisabledOption = False,
    parallel_cells: ParallelCellsOption = 1,
    json_output: JsonOption = False,
) -> None:
    """Which hosts are failing: hosts ranked by failed events in the window.

    Per host: failed events by name, first and last seen, a few request ids to
    look up with `events show`.  Failed events whose host is still unknown are
    counted on their own line.  Reads only; uses the host index.

    Example: actionhost-backfill failures --since 7d --top 5
    """
    window = {
        "since": None if all_time else parse_moment(since, "--since"),
        "until": parse_moment(until, "--until"),
        "host": host,
        "event": event,
        "top": top,
        "recorded_only": recorded_only,
        "state_schema": state_schema,
    }
    if all_cells:

        def task(url):
            report = views.failures(url, **window)
            leader = report.hosts[0] if report.hosts else None
            summary = (
                f"top {leader.host} ({leader.failed:,} failed)"
                if leader
                else "no known-host failures"
            ) + f"; host unknown {report.unknown.failed:,}"
            return 0, summary, report.to_dict()

        run_all_cells(
            "failures",
            task,
            CellsRequest(db, nova_conf, api_db, include_disabled, parallel_cells, json_output),
        )
    report = views.failures(resolve_db(db, nova_conf), **window)
    if json_output:
        emit_json(report.to_dict())
        return
    window = f"since {views.api_time(report.since) or 'the beginning'}" + (
        f" until {views.api_time(report.until)}" if report.until else ""
    )
    echo(f"failed events by host, {window}: {report.database}")
    if report.hosts:
        for line in failures_table(report.hosts):
            echo(line)
        other = sum(e.sources["changed-since"] + e.sources["unknown"] for e in report.hosts)
        if not report.provenance_available:
            echo(
                "provenance unknown: no backfill audit in the state schema, so recorded and "
                "inferred hosts cannot be told apart (pass the --state-schema the backfill used)"
            )
        elif other:
            echo(
                f"{other:,} failed events have a host changed since a run wrote it, or unknown provenance"
            )
        if report.recorded_only:
            echo("counting only hosts Nova recorded (--recorded-only)")
        latest = [e for e in report.hosts if e.request_ids]
        if latest:
            echo("latest failed request per host (more with --json; see `events show`):")
            width = max(len(e.host or "") for e in latest)
            for entry in latest:
                echo(f"  {entry.host or '':<{width}}  {entry.request_ids[0]}")
    else:
        echo("no failed events with a known host")
    if report.total_hosts > len(report.hosts):
        echo(f"({report.total_hosts - len(report.hosts)} more hosts; raise --top)")
    for line in unknown_lines(report.unknown):
        echo(line)


#: The failures table fits a 100-column terminal (longer event lists are cut with "...").
TABLE_WIDTH = 100


def failures_table(hosts: list[views.HostFailures]) -> list[str]:
    """Host, failed (recorded/inferred), last seen day and top events, at most TABLE_WIDTH wide.

    First seen, times and all request ids are in ``--json``.
    """
    headers = ["Host", "Failed", "Rec/Inf", "Last seen", "Top events"]
    rows = [
        [
            entry.host or "",
            f"{entry.failed:,}",
            f"{entry.sources['recorded']:,}/{entry.sources['inferred']:,}",
            entry.last_seen.strftime("%Y-%m-%d") if entry.last_seen else "",
            [f"{name} {n}" for name, n in entry.events.most_common()],
        ]
        for entry in hosts
    ]
    fixed = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers[:-1])]
    # "| " + cells joined by " | " + " |": 3 characters per column, plus 1.
    room = max(20, TABLE_WIDTH - sum(fixed) - 3 * len(headers) - 1)
    for row in rows:
        row[-1] = fit_list(row[-1], room)
    return _grid(headers, rows)


def fit_list(items: list[str], room: int) -> str:
    """``a 2, b 1, +3 more`` in at most ``room`` characters (the first item always, cut if need be)."""
    shown: list[str] = []
    for n, item in enumerate(items):
        rest = len(items) - n - 1
        candidate = ", ".join([*shown, item]) + (f", +{rest} more" if rest else "")
        if shown and len(candidate) > room:
            return ", ".join(shown) + f", +{len(items) - n} more"
        if not shown and len(candidate) > room:  # even the first is too long: cut its name
            suffix = candidate[len(item) :]
            item = item[: max(8, room - len(suffix) - 3)] + "..."
        shown.append(item)
    return ", ".join(shown)


def unknown_lines(unknown: views.HostFailures) -> list[str]:
    """The host-unknown count and why: only events a backfill has not examined can gain a host."""
    head = f"host unknown: {unknown.failed:,} failed events"
    top = fit_list(
        [f"{n} {c}" for n, c in unknown.events.most_common()], TABLE_WIDTH - len(head) - 3
    )
    lines = [head + (f" ({top})" if top else "")]
    why = unknown.attribution
    if why[views.NOT_ATTRIBUTABLE]:
        lines.append(
            f"  {why[views.NOT_ATTRIBUTABLE]:,} not attributable: control-plane events "
            "(conductor, API), whose host Nova records nowhere"
        )
    if why[views.LEFT_NULL]:
        lines.append(
            f"  {why[views.LEFT_NULL]:,} left NULL by the backfill: no rule could decide "
            "(`validate` and docs/accuracy.md say why); running it again will not change them"
        )
    if why[views.NOT_EXAMINED]:
        lines.append(
            f"  {why[views.NOT_EXAMINED]:,} not examined by a backfill yet: "
            "run the backfill to attribute them"
        )
    return lines
