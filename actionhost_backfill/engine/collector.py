"""When the interpreter collects cyclic garbage during a run: between batches, not in one.

Python's cyclic collector runs whenever allocations pass its thresholds,
wherever the program happens to be.  The planner decides chunks of thousands
of events whose rows, histories and timelines live long enough to be promoted
to the oldest generation, so the collector kept running *full* collections,
each walking every object alive.  On PostgreSQL at 1 M events
(``docs/benchmarks.md``, "Garbage collection") that was 54 full collections,
12.6 s of a 48.8 s run, up to 0.44 s each; and a collection holds the
interpreter, so a batch whose statement had just returned kept its row locks
as long (batch p99 415 ms; 125 ms with the collector off).

The collector finds next to nothing to free in a run: its objects are freed by
reference counting (with the collector off the run peaked at the same RSS).
So while a run is active automatic collection is off, the objects that exist
when it starts (modules, metadata) are frozen out of every later collection,
and a collection happens only where :func:`between_batches` is called: by the
applier after a batch commits and while it waits for a throttle (it holds no
lock then), by the planner between chunks when it plans alone, and by worker
processes between chunks; at most once per :data:`COLLECT_SECONDS`.  Garbage
that does form a cycle (a library's, a traceback's) is freed there, so memory
stays bounded.

Runs may overlap in one process (``--all-cells --parallel-cells`` runs cells in
threads): the first to start turns automatic collection off, the last to end
turns it back on if it was on.  A collection waits while another run's batch
is open (:func:`in_batch`), for up to :data:`DEFER_SECONDS`, so one cell's
collection does not lengthen another's locks either.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

#: The shortest interval between two collections of a run.
COLLECT_SECONDS = 5.0
#: How long a due collection may wait for other runs' open batches to end.
DEFER_SECONDS = 20.0

_lock = threading.RLock()
_active = 0
_open_batches = 0
_was_enabled = True
_froze = False
_last = 0.0


@contextlib.contextmanager
def collect_between_batches() -> Iterator[None]:
    """Within: no automatic collection; :func:`between_batches` collects instead."""
    global _active, _was_enabled, _froze, _last
    with _lock:
        try:
            if _active == 0:
                _was_enabled = gc.isenabled()
                gc.disable()
                gc.collect()
                # Objects a host program froze on purpose stay as it left them.
                _froze = gc.get_freeze_count() == 0
                if _froze:
                    gc.freeze()
                _last = time.monotonic()
        finally:
            _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                if _froze:
                    gc.unfreeze()
                if _was_enabled:
                    gc.enable()


@contextlib.contextmanager
def in_batch() -> Iterator[None]:
    """Around a write transaction: no collection starts in another thread meanwhile
    (unless it has waited :data:`DEFER_SECONDS`)."""
    global _open_batches
    with _lock:
        _open_batches += 1
    try:
        yield
    finally:
        with _lock:
            _open_batches -= 1


def between_batches() -> bool:
    """Called where the caller holds no lock: collect when :data:`COLLECT_SECONDS`
    have passed since the run's last collection.  True when it collected."""
    global _last
    if not _active or time.monotonic() - _last < COLLECT_SECONDS:
        return False
    with _lock:
        since = time.monotonic() - _last
        if not _active or since < COLLECT_SECONDS:
            return False
        if _open_batches and since < DEFER_SECONDS:
            return False  # another run's batch is open: at its end, or the next call
        # Claimed before collecting: a finalizer the collection runs that comes
        # back here finds nothing due.
        _last = time.monotonic()
        gc.collect()
    return True
