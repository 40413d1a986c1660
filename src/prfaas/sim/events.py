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
from collections.abc import Callable
from typing import Any

from prfaas.core.clock import VirtualClock

Handler = Callable[[Any], None]


class EventPriority(enum.IntEnum):
    """Tie-break at one instant: lower runs first."""

    COMPLETION = 0  # prefill done, transfer done, decode batch member done
    SCRIPTED = 1  # link capacity change, node failure or recovery
    ARRIVAL = 2  # a request enters the system
    DISPATCH = 3  # routing decision (the policy is called here)
    CONTROL = 4  # long-term loop tick (rebalancer)
    SAMPLE = 5  # metric samples (role counts over time)


class EventLoop:
    """Deterministic discrete-event loop. `schedule` pushes, `run` pops until empty or `until_s`."""

    __slots__ = ("_heap", "_seq", "clock", "num_events")

    def __init__(self, start_s: float = 0.0) -> None:
        self.clock = VirtualClock(start_s)
        self._heap: list[tuple[float, int, int, Handler, Any]] = []
        self._seq = 0
        self.num_events = 0

    @property
    def now_s(self) -> float:
        return self.clock.now_s()

    @property
    def num_pending(self) -> int:
        return len(self._heap)

    def schedule(self, time_s: float, priority: EventPriority, handler: Handler, payload: Any = None) -> None:
        """Run `handler(payload)` at `time_s` (>= now). Ties: `priority`, then scheduling order."""
        now = self.clock.now_s()
        if time_s < now:
            if time_s < now - 1e-9:
                raise ValueError(f"cannot schedule in the past: {time_s} < {now}")
            time_s = now
        self._seq += 1
        heapq.heappush(self._heap, (time_s, int(priority), self._seq, handler, payload))

    def run(self, until_s: float | None = None) -> None:
        """Process events in key order; stop when the heap is empty or the next event is after `until_s`."""
        heap = self._heap
        clock = self.clock
        pop = heapq.heappop
        count = 0
        while heap:
            if until_s is not None and heap[0][0] > until_s:
                break
            time_s, _prio, _seq, handler, payload = pop(heap)
            clock.advance_to(time_s)
            count += 1
            handler(payload)
        self.num_events += count
        if until_s is not None and clock.now_s() < until_s:
            clock.advance_to(until_s)
