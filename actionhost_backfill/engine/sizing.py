"""How big the next batch is, and how long to pause between batches.

By default the size follows the observed rate toward a target duration per
batch, as pt-online-schema-change's ``--chunk-time`` does: an exponentially
weighted rate, at most doubling or halving per step, within bounds.  The
default target (0.1 s) keeps the batch p99 well under 250 ms on the machines
in ``docs/benchmarks.md``: a row lock Nova meets waits at most that long.
``--batch-size`` fixes the size instead.
"""

from __future__ import annotations

import threading

MIN_BATCH = 10
MAX_BATCH = 100_000
#: Seconds a batch aims to take when no --batch-size is given.
DEFAULT_TARGET_SECONDS = 0.1
#: The first batch's size when the size follows the target.
FIRST_BATCH = 1000


class BatchSizer:
    """``fixed``: always that size; else sized toward ``target_seconds``."""

    def __init__(
        self,
        fixed: int | None = None,
        target_seconds: float | None = None,
        *,
        smoothing: float = 0.5,
    ):
        self.target = None if fixed else (target_seconds or DEFAULT_TARGET_SECONDS)
        self.size = max(1, min(MAX_BATCH, fixed)) if fixed else FIRST_BATCH
        self.smoothing = smoothing
        self.rate: float | None = None
        self.largest = MAX_BATCH

    def cap(self, largest: int) -> None:
        """Never exceed ``largest`` rows per batch (e.g. a Galera write-set limit)."""
        self.largest = max(1, largest)
        self.size = min(self.size, self.largest)

    def observe(self, rows: int, seconds: float) -> None:
        if not self.target or rows <= 0 or seconds <= 0:
            return
        rate = rows / seconds
        self.rate = (
            rate if self.rate is None else self.smoothing * rate + (1 - self.smoothing) * self.rate
        )
        wanted = int(self.rate * self.target)
        wanted = max(self.size // 2, min(self.size * 2, wanted))
        # The cap last: a Galera cap below MIN_BATCH (wsrep_max_ws_rows < 80) still holds.
        self.size = min(self.largest, max(MIN_BATCH, min(MAX_BATCH, wanted)))


def pause(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep ``seconds`` unless asked to stop; True when a stop was requested."""
    if seconds <= 0:
        return bool(stop and stop.is_set())
    if stop is None:
        threading.Event().wait(seconds)
        return False
    return stop.wait(seconds)
