"""Injected time (STYLE.md §2): policy code takes `now_s` as an argument; processes own a Clock.

`VirtualClock` is advanced by the simulator; the monotonic wall clock lives in `serve`, outside
the pure packages.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def now_s(self) -> float:
        """Seconds since an arbitrary epoch; never goes backwards."""
        ...


class VirtualClock:
    """A clock that only moves when told to (simulator, tests)."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s

    def now_s(self) -> float:
        return self._now_s

    def advance_to(self, time_s: float) -> None:
        if time_s < self._now_s:
            raise ValueError(f"time cannot go backwards: {time_s} < {self._now_s}")
        self._now_s = time_s
