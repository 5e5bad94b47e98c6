"""How big the next batch is, and how long to pause between batches.

A fixed ``--batch-size`` by default.  With ``--target-batch-seconds`` the size
follows the observed rate toward that duration, as pt-online-schema-change's
``--chunk-time`` does: an exponentially weighted rate, at most doubling or
halving per step, within bounds.
"""

from __future__ import annotations

import threading

MIN_BATCH = 10
MAX_BATCH = 100_000


class BatchSizer:
    def __init__(
        self, initial: int, target_seconds: float | None = None, *, smoothing: float = 0.5
    ):
        self.size = max(MIN_BATCH if target_seconds else 1, min(MAX_BATCH, initial))
        self.target = target_seconds
        self.smoothing = smoothing
        self.rate: float | None = None

    def observe(self, rows: int, seconds: float) -> None:
        if not self.target or rows <= 0 or seconds <= 0:
            return
        rate = rows / seconds
        self.rate = (
            rate if self.rate is None else self.smoothing * rate + (1 - self.smoothing) * self.rate
        )
        wanted = int(self.rate * self.target)
        wanted = max(self.size // 2, min(self.size * 2, wanted))
        self.size = max(MIN_BATCH, min(MAX_BATCH, wanted))


def pause(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep ``seconds`` unless asked to stop; True when a stop was requested."""
    if seconds <= 0:
        return bool(stop and stop.is_set())
    if stop is None:
        threading.Event().wait(seconds)
        return False
    return stop.wait(seconds)
