"""Fair order at the PrfaaS clusters of the multi-site simulator (`sim.multisite`), two ways.

- `SiteQueue` (`prefill_queue = "cluster"`, the default): one `policy.fair_queue.FairQueue` per PrfaaS cluster,
  as at the live cluster's dispatch. An offloaded request waits in its cluster's queue (not at the instance
  the router named) and starts on the first instance of the cluster that is free, in start-time fair order
  over regions (cost = the prefill's seconds, weights = the site selector's). An instance failure loses
  only its running prefill; when the last instance of the cluster is down, the queued requests are
  re-dispatched.
- `FairPrefillQueue` (`prefill_queue = "node"`): each instance's own FCFS queue replaced by a FairQueue, so
  the router's instance choice stands (as in the two-cluster simulator). With one region it is FIFO: a 1x1
  topology then gives exactly the two-cluster simulator's records. With `preempt=True` (the simulator's
  `preempt_prefill`, as the live node's `[policy] prefill_preemption`) it is also the server's `Preemption`: it
  keeps the region and virtual finish tag of every job it started (until the server `forget`s it) and answers
  `should_yield(stack)` with `FairQueue.preempts(regions of the stack, finish tag and cost of its top)`, below
  `MAX_NESTED_JOBS` stacked jobs. A region never preempts itself, so with one region nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prfaas.policy.fair_queue import MAX_NESTED_JOBS, FairQueue
from prfaas.sim.request import SimRequest


def _positive(weights: Mapping[str, float] | None) -> dict[str, float]:
    return {r: w for r, w in (weights or {}).items() if w > 0}


class SiteQueue:
    """The queued (not started) offloads of one PrfaaS cluster, in weighted fair order over regions
    (`fair_order=False`: first come, first served, the ablation)."""

    __slots__ = ("_by_region", "_items", "cost_s_of", "fair", "fair_order", "region_of")

    def __init__(self, region_of: Callable[[SimRequest], str], cost_s_of: Callable[[SimRequest], float],
                 weights: Mapping[str, float] | None = None, *, fair_order: bool = True) -> None:
        self.fair: FairQueue[SimRequest] = FairQueue(_positive(weights))
        self.fair_order = fair_order
        self.region_of = region_of
        self.cost_s_of = cost_s_of
        self._items: dict[int, tuple[SimRequest, str, float]] = {}
        self._by_region: dict[str, float] = {}

    def push(self, req: SimRequest) -> None:
        region, cost_s = self.region_of(req), self.cost_s_of(req)
        self.fair.push(req, region if self.fair_order else "*", cost_s)
        self._items[req.request_id] = (req, region, cost_s)
        self._by_region[region] = self._by_region.get(region, 0.0) + cost_s

    def pop(self) -> SimRequest:
        req, _ = self.fair.pop()
        _, region, cost_s = self._items.pop(req.request_id)
        self._by_region[region] = max(self._by_region[region] - cost_s, 0.0)
        return req

    def drain(self) -> list[SimRequest]:
        """Everything queued, in arrival-at-the-queue order; the queue is empty afterwards."""
        out = [item[0] for item in self._items.values()]
        self.fair.remove(lambda _: True)
        self._items.clear()
        self._by_region.clear()
        return out

    def queued_s_by_region(self) -> dict[str, float]:
        """Queued prefill seconds per region (what fair-share admission reads)."""
        return {r: s for r, s in self._by_region.items() if s > 0}

    def __len__(self) -> int:
        return len(self._items)


class FairPrefillQueue:
    """A `PrefillServer.queue` (append / popleft / len / iter / clear) that starts work in `FairQueue` order;
    with `preempt`, also its `Preemption` (module docstring)."""

    __slots__ = ("_items", "_started", "cost_s_of", "fair", "load_of", "preempt", "region_of")

    def __init__(self, region_of: Callable[[SimRequest], str], cost_s_of: Callable[[SimRequest], float],
                 weights: Mapping[str, float] | None = None, *, preempt: bool = False,
                 load_of: Callable[[SimRequest], float] | None = None) -> None:
        """`load_of(req)`: the offered-load ratio its region gateway stamped on it (`FairQueue.set_load`, as the
        live node does with `PrefillRequest.region_load`); None: none (every region neutral)."""
        self.fair: FairQueue[SimRequest] = FairQueue(_positive(weights))
        self.region_of = region_of
        self.cost_s_of = cost_s_of
        self.load_of = load_of
        self.preempt = preempt
        self._items: dict[int, SimRequest] = {}
        self._started: dict[int, tuple[str, float, float]] = {}  # request id -> (region, virtual finish, cost s)

    def append(self, req: SimRequest) -> None:
        region = self.region_of(req)
        if self.load_of is not None:
            self.fair.set_load(region, self.load_of(req))
        self.fair.push(req, region, self.cost_s_of(req))
        self._items[req.request_id] = req

    def popleft(self) -> SimRequest:
        req, region, start, cost_s = self.fair.pop_entry()
        del self._items[req.request_id]
        if self.preempt:
            self._started[req.request_id] = (region, self.fair.finish_tag(region, start, cost_s), cost_s)
        return req

    def should_yield(self, stack: Sequence[SimRequest]) -> bool:
        """Should `stack[-1]` (a started job; it paused `stack[:-1]`) yield to the first queued job now?"""
        if not self.preempt or not self._items or len(stack) >= MAX_NESTED_JOBS:
            return False
        started = self._started
        _, finish_tag, cost_s = started[stack[-1].request_id]
        return self.fair.preempts([started[r.request_id][0] for r in stack], finish_tag, cost_s)

    def forget(self, req: SimRequest) -> None:
        self._started.pop(req.request_id, None)
        if not self._started and not self._items:  # nothing running, paused or queued: the busy period ends
            self.fair.idle()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[SimRequest]:
        return iter(list(self._items.values()))

    def clear(self) -> None:
        self.fair.remove(lambda _: True)
        self._items.clear()
        self._started.clear()
