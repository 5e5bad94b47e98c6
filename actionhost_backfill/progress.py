"""Progress bars on stderr (tqdm), off when stderr is not a terminal or on request."""

from __future__ import annotations

import sys
from typing import Protocol

from tqdm import tqdm


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def set_postfix_str(self, text: str) -> None: ...
    def close(self) -> None: ...


class Silent:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int | None, description: str, *, enabled: bool) -> Progress:
    """A tqdm bar with total, rate and ETA on stderr, or a silent stand-in."""
    if not enabled:
        return Silent()
    return tqdm(
        total=total,
        desc=description,
        unit="ev",
        unit_scale=True,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )
