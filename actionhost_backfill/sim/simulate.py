"""A Nova cell history recorded the way Icehouse ... Queens (then Rocky) recorded it.

``simulate`` writes instances, actions, events, migrations, faults, system
metadata, volume attachments, services and compute nodes as the Nova release
in service at each moment wrote them: the period is split into eras, one per
release from ``first_release`` to ``last_release``, then Rocky from the
cut-over on, when every event row stores the host that recorded it.  What each
release did differently lives in ``releases.py`` (one switch per behaviour,
each citing the docs/accuracy.md section or the Nova tag, file and function it
was read from);
``operations/`` is the model of the operations themselves, one module per
section of ``Behaviour``: builds and their reschedules, the generic
operations, cold moves with reschedules, confirms, reverts and deletes of
resized instances, live migrations with rejected candidates, rollbacks and
aborts, evacuations and the source's later restart, shelve, offload and
unshelve, volume attachments and their connectors, deletes and the archiver.
``life.py`` holds an instance's state and picks its next operation,
``cloud.py`` runs the lives in time order, ``records.py`` orders one
operation's writes, ``options.py`` and ``eras.py`` say what is asked for and
which release ran when; this module writes it all into a database.

It is a discrete-event simulation: every instance's life is a generator and
operations run in time order across instances, so ids grow with time as in a
real database (an instance's rows are spread over the id range).  Inside one
operation the rows are written in the order of their (whole-second, one
conductor clock) timestamps, which is what fixes event ids and which of a
repeated event name's rows receives the finishes (``HistoryBuilder``).  The
truth of every event (where the code that recorded it ran, and the release in
service when it started) goes to ``<state schema>.simulation_truth``, outside
the Nova schema, for ``accuracy``.  Everything is deterministic from the seed.
"""

from __future__ import annotations

import contextlib
import gc
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from actionhost_backfill import dialects
from actionhost_backfill.db import connect, create_engine, translate_error
from actionhost_backfill.dialects import bulk
from actionhost_backfill.errors import BadInput
from actionhost_backfill.nova import models
from actionhost_backfill.nova.tables import EVENTS, SHADOW_EVENTS, nova
from actionhost_backfill.redact import mask_url
from actionhost_backfill.sim.batches import Batch
from actionhost_backfill.sim.clock import EPOCH, db_time
from actionhost_backfill.sim.cloud import Simulation
from actionhost_backfill.sim.columns import WRITTEN_TABLES
from actionhost_backfill.sim.eras import Era, plan_eras
from actionhost_backfill.sim.history import HistoryBuilder
from actionhost_backfill.sim.options import Rates, SimulationOptions
from actionhost_backfill.state.location import (
    StateLocation,
    ensure_state_schema,
    resolve_state_location,
)

__all__ = [
    "EPOCH",
    "META_TABLE",
    "TRUTH_TABLE",
    "WRITTEN_TABLES",
    "Era",
    "Rates",
    "SimulationOptions",
    "SimulationResult",
    "plan_eras",
    "plan_instances",
    "simulate",
    "truth_tables",
]

TRUTH_TABLE = "simulation_truth"
META_TABLE = "simulation_meta"


@dataclass
class SimulationResult:
    database: str
    truth_location: str
    instances: int
    counts: dict[str, int]
    seconds: float
    options: dict = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.counts.get(EVENTS, 0) + self.counts.get(SHADOW_EVENTS, 0)

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "truth_location": self.truth_location,
            "instances": self.instances,
            "events": self.events,
            "rows": self.counts,
            "seconds": round(self.seconds, 2),
            "options": self.options,
        }


class _BackgroundWriter:
    """Writes batches in order on its own thread, so the database works while we simulate.

    The connection is used by this thread only, one batch at a time; at most
    one batch waits, so memory stays bounded.  An error is raised in the
    simulating thread at its next ``put`` or at ``close``.
    """

    def __init__(self, write: Callable[[tuple], None]):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="simulate-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            if self._error is None and not self._stopped:
                try:
                    self._write(work)
                except BaseException as exc:  # re-raised in the simulating thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, work: tuple) -> None:
        self._raise()
        self._queue.put(work)

    def close(self) -> None:
        """Wait until every batch is written."""
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def abandon(self) -> None:
        """Stop after the batch being written (the simulation failed or was interrupted)."""
        self._stopped = True
        self._queue.put(None)
        self._thread.join()


@contextlib.contextmanager
def _rare_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while rows pile up.

    A simulation allocates millions of short-lived row lists; with the default
    thresholds the collector's scans cost about a third of the run.  Nothing
    the simulation keeps forms reference cycles, so collecting rarely loses
    nothing; the thresholds are restored afterwards.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def plan_instances(options: SimulationOptions) -> int:
    """How many instances give about ``options.events`` events (a dry calibration run)."""
    if options.instances is not None:
        return options.instances
    target = options.events if options.events is not None else 20_000
    sample = 600
    counted = 0

    def count(truth: list[tuple]) -> None:
        nonlocal counted
        counted += len(truth)
        builder.discard()

    builder = HistoryBuilder()
    simulation = Simulation(options, builder, random.Random(options.seed ^ 0x5EED))
    simulation.writer = count
    with _rare_collections():
        simulation.run(sample)
        simulation.flush()
    return max(1, round(target * sample / max(counted, 1)))


