"""Settings shared by ``env.py`` and the revisions: which database, where state lives.

The CLI builds a :class:`SchemaSettings` and hands it to Alembic through
``config.attributes``; stock ``alembic`` commands build one from ``-x``
arguments (``-x db=URL -x state_schema=NAME -x lock_timeout=SECONDS
-x discard_audit=true``) or the
``ACTIONHOST_DB_URL`` / ``ACTIONHOST_STATE_SCHEMA`` environment variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sqlalchemy.engine import URL

from actionhost_backfill.db import parse_url
from actionhost_backfill.dialects import Dialect
from actionhost_backfill.errors import BadInput
from actionhost_backfill.state.location import StateLocation, resolve_state_location

SETTINGS_KEY = "actionhost.settings"
DEFAULT_LOCK_TIMEOUT = 5.0


@dataclass
class SchemaSettings:
    url: URL
    location: StateLocation
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    """Seconds DDL may wait for a table lock before giving up (never queue forever)."""
    report: list[str] = field(default_factory=list)
    """What the revisions did, one line each, for the CLI to print."""
    from_cli: bool = False
    reensure: str | None = None
    """``schema upgrade --to X``: run again, after the upgrade, every revision up to X
    that was applied before it.

    Every revision is an "ensure" step (inspect, then create only what is
    missing), so running it again converges a database that no longer matches
    its version table: a cell restored from a backup, or re-created, next to a
    state schema that outlived it.  Stock ``alembic upgrade`` follows the
    version table only (``-x reensure=true`` asks for the same).
    """
    discard_audit: bool = False
    """``schema downgrade --discard-audit`` (``-x discard_audit=true``): drop the state
    tables even though runs have hosts no revert has undone (never while a runner is alive)."""

    @property
    def dialect(self) -> Dialect:
        return self.location.dialect


def parse_lock_timeout(raw: str | float | None, option: str = "--lock-timeout") -> float:
    if raw is None or raw == "":
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadInput(f"{option} must be a number of seconds (got {raw!r})") from None
    if not 0 < value <= 3600:
        raise BadInput(f"{option} must be between 0 and 3600 seconds (got {raw})")
    return value


def settings_from_config(config, x_arguments: dict[str, str] | None = None) -> SchemaSettings:
    """The settings for this Alembic invocation (CLI-provided or from -x/env)."""
    existing = config.attributes.get(SETTINGS_KEY)
    if existing is not None:
        return existing
    x_arguments = x_arguments or {}
    raw = (
        x_arguments.get("db")
        or os.environ.get("ACTIONHOST_DB_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    url = parse_url(raw, option="-x db")
    location = resolve_state_location(
        url, x_arguments.get("state_schema") or os.environ.get("ACTIONHOST_STATE_SCHEMA") or None
    )
    settings = SchemaSettings(
        url=url,
        location=location,
        lock_timeout=parse_lock_timeout(
            x_arguments.get("lock_timeout") or os.environ.get("ACTIONHOST_LOCK_TIMEOUT"),
            option="-x lock_timeout",
        ),
    )
    if _flag(x_arguments.get("reensure")):
        settings.reensure = "head"
    settings.discard_audit = _flag(x_arguments.get("discard_audit"))
    config.attributes[SETTINGS_KEY] = settings
    return settings


def _flag(raw: str | None) -> bool:
    return str(raw or "").lower() in ("1", "true", "yes")


def current_settings() -> SchemaSettings:
    """The settings of the running migration (call from revision code only)."""
    from alembic import context

    return settings_from_config(context.config, context.get_x_argument(as_dictionary=True))
