"""The simulator's event loop: a hand-written `heapq` on a virtual clock (STACK.md §9, STYLE.md §2).

Heap key: `(time_s, priority, seq)`.

- `time_s`   virtual seconds; never goes backwards.
- `priority` an `EventPriority`: at one instant, completions run first (so a finished prefill frees its
             instance before anything looks at it), then scripted events (a link drop at T applies to
             decisions at T), then arrivals, then scheduling decisions (routing sees every completion and
             arrival of that instant), then the long-term control loop, then metric samples.
- `seq`      a counter: events of equal time and priority run in the order they were scheduled.

Same inputs and same seed therefore give the same event order. Cancellation is lazy: an owner that
reschedules (a link whose rates changed, a decode batch that changed) bumps its own version number and
ignores stale events, which keeps the heap free of deletions.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any], None]


class EventPriority(enum.IntEnum):
    """Tie-break at one instant: lower runs first."""

    COMPLETION = 0  # prefill done, transfer done, decode batch member done
    SCRIPTED = 1  # link capacity change, node failure or recovery
    ARRIVAL = 2  # a request enters the system
    DISPATCH = 3  # routing decision (the policy is called here)
    CONTROL = 4  # long-term loop tick (rebalancer)
    SAMPLE = 5  # metric samples (role counts over time)


class LoopClock:
    """The loop's virtual time as a `core.clock.Clock` (the loop keeps the time itself, in `now_s`)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop

    def now_s(self) -> float:
        return self._loop.now_s

    def advance_to(self, time_s: float) -> None:
        self._loop.advance_to(time_s)


class EventLoop:
    """Deterministic discrete-event loop. `schedule` pushes, `run` pops until empty or `until_s`.

    `now_s` is a plain attribute (read on every event by every handler; a property over a `VirtualClock`
    cost two Python calls per read); only the loop moves it forward.
    """

    __slots__ = ("_heap", "_seq", "clock", "now_s", "num_events")

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = start_s
        self.clock = LoopClock(self)
        self._heap: list[tuple[float, int, int, Handler, Any]] = []
        self._seq = 0
        self.num_events = 0

    @property
    def num_pending(self) -> int:
        return len(self._heap)

    def advance_to(self, time_s: float) -> None:
        if time_s < self.now_s:
            raise ValueError(f"time cannot go backwards: {time_s} < {self.now_s}")
        self.now_s = time_s

    def schedule(self, time_s: float, priority: EventPriority, handler: Handler, payload: Any = None) -> None:
        """Run `handler(payload)` at `time_s` (>= now). Ties: `priority`, then scheduling order."""
        now = self.now_s
        if time_s < now:
            if time_s < now - 1e-9:
                raise ValueError(f"cannot schedule in the past: {time_s} < {now}")
            time_s = now
        self._seq += 1
        heapq.heappush(self._heap, (time_s, int(priority), self._seq, handler, payload))

    def run(self, until_s: float | None = None) -> None:
        """Process events in key order; stop when the heap is empty or the next event is after `until_s`."""
        heap = self._heap
        pop = heapq.heappop
        limit = until_s if until_s is not None else math.inf
        count = 0
        try:
            while heap and heap[0][0] <= limit:
                time_s, _prio, _seq, handler, payload = pop(heap)
                if time_s < self.now_s:
                    raise ValueError(f"time cannot go backwards: {time_s} < {self.now_s}")
                self.now_s = time_s
                count += 1
                handler(payload)
        finally:
            self.num_events += count
        if until_s is not None and self.now_s < until_s:
            self.now_s = until_s
