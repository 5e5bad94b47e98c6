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
        self.size = max(MIN_BATCH, min(MAX_BATCH, self.largest, wanted))


def pause(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep ``seconds`` unless asked to stop; True when a stop was requested."""
    if seconds <= 0:
        return bool(stop and stop.is_set())
    if stop is None:
        threading.Event().wait(seconds)
        return False
    return stop.wait(seconds)


#: Rows a batch writes per event, at most: the event's host and its audit row.
ROWS_PER_EVENT = 2
#: Bytes a batch may add to a write set per event: the row images of a
#: instance_actions_events row (traceback included, up to 64 KiB) and its audit row.
BYTES_PER_EVENT = 66_000


def galera_cap(variables: dict[str, str]) -> int | None:
    """The largest batch that stays well inside Galera's write-set limits.

    ``variables``: the server's ``wsrep_%`` variables.  None when this is not
    a Galera node (``wsrep_on`` OFF or missing) or nothing limits the batch.
    A quarter of each limit is used, leaving room for Nova's own writes.
    """
    if str(variables.get("wsrep_on", "OFF")).upper() != "ON":
        return None
    caps = []
    rows = int(variables.get("wsrep_max_ws_rows") or 0)
    if rows > 0:
        caps.append(rows // (4 * ROWS_PER_EVENT))
    size = int(variables.get("wsrep_max_ws_size") or 0)
    if size > 0:
        caps.append(size // (4 * BYTES_PER_EVENT))
    return max(1, min(caps)) if caps else None
