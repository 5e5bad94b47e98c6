"""Progress bars on stderr (tqdm), off when stderr is not a terminal or on request."""

from __future__ import annotations

import sys
from typing import Protocol

from tqdm import tqdm


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


def show_reason(bar: Progress):
    """A callback that shows why the run waits (``None`` clears it) after the bar's figures."""

    def show(reason: str | None) -> None:
        bar.set_postfix_str(reason or "", refresh=True)

    return show
