"""What the CLI's log handler lets through to stderr."""

from __future__ import annotations

import logging

from actionhost_backfill.cli.app import QuietPoolResets


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_a_pool_reset_of_a_dropped_connection_is_not_printed():
    """The toolkit reports a lost connection in one line; the pool's traceback
    for the same dead connection would make it several."""
    quiet = QuietPoolResets()
    assert not quiet.filter(
        _record("sqlalchemy.pool.impl.NullPool", "Exception during reset or similar")
    )


def test_other_errors_are_printed():
    quiet = QuietPoolResets()
    assert quiet.filter(_record("sqlalchemy.pool.impl.NullPool", "Pool timeout"))
    assert quiet.filter(_record("actionhost_backfill.engine", "Exception during reset"))
