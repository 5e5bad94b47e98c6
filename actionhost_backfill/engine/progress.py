"""Progress on stderr: a tqdm bar on a terminal, a plain line every N seconds without one.

Without a terminal (cron, ``| tee``, nohup, Ansible) a bar is noise, and no
output at all leaves the operator blind for hours: like
pt-online-schema-change's ``--progress time,30`` and gh-ost's status lines,
:class:`PlainProgress` prints one line every ``interval`` seconds (from its
own timer thread, so a run held by a pause file or a lagging replica still
reports, with the reason it waits): rows done of the total, rate, ETA and the
throttle state.  ``--no-progress`` silences both; ``--json`` output on stdout
is never touched.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

from tqdm import tqdm

#: Seconds between two progress lines when stderr is not a terminal (--progress-interval).
DEFAULT_INTERVAL = 30.0


class Progress(Protocol):
    def update(self, n: int) -> object: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...
    def close(self) -> None: ...


def bar(total: int | None, description: str, *, enabled: bool) -> Progress:
    """A tqdm bar with total, rate and ETA on stderr (``enabled=False``: draws nothing)."""
    return tqdm(
        total=total,
        desc=description,
        unit="ev",
        unit_scale=True,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
        disable=not enabled,
    )


def silent() -> Progress:
    return bar(None, "", enabled=False)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class PlainProgress:
    """One line every ``interval`` seconds on ``write`` (stderr), from a timer thread:
    ``run 5: 1,200/5,000 events (24%), 350 ev/s, ETA 11s; running``."""

    def __init__(
        self,
        total: int | None,
        description: str,
        *,
        interval: float,
        write: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = total
        self.description = description
        self.interval = interval
        self.write = write
        self.clock = clock
        self.done = 0
        self.state = ""
        self.started = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="actionhost-progress", daemon=True)
        self._thread.start()

    def update(self, n: int) -> None:
        self.done += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.state = s

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            figures = f"{self.done:,}/{self.total:,} events ({100 * self.done / self.total:.0f}%)"
        else:
            figures = f"{self.done:,} events"
        figures += f", {rate:,.0f} ev/s"
        if self.total and rate > 0:
            figures += f", ETA {_duration(max(0, self.total - self.done) / rate)}"
        elif self.total:
            figures += ", ETA unknown"
        figures += f", elapsed {_duration(elapsed)}"
        return f"{self.description}: {figures}; {self.state or 'running'}"

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write(self.line())
            except Exception:  # a closed stderr must not kill the run
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)


def show_reason(bar: Progress):
    """A callback that shows why the run waits (``None`` clears it) after the bar's figures."""

    def show(reason: str | None) -> None:
        bar.set_postfix_str(reason or "", refresh=True)

    return show
