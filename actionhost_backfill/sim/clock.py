"""Timestamps as Nova stores them: naive UTC, whole seconds."""

from __future__ import annotations

from datetime import datetime, timedelta

DAY = 86400
EPOCH = datetime(1970, 1, 1)


def epoch_seconds(moment: datetime) -> int:
    """Naive datetimes are UTC, as Nova stores them (no local time, no DST jumps)."""
    return int((moment - EPOCH).total_seconds())


_DAYS: dict[int, datetime] = {}
_SECONDS = [timedelta(seconds=s) for s in range(DAY)]


def db_time(epoch: int) -> datetime:
    """Whole seconds, as MySQL's DATETIME keeps them."""
    day, second = divmod(epoch, DAY)
    midnight = _DAYS.get(day)
    if midnight is None:
        midnight = _DAYS[day] = EPOCH + timedelta(days=day)
    return midnight + _SECONDS[second]
