"""When the interpreter collects cyclic garbage during a run: between batches, never in one.

Python's cyclic collector runs whenever allocations pass its thresholds,
wherever the program happens to be.  The planner decides chunks of tens of
thousands of events whose rows, histories and timelines live long enough to be
promoted to the oldest generation, so the collector kept running *full*
collections, each walking every object alive.  On PostgreSQL at 1 M events
(``docs/benchmarks.md``) that was 54 full collections, 12.6 s of a 48.8 s run,
up to 0.44 s each; and a collection holds the interpreter, so a batch whose
statement had just returned kept its row locks for as long (batch p99 415 ms;
125 ms with the collector off).

The collector finds nothing to free in a run: its objects are freed by
reference counting (with the collector off the run peaked at the same RSS,
302 MB).  So while a run is active automatic collection is off, the objects
that exist when it starts (modules, metadata) are frozen out of every later
collection, and a collection happens only where :func:`between_batches` is
called: by the applier after a batch commits (it holds no lock then), by the
planner between chunks when it plans alone, and by worker processes between
chunks, at most every :data:`COLLECT_SECONDS`.  Garbage that does form a cycle
(a library's, a traceback's) is freed there, so memory stays bounded.

Runs may nest or overlap (``--all-cells --parallel-cells``, threads of one
process): the first to start turns the automatic collector off, the last to end
restores it as it found it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

#: The longest a run goes without collecting cyclic garbage (between batches).
COLLECT_SECONDS = 5.0

_lock = threading.Lock()
_active = 0
_was_enabled = True
_last = 0.0


@contextlib.contextmanager
def collect_between_batches() -> Iterator[None]:
    """Within: no automatic collection; :func:`between_batches` collects instead."""
    global _active, _was_enabled, _last
    with _lock:
        if _active == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
            gc.collect()
            gc.freeze()
            _last = time.monotonic()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                gc.unfreeze()
                if _was_enabled:
                    gc.enable()


def between_batches() -> bool:
    """Called where no lock is held: collect when :data:`COLLECT_SECONDS` have passed
    since the last collection of the run.  True when it collected."""
    global _last
    if not _active or time.monotonic() - _last < COLLECT_SECONDS:
        return False
    with _lock:
        if not _active or time.monotonic() - _last < COLLECT_SECONDS:
            return False
        gc.collect()
        _last = time.monotonic()
    return True
