"""The long-term loop per PD region in the multi-site simulator: each region's PD-P / PD-D split is rebalanced
from its own load, by its own `Rebalancer` (the registry's `policy.rebalancer.PdRebalancer`), as each regional
gateway would run it.

Every `control_interval_s` each region r gets a `WindowStats` over the last interval built from r's nodes only:
PD-P and PD-D utilisation (busy seconds / up node-seconds, decode as batch occupancy / BS_max), queued requests
at the window's end, r's arrivals, offloads and uncached lengths; the PrfaaS stage is the clusters linked to r
(their utilisation and queued offloads, the cluster-level queues included). The rebalancer sees r's PD nodes and
those clusters' nodes; its role changes apply to r's nodes only (a change naming another region's node is
ignored) and a new threshold goes to r's router only. Busy time is sampled at window boundaries, per node: a
node that switched roles within the window counts under its role at the window's end (the rebalancer does not
fold windows that contain a conversion anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prfaas.core.lifecycle import Role
from prfaas.policy.types import RebalancePlan, Rebalancer, WindowStats
from prfaas.sim.events import EventPriority
from prfaas.sim.multisite_queue import SiteQueue

if TYPE_CHECKING:
    from prfaas.policy.types import RoutePlan
    from prfaas.sim.multisite import MultiSiteSimulator
    from prfaas.sim.node import SimNode
    from prfaas.sim.request import SimRequest

STAGES = (Role.PRFAAS_PREFILL, Role.PD_PREFILL, Role.PD_DECODE)


@dataclass(frozen=True, slots=True)
class RegionPlan:
    region: str
    plan: RebalancePlan


class _RegionWindow:
    """Arrivals, offloads and uncached lengths of one region since its last window."""

    __slots__ = ("arrivals", "offloaded", "start_s", "uncached")

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.arrivals = 0
        self.offloaded = 0
        self.uncached: list[int] = []


class RegionRebalancing:
    """Owned by a `MultiSiteSimulator`: one rebalancer per region (module docstring). `plans`: every step's plan."""

    def __init__(self, sim: MultiSiteSimulator, rebalancers: Mapping[str, Rebalancer], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("control_interval_s must be > 0")
        unknown = sorted(set(rebalancers) - set(sim.topology.pd_names))
        if unknown:
            raise ValueError(f"rebalancers for unknown PD regions: {', '.join(unknown)}")
        self.sim = sim
        self.rebalancers = dict(rebalancers)
        self.interval_s = interval_s
        self.plans: list[RegionPlan] = []
        self._windows = {r: _RegionWindow(0.0) for r in self.rebalancers}
        self._last_busy: dict[str, tuple[object | None, float]] = {}
        topo = sim.topology
        self._linked = {r: tuple(lk.prfaas for lk in topo.links_to(r)) for r in self.rebalancers}

    def start(self) -> None:
        loop = self.sim.loop
        loop.schedule(loop.now_s + self.interval_s, EventPriority.CONTROL, self._on_tick, None)

    def on_routed(self, region: str, req: SimRequest, plan: RoutePlan) -> None:
        window = self._windows.get(region)
        if window is None or req.attempt != 0:
            return
        window.arrivals += 1
        window.offloaded += int(plan.is_offloaded)
        window.uncached.append(plan.uncached_tokens)

    # --- the tick ----------------------------------------------------------------------------------
    def _on_tick(self, _: object) -> None:
        sim = self.sim
        now = sim.loop.now_s
        for region, rebalancer in self.rebalancers.items():
            clusters = [*self._linked[region], region]
            plan = rebalancer.step(self._window_stats(region, now), sim.clusters_view(clusters), now)
            self.plans.append(RegionPlan(region, plan))
            if plan.new_threshold_tokens is not None:
                sim.routers[region].set_threshold(plan.new_threshold_tokens)
            for change in plan.role_changes:
                if sim.cluster_of_node.get(change.instance_id) == region:
                    sim.begin_role_change(change.instance_id, change.to_role, change.ready_at_s)
        if sim.is_active:
            sim.loop.schedule(now + self.interval_s, EventPriority.CONTROL, self._on_tick, None)

    def _window_stats(self, region: str, now_s: float) -> WindowStats:
        window = self._windows[region]
        dt = max(now_s - window.start_s, 0.0)
        busy = dict.fromkeys(STAGES, 0.0)
        capacity = dict.fromkeys(STAGES, 0.0)
        queued = dict.fromkeys(STAGES, 0)
        for cluster in [*self._linked[region], region]:
            for node in self.sim.cluster_nodes.get(cluster, ()):
                delta = self._busy_delta(node, now_s)
                if not node.is_up or node.role not in busy:
                    continue
                busy[node.role] += delta
                capacity[node.role] += dt
                if node.prefill is not None:
                    queued[node.role] += node.prefill.num_queued
                if node.decode is not None:
                    queued[node.role] += len(node.decode.waiting)
        for site in self._linked[region]:
            site_queue: SiteQueue | None = self.sim.site_queues.get(site)
            if site_queue is not None:
                queued[Role.PRFAAS_PREFILL] += len(site_queue)

        def util(role: Role) -> float:
            return min(busy[role] / capacity[role], 1.0) if capacity[role] > 0 else 0.0

        uncached = tuple(window.uncached)
        stats = WindowStats(
            start_s=window.start_s, end_s=now_s, prfaas_prefill_util=util(Role.PRFAAS_PREFILL),
            pd_prefill_util=util(Role.PD_PREFILL), pd_decode_util=util(Role.PD_DECODE),
            prfaas_queue_requests=queued[Role.PRFAAS_PREFILL], pd_prefill_queue_requests=queued[Role.PD_PREFILL],
            pd_decode_queue_requests=queued[Role.PD_DECODE], num_arrivals=window.arrivals,
            num_offloaded=window.offloaded, mean_uncached_tokens=sum(uncached) / len(uncached) if uncached else None,
            uncached_token_samples=uncached)
        self._windows[region] = _RegionWindow(now_s)
        return stats

    def _busy_delta(self, node: SimNode, now_s: float) -> float:
        """Busy seconds of `node` since the last call (decode: slot-seconds / BS_max); 0 across a role switch."""
        server: object | None
        if node.prefill is not None:
            server, integral = node.prefill, node.prefill.busy_time_s(now_s)
        elif node.decode is not None:
            server, integral = node.decode, node.decode.occupancy_time_s(now_s) / float(node.decode.max_batch)
        else:
            server, integral = None, 0.0
        prev_server, prev = self._last_busy.get(node.instance_id, (server, 0.0))
        self._last_busy[node.instance_id] = (server, integral)
        return integral - prev if prev_server is server else integral
