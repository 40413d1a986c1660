"""What a `sim.servers.PrefillServer` needs of its queue: the queue itself and, to preempt, the question it asks.

    server.set_queue(queue, preemption)     # e.g. one `sim.multisite_queue.FairPrefillQueue` as both

A plain `deque` is a `PrefillQueue` (FCFS, the default). A `Preemption` answers "should the running job yield to
the first queued job now?" from the policy's fair queue (`policy.fair_queue.FairQueue.preempts`); the server asks
it at every change of its queue or running job, and tells it when a request leaves (`forget`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from prfaas.sim.request import SimRequest


class PrefillQueue(Protocol):
    """A prefill server's waiting requests (a `deque`: FCFS; `sim.multisite_queue.FairPrefillQueue`: fair order)."""

    def append(self, req: SimRequest, /) -> None: ...
    def popleft(self) -> SimRequest: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[SimRequest]: ...
    def clear(self) -> None: ...


class Preemption(Protocol):
    """What a preempting server asks its queue (`sim.multisite_queue.FairPrefillQueue` with `preempt=True`)."""

    def should_yield(self, stack: Sequence[SimRequest]) -> bool:
        """Should the running job `stack[-1]` (it paused `stack[:-1]`, in pause order) yield to the first queued
        job now? Side-effect free."""
        ...

    def forget(self, req: SimRequest) -> None:
        """`req` left the server (its prefill ended or the server failed): drop what was kept about it."""
        ...
