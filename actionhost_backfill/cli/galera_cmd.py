"""The Galera options of ``schema upgrade | status | sql`` and what they print."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.engine import URL

from actionhost_backfill.cli.common import echo, emit_json
from actionhost_backfill.dialects import for_url
from actionhost_backfill.redact import scrub
from actionhost_backfill.schema import galera_nodes, galera_rolling

GaleraRollingOption = Annotated[
    bool,
    typer.Option(
        "--galera-rolling",
        help="Galera: build the host index one node at a time with wsrep_OSU_method=RSU "
        "(no cluster-wide write stall), checking before each node that every node is "
        "Synced; the revision is recorded once every node has the index. Exit 2 when a "
        "check refuses or a node fails (run the same command again once it is Synced).",
    ),
]
GaleraToiOption = Annotated[
    bool,
    typer.Option(
        "--galera-toi",
        help="Galera: accept building the index under TOI even above --galera-max-toi-stall "
        "(every node stops committing while it builds).",
    ),
]
GaleraMaxToiStallOption = Annotated[
    float,
    typer.Option(
        "--galera-max-toi-stall",
        metavar="SECONDS",
        help="Galera, without --galera-rolling/--galera-toi: refuse (exit 127) when the TOI "
        "build is estimated to stall the cluster longer (1.8 s per million events).",
    ),
]
NodeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--node",
        metavar="URL",
        help="Galera: a node to connect to directly (repeat for each; default: the nodes "
        "the cluster lists in wsrep_incoming_addresses).",
    ),
]
ClusterSizeOption = Annotated[
    int | None,
    typer.Option(
        "--cluster-size",
        min=1,
        help="--galera-rolling: refuse unless the cluster has this many nodes "
        "(default: the nodes wsrep_cluster_address lists).",
    ),
]
SyncTimeoutOption = Annotated[
    float,
    typer.Option(
        "--sync-timeout",
        metavar="SECONDS",
        help="--galera-rolling: how long a node may take to be Synced again after its build.",
    ),
]
DrainTimeoutOption = Annotated[
    float,
    typer.Option(
        "--drain-timeout",
        metavar="SECONDS",
        help="--galera-rolling: how long to wait for a node's clients to move away before "
        "its build (RSU pauses its commits); nodes that take no writes are built first.",
    ),
]
SampleSecondsOption = Annotated[
    float,
    typer.Option(
        "--sample-seconds",
        metavar="SECONDS",
        help="--galera-rolling: how long the cluster's write rate is sampled before the "
        "first node, for the gcache estimate.",
    ),
]
GcacheCheckOption = Annotated[
    str,
    typer.Option(
        "--gcache-check",
        help="--galera-rolling: 'refuse' (default) or 'warn' when one node's build may write "
        "more than gcache.size of write sets.",
    ),
]


def run_rolling(
    url: URL,
    *,
    state_schema: str | None,
    options: galera_rolling.RollingOptions,
    json_output: bool,
) -> None:
    """``schema upgrade --galera-rolling``: steps on stderr, the result on stdout."""

    def say(line: str) -> None:
        typer.echo(scrub(line), err=True)

    result = galera_rolling.rolling_upgrade(
        url, state_schema=state_schema, options=options, say=say
    )
    if json_output:
        emit_json(result.to_dict())
        return
    echo(f"upgrade: {result.database} (Galera, node by node)")
    for node in result.nodes:
        echo(f"  node {node['name']} ({node['address']}): {node['state']}, index {node['index']}")
    for built in result.built:
        echo(
            f"  - built on {built['node']} in {built['seconds']:.1f} s "
            f"({built['write_set_bytes']:,} bytes of write sets meanwhile)"
        )
    for node in result.already:
        echo(f"  - {node}: index already there")
    for line in result.actions:
        echo(f"  - {line}")
    echo(f"revision: {result.before or '(none)'} -> {result.after or '(none)'}")
    echo(f"state schema: {result.state_location}")


def print_nodes(nodes: list[dict]) -> None:
    """``schema status`` on Galera: one line per node."""
    for node in nodes:
        if node["error"]:
            echo(f"galera node:     {node['address']} unreachable: {node['error']}")
            continue
        index = f"index {node['index']} present, valid" if node["index"] else "index MISSING"
        echo(
            f"galera node:     {node['name']} ({node['address']}) {node['state']}, "
            f"{node['cluster_status']}; {index}"
        )


def status_nodes(url: URL, given: list[str] | None) -> list[dict]:
    if not for_url(url).may_be_galera:
        return []
    return galera_nodes.node_report(url, given)
