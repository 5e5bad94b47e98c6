"""Read from the cell what :mod:`actionhost_backfill.inference.skew` judges clock skew by.

This module touches the database (the judgement itself is pure): per month,
the actions with events and those whose first event started before them,
live and archived; the migration rows of the evidence snapshot and the moves
that may have created them.  Each events table is read once, aggregated per
action on the server.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa

from actionhost_backfill.engine.temp_tables import TemporaryTables
from actionhost_backfill.inference import roles, skew
from actionhost_backfill.nova.tables import EVENTS, column_type, columns_of, nova


def _actions_with_events(present: set[str]):
    """The (actions, events) table pairs, live then archived, whose both tables exist."""
    for actions_name, events_name in (
        ("instance_actions", "instance_actions_events"),
        ("shadow_instance_actions", "shadow_instance_actions_events"),
    ):
        if actions_name in present and events_name in present:
            yield nova(actions_name), nova(events_name)


def measure(temps: TemporaryTables, present: set[str], migrations: sa.Table) -> skew.SkewReport:
    """Per month of the actions' ``start_time``: the actions with events, how long
    before its action each early first event started (live and archived), and how
    long before its move each early row of ``migrations`` (the snapshot's copy)
    was created.

    Each events table is aggregated once per action into a temporary table
    (:data:`TIMES`) that every one of these questions reads (where the snapshot
    copies through the client, each reads the aggregate as a subquery)."""
    conn = temps.conn
    report = skew.SkewReport()
    pairs = []
    try:
        for n, (a, e) in enumerate(_actions_with_events(present)):
            pairs.append((a, _action_times(temps, e, f"{TIMES}{n}")))
        for a, times in pairs:
            _measure_events(conn, a, times, report)
        _measure_rows(conn, pairs, migrations, report, temps)
    finally:
        for _, times in pairs:
            if isinstance(times, sa.Table):
                temps.drop_temp(times.name)
    return report


#: Per action, when its first non-API event started and when its last event
#: started and finished: one per (actions, events) pair, numbered (temporary,
#: on the snapshot's connection).
TIMES = "ah_times"


def _action_times(temps: TemporaryTables, e: sa.Table, name: str) -> sa.Table | sa.Subquery:
    """The events of ``e`` aggregated per action: into the temporary table ``name``,
    or, where the snapshot copies through the client, as a subquery (the copy
    would bring a row per action through the client; each question then
    aggregates on the server, as many times as it is asked)."""
    # The first event nova-api did not stamp itself: the conductor's clock.
    conductors = sa.and_(
        e.c.start_time.is_not(None), ~e.c.event.startswith("api_", autoescape=True)
    )
    select = sa.select(
        e.c.action_id,
        sa.func.min(sa.case((conductors, e.c.start_time))).label("first"),
        sa.func.max(e.c.start_time).label("started"),
        sa.func.max(e.c.finish_time).label("finished"),
    ).group_by(e.c.action_id)
    if temps.copy_through_client:
        return select.subquery()
    if name not in temps.metadata.tables:
        sa.Table(
            name,
            temps.metadata,
            *columns_of(EVENTS, "action_id"),
            sa.Column("first", column_type(EVENTS, "start_time")),
            sa.Column("started", column_type(EVENTS, "start_time")),
            sa.Column("finished", column_type(EVENTS, "finish_time")),
        )
    temps.create_temp(name, select, ["action_id"])
    return temps.metadata.tables[name]


def _measure_events(
    conn: sa.Connection, a: sa.Table, times: sa.Table | sa.Subquery, report: skew.SkewReport
) -> None:
    """The actions of ``a`` with a conductor-stamped event, per month, and those whose
    first such event started before the action."""
    joined = a.join(times, times.c.action_id == a.c.id)
    year = sa.extract("year", a.c.start_time)
    month = sa.extract("month", a.c.start_time)
    for y, m, count in conn.execute(
        sa.select(year, month, sa.func.count())
        .select_from(joined)
        .where(a.c.start_time.is_not(None), times.c.first.is_not(None))
        .group_by(year, month)
    ):
        key = f"{int(y):04d}-{int(m):02d}"
        report.checked[key] = report.checked.get(key, 0) + int(count)
    for start, began in conn.execute(
        sa.select(a.c.start_time, times.c.first)
        .select_from(joined)
        .where(a.c.start_time.is_not(None), times.c.first < a.c.start_time)
    ):
        if isinstance(start, datetime) and isinstance(began, datetime):
            skew.record_early_event(report, start, began)


#: Instances whose migration rows and moves are judged together: the client holds
#: one range of them at a time, never the cell's (1.1 M rows at 10 M events held
#: at once peaked the whole backfill at 611 MB).
RANGE_INSTANCES = 2_000

#: The row-creating moves of every instance: one row per action, with when its
#: last event started or finished (temporary, on the snapshot's connection).
MOVES = "ah_moves"


def _moves_table(temps: TemporaryTables) -> sa.Table:
    if MOVES not in temps.metadata.tables:
        sa.Table(
            MOVES,
            temps.metadata,
            *columns_of("instance_actions", "instance_uuid", "action", "start_time"),
            # When its last event started and finished (Nova's event times).
            sa.Column("started", column_type("instance_actions_events", "start_time")),
            sa.Column("finished", column_type("instance_actions_events", "finish_time")),
        )
    return temps.metadata.tables[MOVES]


def _measure_rows(
    conn: sa.Connection,
    pairs: list[tuple[sa.Table, sa.Table | sa.Subquery]],
    migrations: sa.Table,
    report: skew.SkewReport,
    temps: TemporaryTables,
) -> None:
    """The migration rows and the moves that may have made them, judged by
    :func:`~actionhost_backfill.inference.skew.record_early_rows`, a range of
    instances at a time: the moves are gathered once on the server (indexed by
    instance), the rows read from the snapshot's copy (indexed likewise)."""
    m = migrations
    owners = [
        r[0]
        for r in conn.execute(
            sa.select(m.c.instance_uuid)
            .where(m.c.created_at.is_not(None), m.c.instance_uuid.is_not(None))
            .distinct()
            .order_by(m.c.instance_uuid)
        )
    ]
    if not owners:
        return  # no migration row to judge: the moves need not be gathered
    creators = sorted({name for names in roles.ROW_CREATORS.values() for name in names})
    parts = [
        sa.select(a.c.instance_uuid, a.c.action, a.c.start_time, times.c.started, times.c.finished)
        .select_from(a.outerjoin(times, times.c.action_id == a.c.id))
        .where(a.c.action.in_(creators), a.c.start_time.is_not(None))
        for a, times in pairs
    ]
    if not parts:
        return  # no move has events to judge a row by
    moves = _moves_table(temps)
    temps.create_temp(
        MOVES, parts[0] if len(parts) == 1 else sa.union_all(*parts), ["instance_uuid"]
    )
    try:
        for i in range(0, len(owners), RANGE_INSTANCES):
            lo, hi = owners[i], owners[min(i + RANGE_INSTANCES, len(owners)) - 1]
            rows: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
            for uuid, created, kind, old, new in conn.execute(
                sa.select(
                    m.c.instance_uuid,
                    m.c.created_at,
                    m.c.migration_type,
                    m.c.old_instance_type_id,
                    m.c.new_instance_type_id,
                ).where(m.c.created_at.is_not(None), m.c.instance_uuid.between(lo, hi))
            ):
                rows[uuid].append(
                    (created, roles.family_of_row(roles.migration_type(kind, old, new)))
                )
            made: dict[str, list[tuple[datetime, str, datetime | None]]] = defaultdict(list)
            for uuid, name, start, started, finished in conn.execute(
                sa.select(
                    moves.c.instance_uuid,
                    moves.c.action,
                    moves.c.start_time,
                    moves.c.started,
                    moves.c.finished,
                ).where(moves.c.instance_uuid.between(lo, hi))
            ):
                if uuid in rows:
                    ends = [t for t in (started, finished) if t is not None]
                    made[uuid].append((start, name, max(ends) if ends else None))
            skew.record_early_rows(report, rows, made)
    finally:
        temps.drop_temp(MOVES)
