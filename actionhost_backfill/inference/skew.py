"""How far nova-api's clock ran ahead of the conductors', measured from the cell.

Nova stamps an action's ``start_time`` with the request context's timestamp,
taken in nova-api when the request arrived (``pack_action_start`` ->
``context.timestamp``, ``RequestContext.__init__`` -> ``timeutils.utcnow()``;
read at 2015.1.0 ... 18.0.0 ``nova/objects/instance_action.py`` and
``nova/context.py``).  Events are stamped by whoever runs the remotable
``action_event_start`` / ``action_event_finish`` (``pack_action_event_start``
-> ``timeutils.utcnow()``): the conductor that serves the compute's RPC;
faults (``InstanceFault.create``, remotable) and migration rows
(``Migration.create``, ``TimestampMixin``'s ``utcnow`` default) likewise, except
Liberty+ evacuation rows, created in nova-api by ``API.evacuate``.

An event never starts before the request that caused it.  So an action whose
first event starts *before* the action's ``start_time`` shows nova-api's
clock ahead of the conductor's by at least that much.  Per calendar month the
largest such gap is kept (``ClockSkew.ahead``); every time-based match of a row
to an action then uses at least that margin (``KnownHosts.margin``), and two
neighbouring actions that both could own a row own it only when the events
decide (``steps.link_rows``).

A clock *behind* nova-api's cannot be measured this way (events then start
later after their request than usual, which latency does too); it moves rows
later relative to their actions, away from the next request, which the
matching tolerates (docs/accuracy.md, clocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from actionhost_backfill.inference.model import ClockSkew, month_of
from actionhost_backfill.nova.tables import nova

#: Gaps smaller than this are whole-second rounding, not skew.
ROUNDING = 1.0


@dataclass
class SkewReport:
    """What the measurement saw: per month, actions checked and those whose events began early."""

    checked: dict[str, int] = field(default_factory=dict)
    early: dict[str, list[float]] = field(default_factory=dict)

    @property
    def skew(self) -> ClockSkew:
        return ClockSkew(
            {
                month: max(gaps)
                for month, gaps in self.early.items()
                if gaps and max(gaps) >= ROUNDING
            }
        )

    def to_dict(self) -> dict:
        months = []
        for month in sorted(self.checked):
            gaps = sorted(self.early.get(month, []))
            months.append(
                {
                    "month": month,
                    "actions": self.checked[month],
                    "events_before_action": len(gaps),
                    "median_seconds": gaps[len(gaps) // 2] if gaps else 0.0,
                    "max_seconds": gaps[-1] if gaps else 0.0,
                }
            )
        worst = max((m["max_seconds"] for m in months), default=0.0)
        return {
            "api_ahead_max_seconds": worst,
            "margin_seconds": self.skew.margin(None).total_seconds(),
            "months_with_skew": [m for m in months if m["max_seconds"] >= ROUNDING],
            "months": len(months),
        }

    def summary(self) -> str:
        data = self.to_dict()
        skewed = data["months_with_skew"]
        if not skewed:
            return (
                "clocks: no event starts before its own action (nova-api not ahead of the "
                f"conductors); time matching uses {data['margin_seconds']:.0f} s"
            )
        early = sum(m["events_before_action"] for m in skewed)
        return (
            f"clocks: nova-api ahead of the conductors by up to {data['api_ahead_max_seconds']:.0f} s "
            f"in {len(skewed)} of {data['months']} months ({early} actions whose first event "
            f"started before them); time matching uses up to {data['margin_seconds']:.0f} s "
            "there, and a row two neighbouring actions could own is left to the events or NULL"
        )


def _seconds(delta) -> float:
    return delta.total_seconds()


def measure(conn: sa.Connection, present: set[str]) -> SkewReport:
    """Per month of the actions' ``start_time``: the actions with events, and how
    long before its action each early first event started (live and archived)."""
    report = SkewReport()
    for actions_name, events_name in (
        ("instance_actions", "instance_actions_events"),
        ("shadow_instance_actions", "shadow_instance_actions_events"),
    ):
        if actions_name not in present or events_name not in present:
            continue
        a, e = nova(actions_name), nova(events_name)
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
                report.early.setdefault(month_of(start), []).append(_seconds(start - began))
    return report
