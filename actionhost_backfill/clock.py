"""Naive UTC timestamps, as Nova stores them and the state tables keep them."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Now in UTC without a zone (``datetime.utcnow()`` is deprecated since Python 3.12)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
