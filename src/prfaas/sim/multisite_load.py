"""Each PrfaaS cluster's queued prefill work, kept per instance from `SimNode.touch()` reports (`sim.multisite`).

`PrfaasSiteView` needs, per cluster: the up instances, the queued requests, and the queued prefill seconds
in total and per region (each instance's fair-queue backlog, then the nominal work left of each prefill it paused
(preemption, in pause order), then its running prefill's time left at `now`, summed in instance order; the
cluster queue's backlog is added by the caller). Reading every instance's
servers at every routing decision is O(instances) of attribute lookups; `SiteLoad` keeps each instance's part
(`(queued items, busy_until_s, region)`) and rereads only the instances touched since. The sums are the full
scan's, bit for bit: without fair-queue backlogs at the instances (the cluster queue, the default) they are
`numpy.cumsum` over the instances' time left (a sequential left-to-right sum, as the scan's `+=`; an idle
instance adds exactly 0.0, which changes no sum), one row per region and one for the total, in one call; with
backlogs, the scan's Python loop over the kept parts. A prefill server that shares a host changes its
`busy_until_s` without a touch (`rescale`), so such an instance is reread every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from prfaas.sim.multisite_queue import FairPrefillQueue
from prfaas.sim.node import SimNode

Part = tuple[tuple[tuple[str, float], ...], float | None, str | None]  # (fair-queue backlog, busy until, region)


class SiteLoad:
    """The load parts of one cluster's instances (their order is the sum's order)."""

    __slots__ = ("_always", "_busy_until_s", "_free", "_n_backlogged", "_parts", "_queued_of", "_region_mask",
                 "_region_of_request", "_region_row", "_regions", "_running_of_row", "_up_of", "dirty", "nodes",
                 "queued", "up")

    def __init__(self, nodes: Sequence[SimNode], region_of_request: Callable[[int], str],
                 regions: Sequence[str]) -> None:
        self.nodes = list(nodes)
        self.dirty: set[int] = set(range(len(self.nodes)))
        for i, node in enumerate(self.nodes):
            node.attach_load(self.dirty, i)
        self._region_of_request = region_of_request
        self._parts: list[Part | None] = [None] * len(self.nodes)
        self._up_of = [0] * len(self.nodes)
        self._queued_of = [0] * len(self.nodes)
        self._always: set[int] = set()  # host-shared servers: reread at every refresh
        self.up = 0  # up instances with a prefill server
        self.queued = 0  # their queued plus running requests
        self._regions = list(regions)
        self._region_row = {region: row for row, region in enumerate(self._regions)}
        self._busy_until_s = np.full(len(self.nodes), -np.inf)  # -inf: nothing running (time left 0.0)
        # row r: 1.0 where the running prefill is region r's; the last row: all 1.0 (the total, same pass)
        self._region_mask = np.zeros((len(self._regions) + 1, len(self.nodes)))
        self._region_mask[-1, :] = 1.0
        self._running_of_row = [0] * len(self._regions)
        self._n_backlogged = 0  # instances with a fair-queue backlog (then the Python scan)
        self._free: set[int] = set()  # up instances with an idle prefill server and nothing queued

    def refresh(self) -> None:
        if self._always:
            self.dirty |= self._always
        if not self.dirty:
            return
        for i in self.dirty:
            node = self.nodes[i]
            srv = node.prefill
            part: Part | None = None
            up = queued = 0
            if node.is_up and srv is not None and srv.is_idle:
                self._free.add(i)
            else:
                self._free.discard(i)
            if node.is_up and srv is not None:
                if srv.host is not None:
                    self._always.add(i)
                up = 1
                queue = srv.queue
                queued = srv.num_queued
                items: tuple[tuple[str, float], ...] = ()
                if isinstance(queue, FairPrefillQueue):
                    items = tuple(queue.fair.queued_s_by_region().items())
                if queued > len(queue):  # paused prefills: one item each (the scan's order)
                    items += tuple((self._region_of_request(req.request_id), left_s) for req, left_s in srv.paused)
                current = srv.current
                if current is not None and srv.busy_until_s is not None:
                    part = (items, srv.busy_until_s, self._region_of_request(current.request_id))
                    queued += 1
                elif items:
                    part = (items, None, None)
            self._set_part(i, part)
            self.up += up - self._up_of[i]
            self._up_of[i] = up
            self.queued += queued - self._queued_of[i]
            self._queued_of[i] = queued
        self.dirty.clear()

    def free_nodes(self) -> list[SimNode]:
        """The up instances with an idle prefill server and an empty queue, in instance order (after `refresh`)."""
        nodes = self.nodes
        return [nodes[i] for i in sorted(self._free)]

    def _set_part(self, i: int, part: Part | None) -> None:
        old = self._parts[i]
        if old is not None:
            self._n_backlogged -= bool(old[0])
            if old[2] is not None:
                row = self._region_row.get(old[2])
                if row is None:
                    self._n_backlogged -= 1  # an unknown region: the scan (see below)
                else:
                    self._running_of_row[row] -= 1
                    self._region_mask[row, i] = 0.0
        self._busy_until_s[i] = -np.inf
        self._parts[i] = part
        if part is None:
            return
        self._n_backlogged += bool(part[0])
        if part[1] is not None and part[2] is not None:
            row = self._region_row.get(part[2])
            if row is None:
                self._n_backlogged += 1
            else:
                self._running_of_row[row] += 1
                self._region_mask[row, i] = 1.0
                self._busy_until_s[i] = part[1]

    def work_s(self, now_s: float, by_region: dict[str, float]) -> float:
        """Queued plus running prefill seconds at `now_s`, in total (returned) and added into `by_region`."""
        if self._n_backlogged:
            return self._scan(now_s, by_region)
        rows = [row for row, n in enumerate(self._running_of_row) if n]
        if not rows:
            return 0.0
        left = np.subtract(self._busy_until_s, now_s)
        np.maximum(left, 0.0, out=left)
        sums = np.cumsum(left * self._region_mask, axis=1)[:, -1].tolist()
        for row in rows:
            by_region[self._regions[row]] = by_region.get(self._regions[row], 0.0) + sums[row]
        return sums[-1]

    def _scan(self, now_s: float, by_region: dict[str, float]) -> float:
        work = 0.0
        for part in self._parts:
            if part is None:
                continue
            items, busy_until_s, region = part
            for item_region, seconds in items:
                by_region[item_region] = by_region.get(item_region, 0.0) + seconds
                work += seconds
            if busy_until_s is not None:
                left = busy_until_s - now_s
                if left < 0.0:
                    left = 0.0
                by_region[region] = by_region.get(region, 0.0) + left  # type: ignore[index,arg-type]
                work += left
        return work
