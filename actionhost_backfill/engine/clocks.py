"""Read from the cell what :mod:`actionhost_backfill.inference.skew` judges clock skew by.

This module touches the database (the judgement itself is pure): per month,
the actions with events and those whose first event started before them,
live and archived; the migration rows of the evidence snapshot and the moves
that may have created them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa

from actionhost_backfill.inference import roles, skew
from actionhost_backfill.nova.tables import nova


def _actions_with_events(present: set[str]):
    """The (actions, events) table pairs, live then archived, whose both tables exist."""
    for actions_name, events_name in (
        ("instance_actions", "instance_actions_events"),
        ("shadow_instance_actions", "shadow_instance_actions_events"),
    ):
        if actions_name in present and events_name in present:
            yield nova(actions_name), nova(events_name)


def measure(
    conn: sa.Connection, present: set[str], migrations: sa.Table | None = None
) -> skew.SkewReport:
    """Per month of the actions' ``start_time``: the actions with events, how long
    before its action each early first event started (live and archived), and,
    given the snapshot's migration rows, how long before its move each early row
    was created."""
    report = skew.SkewReport()
    if migrations is not None:
        _measure_rows(conn, present, migrations, report)
    for a, e in _actions_with_events(present):
        first = (
            sa.select(e.c.action_id, sa.func.min(e.c.start_time).label("first"))
            .where(e.c.start_time.is_not(None), ~e.c.event.startswith("api_", autoescape=True))
            .group_by(e.c.action_id)
            .subquery()
        )
        year = sa.extract("year", a.c.start_time)
        month = sa.extract("month", a.c.start_time)
        for y, m, count in conn.execute(
            sa.select(year, month, sa.func.count())
            .select_from(a.join(first, first.c.action_id == a.c.id))
            .where(a.c.start_time.is_not(None))
            .group_by(year, month)
        ):
            key = f"{int(y):04d}-{int(m):02d}"
            report.checked[key] = report.checked.get(key, 0) + int(count)
        for start, began in conn.execute(
            sa.select(a.c.start_time, first.c.first)
            .select_from(a.join(first, first.c.action_id == a.c.id))
            .where(a.c.start_time.is_not(None), first.c.first < a.c.start_time)
        ):
            if isinstance(start, datetime) and isinstance(began, datetime):
                skew.record_early_event(report, start, began)
    return report


def _measure_rows(
    conn: sa.Connection, present: set[str], migrations: sa.Table, report: skew.SkewReport
) -> None:
    """The migration rows and the moves that may have made them, judged by
    :func:`~actionhost_backfill.inference.skew.record_early_rows`."""
    rows: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    m = migrations
    for uuid, created, kind, old, new in conn.execute(
        sa.select(
            m.c.instance_uuid,
            m.c.created_at,
            m.c.migration_type,
            m.c.old_instance_type_id,
            m.c.new_instance_type_id,
        ).where(m.c.created_at.is_not(None))
    ):
        rows[uuid].append((created, roles.family_of_row(roles.migration_type(kind, old, new))))
    if not rows:
        return
    creators = sorted({name for names in roles.ROW_CREATORS.values() for name in names})
    moves: dict[str, list[tuple[datetime, str, datetime | None]]] = defaultdict(list)
    for a, e in _actions_with_events(present):
        ended = (
            sa.select(
                e.c.action_id,
                sa.func.max(e.c.start_time).label("started"),
                sa.func.max(e.c.finish_time).label("finished"),
            )
            .group_by(e.c.action_id)
            .subquery()
        )
        for uuid, name, start, started, finished in conn.execute(
            sa.select(
                a.c.instance_uuid, a.c.action, a.c.start_time, ended.c.started, ended.c.finished
            )
            .select_from(a.outerjoin(ended, ended.c.action_id == a.c.id))
            .where(a.c.action.in_(creators), a.c.start_time.is_not(None))
        ):
            if uuid in rows:
                ends = [t for t in (started, finished) if t is not None]
                moves[uuid].append((start, name, max(ends) if ends else None))
    skew.record_early_rows(report, rows, moves)
