"""The host index on a Galera cluster, built node by node (RSU) instead of under TOI.

Under Total Order Isolation (Galera's default for DDL) every node builds the
index at the same point of the replication stream and the whole cluster stops
committing meanwhile: about 1.8 s per million events (runbook 05).  Under
``wsrep_OSU_method=RSU`` (set here for one session only) a node builds it
alone: it desyncs (``Donor/Desynced``), sends no flow control, the others
commit on, and it catches up after.  RSU DDL is not replicated, so every node
builds its own, one at a time, each over a direct connection.

:func:`rolling_upgrade` checks before the first node and again before each
next one, and refuses (:class:`GaleraUnsafe`, exit 2) when

- a node is unreachable, not ``Synced``, not in the primary component, or in
  another cluster, or the cluster size is not the one expected;
- a node is still desynced or has a receive queue (never two at once);
- the write sets expected during one node's build would not fit in
  ``gcache.size`` (estimated from the table size before the first node, then
  measured during it): a node that falls out of the gcache needs a full SST.

A node failing mid-build stops the run with what to do; the same command run
again builds only on the nodes still missing the index.  The toolkit's version
table records the revision once, after every node has the index.

The nodes, how they are found and checked, are in
:mod:`~actionhost_backfill.schema.galera_nodes`; the estimate that sends a large
table here instead of a TOI build in :mod:`~actionhost_backfill.schema.galera_toi`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import db
from actionhost_backfill.dialects import for_url, galera
from actionhost_backfill.errors import ActionHostError, BadInput, ExitCode
from actionhost_backfill.nova import catalog
from actionhost_backfill.redact import mask_url
from actionhost_backfill.schema import revisions
from actionhost_backfill.schema.galera_nodes import (
    GaleraUnsafe,
    NodeView,
    check_cluster,
    configured_size,
    discover,
    look,
    node_engine,
)
from actionhost_backfill.schema.galera_toi import TOI_SECONDS_PER_MILLION
from actionhost_backfill.schema.settings import DEFAULT_LOCK_TIMEOUT
from actionhost_backfill.state.location import resolve_state_location
from actionhost_backfill.state.tables import state

#: Warn when one build's write sets would fill more than this share of gcache.size.
GCACHE_WARN_SHARE = 0.5


class GaleraNodeFailed(ActionHostError):
    """A node failed while it built the index; the message says what to do."""

    exit_code = ExitCode.INTERVENE


@dataclass
class RollingOptions:
    nodes: list[str] = field(default_factory=list)
    """``--node URL``: the nodes to build on (default: discovered from the cluster)."""
    expect_size: int | None = None
    """``--cluster-size N``: refuse unless the cluster has N nodes (default: all found)."""
    sync_timeout: float = 600.0
    """Seconds a node may take to be Synced again, its receive queue drained."""
    gcache: str = "refuse"
    """``refuse`` or ``warn`` when one build's write sets may not fit in gcache.size."""
    drain_timeout: float = 600.0
    """Seconds a node's clients have to move away before its build (RSU pauses its commits)."""
    sample_seconds: float = 2.0
    """How long the cluster's write rate is sampled before the first node."""
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT


@dataclass
class RollingResult:
    database: str
    state_location: str
    nodes: list[dict]
    built: list[dict]
    """Nodes built by this run, in order, with seconds and the cluster's write-set bytes meanwhile."""
    already: list[str]
    """Nodes that had the index before this run."""
    gcache: dict
    warnings: list[str]
    before: str | None
    after: str | None
    actions: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _write_set_bytes(url: URL) -> int:
    """Bytes of write sets this node has replicated and received since it started."""
    engine = node_engine(url)
    try:
        with engine.connect() as conn:
            status = galera.node_status(conn)
    finally:
        engine.dispose()
    return int(status.get("wsrep_replicated_bytes", 0)) + int(status.get("wsrep_received_bytes", 0))


def _gcache_smallest(urls: list[URL]) -> int | None:
    sizes = []
    for url in urls:
        engine = node_engine(url)
        try:
            with engine.connect() as conn:
                size = galera.gcache_size(conn)
        finally:
            engine.dispose()
        if size:
            sizes.append(size)
    return min(sizes) if sizes else None


