"""The simulator's long-term loop and time series: rebalancer ticks, window statistics, samples.

Every `control_interval_s` (if a `Rebalancer` is given) the loop aggregates a `WindowStats` over the
last interval and calls `Rebalancer.step(window, view, now_s)`, then executes the plan: each role change
drains the node and switches it when idle (`Simulator.begin_role_change`), and a new threshold is
installed with `Router.set_threshold`. Queue depths in `WindowStats` are the depths at the window's end.

Every `sample_interval_s` it records a `Sample` (role counts, queues, egress rate) for plots, and it
accumulates busy time per stage for the summary's utilisation (prefill: busy fraction; decode: mean
batch occupancy / BS_max). Sampling stops when no request is arriving or in flight.

Every `Router.tick_interval_s` (for policies with a short-term loop) it calls `Router.tick(view, now_s)`,
as the gateway does, so a raised threshold relaxes between arrivals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.units import bytes_per_s_to_gbps
from prfaas.policy.types import Rebalancer, WindowStats
from prfaas.sim.events import EventPriority

if TYPE_CHECKING:
    from prfaas.sim.node import SimNode
    from prfaas.sim.request import SimRequest
    from prfaas.sim.simulator import Simulator

STAGES = (Role.PRFAAS_PREFILL, Role.PD_PREFILL, Role.PD_DECODE)


@dataclass(frozen=True, slots=True)
class Sample:
    time_s: float
    num_prfaas_up: int
    num_pd_prefill: int
    num_pd_decode: int
    num_converting: int
    prfaas_queue: int
    pd_prefill_queue: int
    decode_waiting: int
    egress_gbps: float
    threshold_tokens: int | None


@dataclass(frozen=True, slots=True)
class RoleSwitch:
    time_s: float
    instance_id: str
    from_role: Role
    to_role: Role


class ControlLoop:
    """Owned by a `Simulator`; see the module docstring."""

    def __init__(self, sim: Simulator, rebalancer: Rebalancer | None) -> None:
        self.sim = sim
        self.rebalancer = rebalancer
        self.samples: list[Sample] = []
        self.role_switches: list[RoleSwitch] = []
        self.rebalance_plans: list[object] = []
        self.busy_s = dict.fromkeys(STAGES, 0.0)  # per stage: busy seconds (decode: slot-seconds / BS_max)
        self.capacity_s = dict.fromkeys(STAGES, 0.0)  # per stage: node-seconds available
        self._last_busy: dict[str, tuple[object | None, float]] = {}  # node -> (server, integral)
        self._last_account_s = 0.0
        self._window_start_s = 0.0
        self._window_busy = dict.fromkeys(STAGES, 0.0)
        self._window_capacity = dict.fromkeys(STAGES, 0.0)
        self._window_arrivals = 0
        self._window_offloaded = 0
        self._window_uncached: list[int] = []

    # --- hooks from the simulator ----------------------------------------------------------------
    def start(self) -> None:
        loop = self.sim.loop
        loop.schedule(loop.now_s, EventPriority.SAMPLE, self._on_sample, None)
        if self.rebalancer is not None and self.sim.options.control_interval_s is not None:
            interval = self.sim.options.control_interval_s
            loop.schedule(loop.now_s + interval, EventPriority.CONTROL, self._on_tick, None)
        tick_s = self.sim.router.tick_interval_s
        if tick_s is not None:
            loop.schedule(loop.now_s + tick_s, EventPriority.CONTROL, self._on_router_tick, float(tick_s))

    def on_arrival(self, req: SimRequest) -> None:
        self._window_arrivals += 1

    def on_routed(self, req: SimRequest) -> None:
        if req.attempt == 0 and req.plan is not None:
            self._window_offloaded += int(req.plan.is_offloaded)
            self._window_uncached.append(req.plan.uncached_tokens)

    def on_first_token(self, req: SimRequest) -> None:
        pass

    def on_finished(self, req: SimRequest) -> None:
        pass

    def on_role_switch(self, node: SimNode, from_role: Role, to_role: Role) -> None:
        self._account()
        self.role_switches.append(RoleSwitch(self.sim.loop.now_s, node.instance_id, from_role, to_role))

    # --- accounting ------------------------------------------------------------------------------
    def _account(self) -> None:
        """Attribute busy time since the last call to each node's current stage."""
        now = self.sim.loop.now_s
        dt = now - self._last_account_s
        # Per-stage sums keyed by the role's name (enum members hash in Python; 1,250 nodes a tick),
        # added in the same order as before, so the floats are the same.
        busy = {r.name: self.busy_s[r] for r in STAGES}
        window_busy = {r.name: self._window_busy[r] for r in STAGES}
        capacity = {r.name: self.capacity_s[r] for r in STAGES}
        window_capacity = {r.name: self._window_capacity[r] for r in STAGES}
        last_busy = self._last_busy
        for node in self.sim.nodes.values():
            server, integral, scale = _busy_integral(node, now)
            iid = node.spec.instance_id
            prev_server, prev = last_busy.get(iid, (server, 0.0))
            delta = integral - (prev if prev_server is server else 0.0)
            last_busy[iid] = (server, integral)
            if server is not None and node.is_up:
                stage = node.role._name_
                if stage in busy:
                    busy[stage] += delta / scale
                    window_busy[stage] += delta / scale
                    capacity[stage] += dt
                    window_capacity[stage] += dt
        for r in STAGES:
            self.busy_s[r] = busy[r.name]
            self._window_busy[r] = window_busy[r.name]
            self.capacity_s[r] = capacity[r.name]
            self._window_capacity[r] = window_capacity[r.name]
        self._last_account_s = now

    def utilisation(self) -> dict[Role, float | None]:
        self._account()
        return {r: (self.busy_s[r] / self.capacity_s[r] if self.capacity_s[r] > 0 else None) for r in STAGES}

    # --- periodic events -------------------------------------------------------------------------
    def _on_sample(self, _: object) -> None:
        self._account()
        sim = self.sim
        nodes = sim.nodes.values()
        up = [n for n in nodes if n.is_up]
        threshold = getattr(sim.router, "threshold_tokens", None)
        self.samples.append(Sample(
            time_s=sim.loop.now_s,
            num_prfaas_up=sum(n.role is Role.PRFAAS_PREFILL for n in up),
            num_pd_prefill=sum(n.role is Role.PD_PREFILL and n.pending_role is None for n in up),
            num_pd_decode=sum(n.role is Role.PD_DECODE and n.pending_role is None for n in up),
            num_converting=sum(n.pending_role is not None for n in up),
            prfaas_queue=_prefill_queue(up, ClusterKind.PRFAAS),
            pd_prefill_queue=_prefill_queue(up, ClusterKind.PD),
            decode_waiting=sum(len(n.decode.waiting) for n in up if n.decode is not None),
            egress_gbps=bytes_per_s_to_gbps(sim.egress.goodput_bytes_per_s()),
            threshold_tokens=threshold if isinstance(threshold, int) else None,
        ))
        if sim.progress is not None:
            sim.progress(sim.loop.now_s)
        if sim.is_active:
            next_s = sim.loop.now_s + sim.options.sample_interval_s
            sim.loop.schedule(next_s, EventPriority.SAMPLE, self._on_sample, None)

    def _on_tick(self, _: object) -> None:
        sim = self.sim
        assert self.rebalancer is not None and sim.options.control_interval_s is not None
        window = self.window_stats()
        plan = self.rebalancer.step(window, sim.view(), sim.loop.now_s)
        self.rebalance_plans.append(plan)
        if plan.new_threshold_tokens is not None:
            sim.router.set_threshold(plan.new_threshold_tokens)
        for change in plan.role_changes:
            sim.begin_role_change(change.instance_id, change.to_role, change.ready_at_s)
        if sim.is_active:
            next_s = sim.loop.now_s + sim.options.control_interval_s
            sim.loop.schedule(next_s, EventPriority.CONTROL, self._on_tick, None)

    def _on_router_tick(self, interval_s: object) -> None:
        """The router's short-term loop between arrivals, as the gateway runs it."""
        assert isinstance(interval_s, float)
        sim = self.sim
        sim.router.tick(sim.view(), sim.loop.now_s)
        if sim.is_active:
            sim.loop.schedule(sim.loop.now_s + interval_s, EventPriority.CONTROL, self._on_router_tick, interval_s)

    def window_stats(self) -> WindowStats:
        """Close the current window and return its aggregates."""
        self._account()
        sim = self.sim
        now = sim.loop.now_s
        up = [n for n in sim.nodes.values() if n.is_up]

        def util(role: Role) -> float:
            cap = self._window_capacity[role]
            return min(self._window_busy[role] / cap, 1.0) if cap > 0 else 0.0

        uncached = tuple(self._window_uncached)
        stats = WindowStats(
            start_s=self._window_start_s, end_s=now,
            prfaas_prefill_util=util(Role.PRFAAS_PREFILL), pd_prefill_util=util(Role.PD_PREFILL),
            pd_decode_util=util(Role.PD_DECODE),
            prfaas_queue_requests=_prefill_queue(up, ClusterKind.PRFAAS),
            pd_prefill_queue_requests=_prefill_queue(up, ClusterKind.PD),
            pd_decode_queue_requests=sum(len(n.decode.waiting) for n in up if n.decode is not None),
            num_arrivals=self._window_arrivals, num_offloaded=self._window_offloaded,
            mean_uncached_tokens=sum(uncached) / len(uncached) if uncached else None,
            uncached_token_samples=uncached,
        )
        self._window_start_s = now
        self._window_busy = dict.fromkeys(STAGES, 0.0)
        self._window_capacity = dict.fromkeys(STAGES, 0.0)
        self._window_arrivals = 0
        self._window_offloaded = 0
        self._window_uncached = []
        return stats


def _busy_integral(node: SimNode, now_s: float) -> tuple[object | None, float, float]:
    """(server, busy integral, scale): prefill busy seconds, or decode slot-seconds with scale BS_max."""
    if node.prefill is not None:
        return node.prefill, node.prefill.busy_time_s(now_s), 1.0
    if node.decode is not None:
        return node.decode, node.decode.occupancy_time_s(now_s), float(node.decode.max_batch)
    return None, 0.0, 1.0


def _prefill_queue(nodes: list[SimNode], cluster: ClusterKind) -> int:
    return sum(n.prefill.num_queued for n in nodes if n.prefill is not None and n.cluster is cluster)