def truth_tables(schema: str) -> tuple[sa.Table, sa.Table]:
    meta = sa.MetaData(schema=schema)
    truth = sa.Table(
        TRUTH_TABLE,
        meta,
        sa.Column("event_table", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("recorded", sa.Boolean, nullable=False),
        sa.Column("era", sa.String(16), nullable=False),
        mysql_engine="InnoDB",
    )
    meta_table = sa.Table(
        META_TABLE,
        meta,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        mysql_engine="InnoDB",
    )
    return truth, meta_table


def _prepare(conn: sa.Connection, location: StateLocation, url: URL) -> set[str]:
    names = set(sa.inspect(conn).get_table_names())
    if EVENTS in names:
        events = nova(EVENTS)
        if conn.execute(sa.select(events.c.id).limit(1)).first() is not None:
            raise BadInput(
                f"{mask_url(url)} already holds instance action events: simulate only "
                "writes into an empty database (create a new one, or for SQLite pick a new file)"
            )
        for table in WRITTEN_TABLES:
            if table not in names:
                raise BadInput(
                    f"{mask_url(url)} has {EVENTS} but no {table} table: not a Nova cell "
                    "schema simulate can write into (use an empty database)"
                )
    else:
        models.create_cell_schema(conn)
        names = set(sa.inspect(conn).get_table_names())
    ensure_state_schema(conn, location)
    truth, _ = truth_tables(location.schema)
    truth.metadata.drop_all(conn)
    truth.metadata.create_all(conn)
    return names


def simulate(
    url: URL,
    options: SimulationOptions | None = None,
    *,
    state_schema: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Write a simulated history into ``url`` (an empty database or a new SQLite file).

    Batches of complete operations are written by a background thread while the
    simulation goes on; ``progress`` gets each batch's number of events (called
    from that thread).
    """
    options = options or SimulationOptions()
    options.validate()
    location = resolve_state_location(url, state_schema)
    instances = plan_instances(options)
    started = time.perf_counter()
    engine = create_engine(url, location, attach="create", must_exist=False)
    try:
        with connect(engine) as conn:
            try:
                _prepare(conn, location, url)
                conn.commit()
                truth_columns = ("event_table", "event_id", "event", "host", "recorded", "era")
                builder = HistoryBuilder()
                builder.archive_flags = True
                simulation = Simulation(options, builder, random.Random(options.seed))
                counts: dict[str, int] = {}

                def write(work: tuple[Batch, list[tuple]]) -> None:
                    batch, truth = work
                    try:
                        written = builder.write_batch(conn, batch)
                    except KeyError as exc:
                        raise BadInput(
                            f"{mask_url(url)}: {exc.args[0]}: simulate needs Nova's shadow tables"
                        ) from None
                    for name, count in written.items():
                        counts[name] = counts.get(name, 0) + count
                    bulk.insert_rows(
                        conn, TRUTH_TABLE, truth_columns, truth, schema=location.schema
                    )
                    conn.commit()
                    if progress is not None:
                        progress(len(truth))

                writer = _BackgroundWriter(write)
                simulation.writer = lambda truth: writer.put((builder.take(), truth))
                try:
                    with _rare_collections():
                        simulation.register_services()
                        simulation.run(instances)
                        simulation.flush()
                except BaseException:
                    writer.abandon()
                    raise
                writer.close()
                _analyze(conn)
                counts = dict(sorted(counts.items()))
                _, meta = truth_tables(location.schema)
                conn.execute(meta.delete())
                cut = simulation.rocky.start if simulation.rocky else simulation.end
                conn.execute(
                    meta.insert(),
                    [
                        {"name": "options", "value": json.dumps(_options_dict(options))},
                        {"name": "counts", "value": json.dumps(counts)},
                        {"name": "cutover", "value": db_time(cut).isoformat(sep=" ")},
                        {
                            "name": "eras",
                            "value": json.dumps([e.to_dict() for e in simulation.eras]),
                        },
                    ],
                )
                conn.commit()
            except sa.exc.DBAPIError as exc:
                raise translate_error(exc, url) from None
    finally:
        engine.dispose()
    return SimulationResult(
        database=mask_url(url),
        truth_location=f"{location.describe()}, table {TRUTH_TABLE}",
        instances=instances,
        counts=counts,
        seconds=time.perf_counter() - started,
        options=_options_dict(options),
    )


def _analyze(conn: sa.Connection) -> None:
    """Fresh planner statistics, as a live database has (bulk loads leave none)."""
    dialects.for_connection(conn).analyze_database(conn)
    conn.commit()


def _options_dict(options: SimulationOptions) -> dict:
    data = asdict(options)
    data["start"] = options.start.isoformat()
    if options.rates == Rates():
        del data["rates"]  # the defaults go unsaid, as in --json and simulation_meta
    return data
