"""How far nova-api's clock ran ahead of the conductors', judged from the cell's rows
(read by :mod:`actionhost_backfill.engine.clocks`).

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
clock ahead of the conductor's by at least that much.  Likewise a migration
row created before the move that made it: a row no earlier move can own
(that move's events had all ended before it) belongs to the next move of its
family, so a row stamped before that move's ``start_time`` shows the same.
Per calendar month the largest gap of either kind is kept (``ClockSkew.ahead``); every time-based match of a row
to an action then uses at least that margin (``KnownHosts.margin``), and two
neighbouring actions that both could own a row own it only when the events
decide (``steps.link_rows``).

A clock *behind* nova-api's cannot be measured this way (events then start
later after their request than usual, which latency does too); it moves rows
later relative to their actions, away from the next request, which the
matching tolerates (docs/accuracy.md, clocks).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from actionhost_backfill.inference import roles
from actionhost_backfill.inference.model import BOUNDARY_SLACK, ClockSkew, month_of

#: Gaps smaller than this are whole-second rounding, not skew.
ROUNDING = 1.0
#: A row more than this before the next move's request is no evidence of skew.
ROW_WINDOW = timedelta(minutes=10)


@dataclass
class SkewReport:
    """What the measurement saw: per month, actions checked and those whose events began early."""

    checked: dict[str, int] = field(default_factory=dict)
    early: dict[str, list[float]] = field(default_factory=dict)
    """Per month: how long before its action each early first event started."""
    early_rows: dict[str, list[float]] = field(default_factory=dict)
    """Per month: how long before the move that made it each early row was created."""

    @property
    def skew(self) -> ClockSkew:
        ahead: dict[str, float] = {}
        for found in (self.early, self.early_rows):
            for month, gaps in found.items():
                if gaps and max(gaps) >= ROUNDING:
                    ahead[month] = max(ahead.get(month, 0.0), max(gaps))
        return ClockSkew(ahead)

    def to_dict(self) -> dict:
        months = []
        for month in sorted(set(self.checked) | set(self.early_rows)):
            gaps = sorted(self.early.get(month, []))
            rows = sorted(self.early_rows.get(month, []))
            months.append(
                {
                    "month": month,
                    "actions": self.checked.get(month, 0),
                    "events_before_action": len(gaps),
                    "median_seconds": gaps[len(gaps) // 2] if gaps else 0.0,
                    "rows_before_action": len(rows),
                    "rows_median_seconds": rows[len(rows) // 2] if rows else 0.0,
                    "max_seconds": max(gaps[-1] if gaps else 0.0, rows[-1] if rows else 0.0),
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
        rows = sum(m["rows_before_action"] for m in skewed)
        return (
            f"clocks: nova-api ahead of the conductors by up to {data['api_ahead_max_seconds']:.0f} s "
            f"in {len(skewed)} of {data['months']} months ({early} actions whose first event "
            f"started before them, {rows} migration rows created before their move); time "
            f"matching uses up to {data['margin_seconds']:.0f} s there, and a row two "
            "neighbouring actions could own is left to the events or NULL"
        )


def _seconds(delta) -> float:
    return delta.total_seconds()


def record_early_event(report: SkewReport, start: datetime, began: datetime) -> None:
    """An action whose first (non-API) event ``began`` before its ``start``."""
    report.early.setdefault(month_of(start), []).append(_seconds(start - began))


def record_early_rows(
    report: SkewReport,
    rows: dict[str, list[tuple[datetime, str]]],
    moves: dict[str, list[tuple[datetime, str, datetime | None]]],
) -> None:
    """Rows created before the move that made it.

    ``rows``: per instance, each migration row's ``created_at`` and its family
    (``roles.family_of_row``); ``moves``: per instance, each row-creating
    action's ``start_time``, name and when its last event started or finished.

    A row is its move's, created during it.  One created after the previous
    move of its family had ended (all its events more than ``BOUNDARY_SLACK``
    before) and before the next one's ``start_time`` can only be the next
    one's: the gap is nova-api's lead.  Rows with no earlier move, or whose
    earlier move has no events, or more than ``ROW_WINDOW`` early, say nothing.
    """
    for uuid, found in rows.items():
        by_family: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
        for start, name, end in sorted(moves.get(uuid, [])):
            for family, names in roles.ROW_CREATORS.items():
                if name in names:
                    by_family[family].append((start, end))
        for created, family in found:
            family_moves = by_family.get(family, [])
            starts = [start for start, _ in family_moves]
            after = bisect.bisect_right(starts, created)
            if after == 0 or after == len(family_moves):
                continue
            _, earlier_end = family_moves[after - 1]
            upcoming = family_moves[after][0]
            if earlier_end is None or earlier_end + BOUNDARY_SLACK >= created:
                continue
            if upcoming - created > ROW_WINDOW:
                continue
            report.early_rows.setdefault(month_of(upcoming), []).append(
                (upcoming - created).total_seconds()
            )
