"""Run a callback the first time the toolkit logs a given message: a test's way to act
at an exact point of a run (no sleeps standing in for synchronisation)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator


class _Once(logging.Handler):
    def __init__(self, prefix: str, callback: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.prefix = prefix
        self.callback = callback
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(self.prefix):
            self.seen.append(message)
            if len(self.seen) == 1:
                self.callback(message)


@contextlib.contextmanager
def when_logged(logger: str, prefix: str, callback: Callable[[str], None]) -> Iterator[list[str]]:
    """Yields the list of matching messages seen; ``callback`` runs on the first one."""
    handler = _Once(prefix, callback)
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.INFO)
    target.addHandler(handler)
    try:
        yield handler.seen
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
