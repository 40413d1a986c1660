"""The gateway's control plane: the policy objects, node liveness, role switches and the long-term loop.

    control = ControlPlane(cfg, metrics)
    control.router                      # the live Router (policy.registry); swapped by set_policy
    control.kv_index                    # GlobalKvIndex shared with the router
    await control.switch_roles({"pd-0": Role.PD_DECODE})   # drain, then switch (RebalancePlan executor)
    control.start(session) / await control.close()         # expiry, router tick and rebalance loops

The rebalancer (`policy.rebalancer.PdRebalancer`) runs every `rebalance_interval_s` on a `WindowStats` built
from the requests the gateway saw and the nodes' busy time (PD-D nodes: their decode slot occupancy, running
batch / BS_max, as the simulator counts it); its `RebalancePlan` is applied with the same
drain-then-switch path as the admin endpoint, and a new threshold is installed into the router.
The router's own short-term loop (`Router.tick`) runs every `Router.tick_interval_s`, between requests too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field

import aiohttp

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.policy.config import PolicyConfig
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.rebalancer import PdRebalancer
from prfaas.policy.registry import make_router
from prfaas.policy.routers.base import RouterBase
from prfaas.policy.types import RebalancePlan, WindowStats
from prfaas.serve.cluster import NodeRegistry
from prfaas.serve.config import DeployConfig, policy_config
from prfaas.serve.messages import ErrorReply, Heartbeat, NodeRegister, RoleSwitch, RoleSwitchReply, decode, encode
from prfaas.serve.metrics import GatewayMetrics
from prfaas.serve.replan import StateBytesCurve, live_prefill_time, live_reoptimiser

_log = logging.getLogger(__name__)
_IDLE_TICK_CHECK_S = 1.0  # how often to look again whether a policy without ticks was swapped for one
INDEX_CAPACITY_BLOCKS = 4096


class RoleSwitchError(Exception):
    """A role switch could not be applied (unknown node, wrong cluster, drain timeout, node error)."""


@dataclass(slots=True)
class WindowCollector:
    """Arrivals of the current rebalancer window."""

    start_s: float
    num_arrivals: int = 0
    num_offloaded: int = 0
    uncached: list[int] = field(default_factory=list)

    def record(self, uncached_tokens: int, offloaded: bool) -> None:
        self.num_arrivals += 1
        self.num_offloaded += offloaded
        self.uncached.append(uncached_tokens)


class ControlPlane:
    def __init__(self, cfg: DeployConfig, metrics: GatewayMetrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.nodes = NodeRegistry(cfg.gateway.heartbeat_timeout_s)
        self.policy_name = cfg.policy.name
        self.policy: PolicyConfig = policy_config(cfg)
        self.kv_index = GlobalKvIndex(block_tokens=self.policy.node_select.block_tokens)
        self.prefill_time_s = live_prefill_time(cfg)
        self.state_bytes: StateBytesCurve | None = None  # S_kv(l), learned from the first node that reports it
        self.router: RouterBase = self._make_router(self.policy_name, self.policy)
        self.rebalancer = PdRebalancer(self.policy.rebalancer, reoptimise=live_reoptimiser(cfg),
                                       threshold_tokens=self.router.threshold_tokens)
        self.window = WindowCollector(start_s=time.monotonic())
        self.last_plan: RebalancePlan | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._cache_seq: dict[str, int] = {}  # node -> seq of the last cache report applied to kv_index
        from prfaas.serve.sites import make_site_routing  # (imports this module's types)

        self.sites = make_site_routing(cfg, self)  # None without [topology]: one PrfaaS cluster, as before

    # --- nodes -----------------------------------------------------------------------------------
    def _make_router(self, name: str, policy: PolicyConfig) -> RouterBase:
        return make_router(name, policy, kv_index=self.kv_index, state_bytes=self.state_bytes,
                           prefill_time_s=self.prefill_time_s)

    def register(self, msg: NodeRegister) -> None:
        self.nodes.register(msg, time.monotonic())
        self._cache_seq.pop(msg.name, None)  # a (re-)registered node starts over with a full cache report
        if self.state_bytes is None and msg.state_bytes_points:
            # the policy sizes link budgets with S_kv: rebuild the router (no request is routed before registration)
            self.state_bytes = StateBytesCurve(msg.state_bytes_points)
            threshold = self.router.threshold_tokens
            self.router = self._make_router(self.policy_name, self.policy)
            if threshold is not None:
                self.router.set_threshold(threshold)
        if not self.kv_index.has_node(msg.name):
            self.kv_index.add_node(msg.name, msg.cluster, INDEX_CAPACITY_BLOCKS)
        _log.info("node %s registered (%s, %s)", msg.name, msg.cluster.value, msg.role.value)

    def apply_cache_report(self, msg: Heartbeat) -> bool:
        """Fold a heartbeat's prefix-cache report into the KV index (`serve.cache_report`); True asks the node
        for a full report (a delta that does not follow the last applied report)."""
        name = msg.name
        if msg.cache_seq == 0 or not self.kv_index.has_node(name):
            return False
        applied = self._cache_seq.get(name)
        if msg.cache_full:
            self.kv_index.sync(name, msg.cache_added)
        elif applied is not None and msg.cache_seq == applied:
            return False
        elif applied is not None and msg.cache_seq == applied + 1:
            self.kv_index.evict(name, msg.cache_removed)
            if msg.cache_added:
                self.kv_index.insert(name, msg.cache_added)
        else:
            self.metrics.cache_resyncs.inc()
            return True
        self._cache_seq[name] = msg.cache_seq
        return False

    @property
    def is_starting(self) -> bool:
        """Some node of the deployment config has not registered yet (requests wait for a route meanwhile)."""
        return any(node.name not in self.nodes.nodes for node in self.cfg.nodes)

    def kv_index_summary(self) -> dict[str, dict[str, int]]:
        """Per node: blocks the KV index holds for it and the last cache report applied (0: none yet)."""
        return {name: {"blocks": self.kv_index.num_blocks(name), "report_seq": self._cache_seq.get(name, 0)}
                for name in self.kv_index.nodes()}

    def threshold_tokens(self) -> int | None:
        return self.router.threshold_tokens

    # --- policy at run time ----------------------------------------------------------------------
    def set_policy(self, name: str | None, threshold_tokens: int | None) -> None:
        """Install another router (requests in flight finish under the router that routed them)."""
        if name is not None and name != self.policy_name:
            threshold = threshold_tokens if threshold_tokens is not None else self.router.threshold_tokens
            policy = self.policy if threshold is None else _with_threshold(self.policy, threshold)
            self.router = self._make_router(name, policy)
            self.policy_name, self.policy = name, policy
        elif threshold_tokens is not None:
            self.router.set_threshold(threshold_tokens)
            self.policy = _with_threshold(self.policy, threshold_tokens)

    # --- role switches (drain, then switch) ------------------------------------------------------
    async def switch_roles(self, changes: dict[str, Role]) -> list[RoleSwitchReply]:
        for name, role in changes.items():
            record = self.nodes.get(name)
            if record is None or not record.is_up:
                raise RoleSwitchError(f"unknown or down node {name!r}")
            if record.cluster is not ClusterKind.PD or role not in (Role.PD_PREFILL, Role.PD_DECODE):
                raise RoleSwitchError(f"node {name!r} ({record.cluster.value}) cannot take role {role.value}")
            if record.pending_role is not None:
                raise RoleSwitchError(f"node {name!r} is already switching")
        for name, role in changes.items():
            self.nodes.begin_switch(name, role)
        results = await asyncio.gather(*(self._switch_one(n, r) for n, r in changes.items()),
                                       return_exceptions=True)
        replies = []
        for result in results:
            if isinstance(result, BaseException):
                raise RoleSwitchError(str(result))
            replies.append(result)
        return replies

    async def _switch_one(self, name: str, role: Role) -> RoleSwitchReply:
        record = self.nodes.nodes[name]
        assert self._session is not None
        switched: Role | None = None
        try:
            async with self._session.post(f"{record.info.control_url}/role", data=encode(RoleSwitch(role=role)),
                                          timeout=aiohttp.ClientTimeout(total=180)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RoleSwitchError(f"{name}: {decode(body, ErrorReply).message}")
                reply = decode(body, RoleSwitchReply)
                switched = reply.role
                self.metrics.role_switches.inc()
                return reply
        finally:
            self.nodes.finish_switch(name, switched)

    # --- background loops ------------------------------------------------------------------------
    def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._tasks.append(asyncio.create_task(self._expiry_loop()))
        self._tasks.append(asyncio.create_task(self._router_tick_loop()))
        if self.cfg.policy.rebalance:
            self._tasks.append(asyncio.create_task(self._rebalance_loop()))
        if self.sites is not None:
            self._tasks.append(asyncio.create_task(self.sites.tick_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _expiry_loop(self) -> None:
        """Silence is measured net of this loop's own lag: heartbeats that arrived while the event loop was busy
        (e.g. under a request storm) are still unread, and a late look must not count them as missed."""
        interval_s = min(0.25, self.cfg.gateway.heartbeat_timeout_s / 4)
        while True:
            before_s = time.monotonic()
            await asyncio.sleep(interval_s)
            now_s = time.monotonic()
            lag_s = max(0.0, now_s - before_s - interval_s)
            for name in self.nodes.expire(now_s - lag_s):
                _log.warning("node %s missed its heartbeats: out of routing", name)

    async def _router_tick_loop(self) -> None:
        """The router's short-term loop between requests (the router may be swapped: re-read each time)."""
        while True:
            interval_s = self.router.tick_interval_s
            await asyncio.sleep(interval_s if interval_s is not None else _IDLE_TICK_CHECK_S)
            if interval_s is not None:
                now = time.monotonic()
                self.router.tick(self.nodes.view(now), now)

    async def _rebalance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.gateway.rebalance_interval_s)
            try:
                await self.rebalance_once(time.monotonic())
            except RoleSwitchError as exc:
                _log.warning("rebalance plan not applied: %s", exc)

    def window_stats(self, now_s: float) -> WindowStats:
        w = self.window
        util: dict[Role, list[float]] = {kind: [] for kind in (Role.PRFAAS_PREFILL, Role.PD_PREFILL, Role.PD_DECODE)}
        queues = dict.fromkeys(util, 0)
        for record in self.nodes.up():
            if record.role is Role.PD_DECODE:  # slot occupancy, as the simulator's window counts it
                util[record.role].append(self.nodes.decode_occupancy(record.name, w.start_s, now_s))
            elif record.role in util:
                util[record.role].append(self.nodes.utilisation(record.name, w.start_s, now_s))
                queues[record.role] += record.heartbeat.queued_requests if record.heartbeat else 0

        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else 0.0

        return WindowStats(
            start_s=w.start_s, end_s=now_s, prfaas_prefill_util=mean(util[Role.PRFAAS_PREFILL]),
            pd_prefill_util=mean(util[Role.PD_PREFILL]), pd_decode_util=mean(util[Role.PD_DECODE]),
            prfaas_queue_requests=queues[Role.PRFAAS_PREFILL], pd_prefill_queue_requests=queues[Role.PD_PREFILL],
            pd_decode_queue_requests=queues[Role.PD_DECODE], num_arrivals=w.num_arrivals,
            num_offloaded=w.num_offloaded,
            mean_uncached_tokens=sum(w.uncached) / len(w.uncached) if w.uncached else None,
            uncached_token_samples=tuple(w.uncached))

    async def rebalance_once(self, now_s: float) -> RebalancePlan:
        window = self.window_stats(now_s)
        self.window = WindowCollector(start_s=now_s)
        plan = self.rebalancer.step(window, self.nodes.view(now_s), now_s)
        self.last_plan = plan
        if plan.new_threshold_tokens is not None:
            self.set_policy(None, plan.new_threshold_tokens)
        if plan.role_changes:
            await self.switch_roles({c.instance_id: c.to_role for c in plan.role_changes})
        return plan


def _with_threshold(policy: PolicyConfig, threshold_tokens: int) -> PolicyConfig:
    return dataclasses.replace(policy, threshold_tokens=threshold_tokens)
