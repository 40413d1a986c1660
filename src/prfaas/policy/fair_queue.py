"""Weighted fair order for one PrfaaS cluster's prefill queue, across the PD regions that share it.

Admission (`policy.sites` fair share) bounds how much work each region may queue at a congested cluster;
this queue decides the *order* in which queued work starts, so that a region under its share does not wait
behind another region's backlog. Start-time fair queueing (Goyal et al.'s SFQ, written from its definition):

    on push of a job of cost c (seconds) from region r:   S = max(v, F_r);  F_r = S + c / w_r
    pop: the job with the smallest S (ties: arrival order);  v = that S

v is the start tag of the job last started, so an idle region re-enters at the current virtual time (it
gets no credit for having been idle) and a backlogged region's jobs are spaced c / w_r apart. With equal
weights two backlogged regions alternate; a region that sends one job now and then waits at most about
one job of each other backlogged region, whatever their backlog. Pure and deterministic; the simulator's
and the gateway's PrfaaS dispatch can both hold one per cluster.

Busy periods (`idle`): a server with nothing running, paused or queued calls `idle()`; as in SFQ, v becomes
the largest finish tag given, so every region's next job starts at the same virtual time and a region whose
last job was long does not enter the next busy period behind its own past work.

Preemption (`preempts`): order alone cannot help a region whose job arrives while another region's long
job runs: it waits for that job's residual. A server that can pause its running job at safe points (the
emulated engine between layers, the simulator at once) asks `preempts(running, finish_tag, running_cost_s)`
there, `running` being the regions of the job stack (those paused, then the running job's last) and
`finish_tag` the running job's virtual finish (`finish_tag(region, start, cost)` = S + c / w). True when the
first queued job
(1) is of a region not in `running` (a region never preempts itself: its jobs stay in submission order, and
never nests twice), (2) has its start tag below `finish_tag` (the fair order gives it its turn before the
running job ends), and either
(3) its region is *less backlogged* here than the running job's: queued seconds per unit weight, not counting
this job, below the running region's; or
(4) its region *used this server far less recently*: over the last `RECENT_JOBS` started jobs, its seconds per
unit weight times `SHARE_MARGIN` are below the running region's (the running job itself not counted).
The server then runs that job to its end (itself pausable) and resumes the paused one.
Before (2)-(4), the regions' offered-load ratios (`set_load`, stamped by the region gateways or the simulator's
meters, `policy.region_load`) may decide: a queued region pushing `BURST_RATIO` times harder than the running
job's region (relative to their shares) never preempts it, and one pushing that much less always does (a node's
local view cannot tell a burst spread over every site from a region that merely used this node more before).
Regions without a ratio count as `NEUTRAL_RATIO`, so without stamps the rule is (1)-(4) as above. The same ratios
order the queue itself: when the region of the job with the smallest start tag pushes `BURST_RATIO` times harder
than another region with a job queued, that region's first job starts next (a burst spread over every site may
hold low start tags at a site it rarely used, the quiet region's home site, and would otherwise start its whole
backlog there before the quiet region's next job).

Why (3) and (4): with (1) and (2) alone every arrival of an idle region preempts (it enters at v, below any
running finish), so two calm regions pause each other's long prefills all the time (y's P90 +15% in the
simulator without any burst), and a bursting region's next job (start = the running job's finish) preempts a
quiet region's long job, which then runs at about half speed (weighted processor sharing). (3) lets a quiet
region's job cut in front of a burst's running prefill when the burst has work queued here, and never the
reverse; (4) does the same when the burst is spread over several servers and has nothing queued at this one,
but has been using it. Calm regions (no backlog here, similar recent use) run to completion as without
preemption: the share policy protects the region under its share, not each job's slot. v never moves back (a
resumed job keeps its old tag). At most `MAX_NESTED_JOBS` jobs are stacked at once (the running one and those
it paused): a server asks `preempts` only below that depth (the live node, `serve.worker`, and the simulator,
`sim.servers.PrefillServer`).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

from prfaas.policy.region_load import NEUTRAL_RATIO, burst_order

T = TypeVar("T")
MAX_NESTED_JOBS = 8  # jobs stacked by preemption at once (the running one and those it paused)
RECENT_JOBS = 32  # started jobs over which a region's recent use of the server is measured (preempts)
SHARE_MARGIN = 2.0  # a region preempts one that used the server this many times more (per weight), recently


class FairQueue(Generic[T]):
    """Start-time fair queue over regions (module docstring). Unknown regions weigh `default_weight`."""

    def __init__(self, weights: Mapping[str, float] | None = None, default_weight: float = 1.0) -> None:
        if default_weight <= 0 or any(w <= 0 for w in (weights or {}).values()):
            raise ValueError("fair-queue weights must be > 0")
        self.weights = dict(weights or {})
        self.default_weight = default_weight
        self._heap: list[tuple[float, int, str, float, T]] = []
        self._finish: dict[str, float] = {}
        self._virtual = 0.0
        self._seq = itertools.count()
        self._queued_s: dict[str, float] = {}
        self._recent: deque[tuple[str, float]] = deque()  # (region, cost_s) of the last RECENT_JOBS started jobs
        self._recent_s: dict[str, float] = {}  # their cost per region
        self._load: dict[str, float] = {}  # each region's latest offered-load ratio (set_load)

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: T, region: str, cost_s: float) -> None:
        if cost_s < 0:
            raise ValueError("cost_s must be >= 0")
        start = max(self._virtual, self._finish.get(region, 0.0))
        self._finish[region] = start + cost_s / self.weights.get(region, self.default_weight)
        heapq.heappush(self._heap, (start, next(self._seq), region, cost_s, item))
        self._queued_s[region] = self._queued_s.get(region, 0.0) + cost_s

    def pop(self) -> tuple[T, str]:
        """The next job to start and its region; IndexError when empty."""
        item, region, _, _ = self.pop_entry()
        return item, region

    def _next_index(self) -> int:
        """Where in the heap the next job to start is: the smallest start tag, unless its region pushes
        `BURST_RATIO` times harder (offered-load ratios, `set_load`) than a region with a job queued: then the
        first such job of those regions (smallest start tag). A burst's backlog does not start before a calm
        region's queued job, as it never pauses one running; without ratios (or within 3x) it is plain SFQ."""
        heap = self._heap
        if not self._load or len(heap) < 2:
            return 0
        loads = self._load
        head_load = loads.get(heap[0][2], NEUTRAL_RATIO)
        best = 0
        for i in range(1, len(heap)):
            entry = heap[i]
            if burst_order(head_load, loads.get(entry[2], NEUTRAL_RATIO)) is False and (
                    best == 0 or entry[:2] < heap[best][:2]):
                best = i
        return best

    def _take(self, index: int) -> tuple[float, int, str, float, T]:
        heap = self._heap
        if index == 0:
            return heapq.heappop(heap)
        entry = heap[index]
        last = heap.pop()
        if index < len(heap):
            heap[index] = last
            heapq.heapify(heap)
        return entry

    def head(self) -> T:
        """The job `pop` would return next, left queued; IndexError when empty."""
        return self._heap[self._next_index()][4]

    def pop_entry(self) -> tuple[T, str, float, float]:
        """The next job to start: (item, region, start tag, cost_s); IndexError when empty."""
        if not self._heap:
            raise IndexError("pop from an empty fair queue")
        start, _, region, cost_s, item = self._take(self._next_index())
        self._virtual = max(self._virtual, start)
        self._queued_s[region] = max(self._queued_s[region] - cost_s, 0.0)
        self._recent.append((region, cost_s))
        self._recent_s[region] = self._recent_s.get(region, 0.0) + cost_s
        if len(self._recent) > RECENT_JOBS:
            old_region, old_cost_s = self._recent.popleft()
            self._recent_s[old_region] = max(self._recent_s[old_region] - old_cost_s, 0.0)
        return item, region, start, cost_s

    def set_load(self, region: str, ratio: float) -> None:
        """`region`'s offered-load ratio now (`policy.region_load`): what its latest job was stamped with."""
        if not ratio >= 0:
            raise ValueError(f"load ratio must be >= 0, got {ratio}")
        self._load[region] = ratio

    def finish_tag(self, region: str, start: float, cost_s: float) -> float:
        """The virtual finish of a job of `region` that started at tag `start` and costs `cost_s`."""
        return start + cost_s / self.weights.get(region, self.default_weight)

    def preempts(self, running: Sequence[str], finish_tag: float, running_cost_s: float = 0.0) -> bool:
        """Should the running job (virtual finish `finish_tag`, cost `running_cost_s`; `running`: the regions of
        the jobs it paused, then its own last) yield to the first queued job at this safe point? (module
        docstring)"""
        if not self._heap or not running:
            return False
        start, _, region, cost_s, _ = self._heap[self._next_index()]
        if region in running:
            return False
        top = running[-1]
        by_load = burst_order(self._load.get(region, NEUTRAL_RATIO), self._load.get(top, NEUTRAL_RATIO))
        if by_load is not None:
            return by_load
        if start >= finish_tag:
            return False
        if self._backlog(region) - cost_s / self._weight(region) < self._backlog(top):
            return True
        return SHARE_MARGIN * self._recent_use(region) < self._recent_use(top) - running_cost_s / self._weight(top)

    def _weight(self, region: str) -> float:
        return self.weights.get(region, self.default_weight)

    def _recent_use(self, region: str) -> float:
        """Seconds of the last RECENT_JOBS started jobs that were `region`'s, over its weight."""
        return self._recent_s.get(region, 0.0) / self._weight(region)

    def _backlog(self, region: str) -> float:
        """Queued (not started) virtual seconds of `region`: its queued seconds over its weight."""
        return self._queued_s.get(region, 0.0) / self._weight(region)

    def idle(self) -> None:
        """The server has nothing running, paused or queued: its busy period ends. As in SFQ, v becomes the largest
        finish tag given, so every region's next job starts at the same virtual time: a region whose last job
        was long does not enter the next busy period behind its own past work (nor, with preemption, look more
        backlogged than a region that was merely silent). A no-op while jobs are queued."""
        if self._heap:
            return
        if self._finish:
            self._virtual = max(self._virtual, max(self._finish.values()))
            self._finish.clear()

    def remove(self, predicate: Callable[[T], bool]) -> list[T]:
        """Drop every queued job whose item satisfies `predicate(item)` (a failed cluster's work); returns them."""
        kept: list[tuple[float, int, str, float, T]] = []
        dropped: list[tuple[float, int, str, float, T]] = []
        for entry in self._heap:
            (dropped if predicate(entry[4]) else kept).append(entry)
        self._heap = kept
        heapq.heapify(self._heap)
        for _, _, region, cost_s, _ in dropped:
            self._queued_s[region] = max(self._queued_s[region] - cost_s, 0.0)
        return [entry[4] for entry in dropped]

    def queued_s_by_region(self) -> dict[str, float]:
        """Queued (not started) work per region, seconds: what `PrfaasSiteView.queued_work_s_by_region` needs."""
        return {r: s for r, s in self._queued_s.items() if s > 0}