def _mib(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def _gcache_verdict(
    expected: float, gcache: int | None, how: str, mode: str, warnings, say
) -> None:
    if not gcache:
        return
    line = (
        f"gcache: about {_mib(expected)} of write sets during one node's build ({how}), "
        f"gcache.size {_mib(gcache)}"
    )
    if expected > gcache:
        text = (
            f"{line}: a node that restarted mid-build could not catch up by IST and would "
            "need a full SST; raise gcache.size, build at a quieter time, or pass "
            "--gcache-check warn"
        )
        if mode == "refuse":
            raise GaleraUnsafe(text)
        warnings.append(text)
        say(f"warning: {text}")
    elif expected > GCACHE_WARN_SHARE * gcache:
        text = f"{line}: more than half of it"
        warnings.append(text)
        say(f"warning: {text}")
    else:
        say(line)


def _local_commits(url: URL) -> int:
    """Write sets this node replicated (its own clients' commits) since it started."""
    engine = node_engine(url)
    try:
        with engine.connect() as conn:
            return int(galera.node_status(conn).get("wsrep_replicated", 0))
    finally:
        engine.dispose()


def _wait_drained(target: NodeView, timeout: float, say) -> None:
    """Wait until ``target``'s clients commit nothing for a second.

    RSU pauses the node's replication for the whole build: a client committing
    there waits, holding the table's metadata lock, which the ALTER itself needs;
    the ALTER then gives up (error 1205).  Its clients must move first (the
    proxy's backup node, HAProxy's drain).
    """
    deadline = time.monotonic() + timeout
    told = False
    while True:
        before = _local_commits(target.url)
        time.sleep(1.0)  # a measurement window: the node's own commits
        committed = _local_commits(target.url) - before
        if not committed:
            return
        if not told:
            say(
                f"waiting until {target.describe()} takes no writes ({committed} commits in "
                "the last second): move its clients to another node (in HAProxy set it to "
                "drain or make another node the active one); RSU pauses its commits while "
                "it builds"
            )
            told = True
        if time.monotonic() > deadline:
            raise GaleraUnsafe(
                f"refused before {target.describe()}: its clients still commit there "
                f"({committed} in the last second) after {timeout:g} s (--drain-timeout): "
                "move them to another node and run the same command again"
            )


def _wait_synced(url: URL, timeout: float, what: str) -> NodeView:
    deadline = time.monotonic() + timeout
    while True:
        view = look(url)
        if (
            not view.error
            and view.state == "Synced"
            and view.recv_queue <= galera.RECV_QUEUE_DRAINED
        ):
            return view
        if time.monotonic() > deadline:
            raise GaleraUnsafe(
                f"{what} is {view.error or view.state} with {view.recv_queue} write sets "
                f"queued {timeout:g} s after its build: the next node is not started; "
                "when it is Synced run the same command again"
            )
        time.sleep(0.2)  # the interval between two looks at the node's own status


def rolling_upgrade(
    url: URL,
    *,
    state_schema: str | None = None,
    options: RollingOptions | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> RollingResult:
    """Apply the revisions with the host index built node by node under RSU.

    ``say`` receives one line per step (the CLI prints them on stderr).
    """
    options = options or RollingOptions()
    if not for_url(url).may_be_galera:
        raise BadInput(f"--galera-rolling needs a MariaDB/MySQL Galera node, not {mask_url(url)}")
    location = resolve_state_location(url, state_schema)
    urls = discover(url, options.nodes)
    size = options.expect_size or configured_size(url) or len(urls)
    views = [look(u) for u in urls]
    check_cluster(views, size, "refused before the first node")
    say(
        "nodes: "
        + ", ".join(f"{v.describe()} {v.state}, index {v.index or 'missing'}" for v in views)
    )
    seed = revisions.status(url, state_schema=state_schema)
    before = seed.current_revision
    if before is None:  # the host column (INSTANT, metadata only) and the ledger first
        revisions.upgrade(
            url,
            state_schema=state_schema,
            target="0001_host_column",
            lock_timeout=options.lock_timeout,
        )
    already = [v.describe() for v in views if v.index]
    missing = [v for v in views if not v.index]
    built: list[dict] = []
    warnings: list[str] = []
    gcache_info: dict = {"size_bytes": None, "estimated_bytes": None, "measured_bytes": None}
    if missing:
        gcache = _gcache_smallest(urls)
        gcache_info["size_bytes"] = gcache
        engine = node_engine(url)
        try:
            with engine.connect() as conn:
                rows = galera.table_rows(conn, catalog.EVENTS)
        finally:
            engine.dispose()
        start = _write_set_bytes(urls[0])
        commits = {v.address: _local_commits(v.url) for v in missing}
        t0 = time.monotonic()
        time.sleep(options.sample_seconds)  # a measurement window: the cluster's write rate
        rate = (_write_set_bytes(urls[0]) - start) / (time.monotonic() - t0)
        # Nodes that take no writes first: the one(s) Nova writes through last.
        taking = {v.address: _local_commits(v.url) - commits[v.address] for v in missing}
        missing.sort(key=lambda v: taking[v.address] > 0)
        build = rows / 1e6 * TOI_SECONDS_PER_MILLION
        expected = rate * build
        gcache_info["estimated_bytes"] = round(expected)
        _gcache_verdict(
            expected,
            gcache,
            f"{_mib(rate)}/s for an estimated {build:.1f} s build of ~{rows:,} events",
            options.gcache,
            warnings,
            say,
        )
        for position, target in enumerate(missing):
            _wait_drained(target, options.drain_timeout, say)
            views = [look(u) for u in urls]
            check_cluster(views, size, f"refused before {target.describe()}")
            now = next(v for v in views if v.url == target.url)
            if now.index:  # built meanwhile (by hand, or by SST from a donor)
                already.append(now.describe())
                continue
            observer = next(v.url for v in views if v.url != target.url)
            say(
                f"building on {target.describe()} (wsrep_OSU_method=RSU): {galera.add_index_sql(catalog.EVENTS, catalog.HOST_INDEX)}"
            )
            done = [b["node"] for b in built]
            bytes0 = _write_set_bytes(observer)
            t0 = time.monotonic()
            engine = node_engine(target.url)
            try:
                with engine.connect() as conn:
                    galera.build_on_this_node(
                        conn,
                        catalog.EVENTS,
                        catalog.HOST_INDEX,
                        max(1, round(options.lock_timeout)),
                    )
            except sa.exc.DBAPIError as exc:
                error = db.translate_error(exc, target.url)
                if getattr(exc.orig, "args", (None,))[:1] == (1205,):
                    error = (
                        f"{error} (a transaction on that node held the table past "
                        "--lock-timeout: move its clients away, or end the long transaction)"
                    )
                left = [v.describe() for v in missing[position + 1 :]]
                raise GaleraNodeFailed(
                    f"{target.describe()} failed while building the index: {error}; "
                    f"built on {', '.join(already + done) or 'no node'}, not started on "
                    f"{', '.join(left) or 'no other node'}, revision not recorded: check "
                    f"{target.describe()} (if it restarted it lost the unfinished index), wait "
                    "until every node is Synced, then run the same command again: it builds "
                    "on the nodes still missing the index"
                ) from None
            finally:
                engine.dispose()
            seconds = time.monotonic() - t0
            during = _write_set_bytes(observer) - bytes0
            say(f"built on {target.describe()} in {seconds:.1f} s; waiting until it is Synced")
            _wait_synced(target.url, options.sync_timeout, target.describe())
            built.append(
                {"node": target.describe(), "seconds": round(seconds, 3), "write_set_bytes": during}
            )
            if position == 0:
                gcache_info["measured_bytes"] = during
                if len(missing) > 1:
                    _gcache_verdict(
                        during,
                        gcache,
                        f"measured during {target.describe()}'s {seconds:.1f} s build",
                        options.gcache,
                        warnings,
                        say,
                    )
    views = [look(u) for u in urls]
    lacking = [v.describe() for v in views if not v.index]
    if lacking:
        raise GaleraUnsafe(
            f"{', '.join(lacking)} still without the index after the build: revision not "
            "recorded; run the same command again"
        )
    schema = revisions.upgrade(url, state_schema=state_schema, lock_timeout=options.lock_timeout)
    actions = list(schema.actions)
    if built:
        _record_in_ledger(url, location, [b["node"] for b in built])
        actions.append(
            f"recorded in the ledger: {catalog.HOST_INDEX} built node by node (RSU) on "
            + ", ".join(b["node"] for b in built)
        )
    return RollingResult(
        database=mask_url(url),
        state_location=location.describe(),
        nodes=[v.to_dict() for v in views],
        built=built,
        already=already,
        gcache=gcache_info,
        warnings=warnings,
        before=before,
        after=schema.after,
        actions=actions,
    )


def _record_in_ledger(url: URL, location, nodes: list[str]) -> None:
    """The ledger row a TOI build writes (downgrade drops the index it names), once."""
    ledger = state(location.schema).ledger
    detail = f"ALGORITHM=INPLACE, LOCK=NONE, wsrep_OSU_method=RSU on {', '.join(nodes)}"
    engine = db.create_engine(url, location, attach="if-exists")
    try:
        with db.connect(engine) as conn, conn.begin():
            exists = conn.execute(
                sa.select(sa.func.count()).where(
                    ledger.c.kind == "index", ledger.c.object_name == catalog.HOST_INDEX
                )
            ).scalar()
            if not exists:
                conn.execute(
                    ledger.insert().values(
                        revision="0002_host_index",
                        kind="index",
                        table_name=catalog.EVENTS,
                        object_name=catalog.HOST_INDEX,
                        detail=detail[:255],
                    )
                )
    finally:
        engine.dispose()
