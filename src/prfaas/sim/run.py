"""One simulation run end to end: build the registered router, simulate, summarise.

`simulate(...)` is what the CLI, the paper case, the throughput search, the benchmarks and the tests
call. The router comes from `prfaas.policy.registry.make_router` (the gateway's registry), with the
simulator's `GlobalKvIndex` (which is also the simulated nodes' prefix caches, so it is exact here)
and S_kv from the deployment's prefill cost model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.perf.base import PrefillCostModel
from prfaas.policy.config import PolicyConfig
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.rebalancer import PdRebalancer, Reoptimiser
from prfaas.policy.registry import make_router
from prfaas.sim.control import RoleSwitch, Sample
from prfaas.sim.deployment import REVERSE_LINK_ID, Deployment, ScriptedEvent, SimOptions
from prfaas.sim.metrics import Summary, summarize
from prfaas.sim.request import RequestRecord
from prfaas.sim.simulator import Simulator
from prfaas.workload.request import WorkloadRequest


@dataclass(frozen=True, slots=True)
class RunResult:
    policy: str
    records: tuple[RequestRecord, ...]
    summary: Summary
    samples: tuple[Sample, ...]
    role_switches: tuple[RoleSwitch, ...]
    egress_rate_history: tuple[tuple[float, float], ...]  # (time_s, bytes/s from then on)
    egress_capacity_history: tuple[tuple[float, float], ...]  # (time_s, Gbps from then on)
    num_events: int
    wall_s: float
    reverse_bytes: float = 0.0  # bytes sent PD -> PrfaaS (cross-cluster prefix-cache transfers)

    @property
    def cross_cluster_bytes(self) -> float:
        """Bytes over the link in both directions: the egress (summary.egress_bytes) plus the reverse."""
        return self.summary.egress_bytes + self.reverse_bytes

    @property
    def events_per_s(self) -> float:
        return self.num_events / self.wall_s if self.wall_s > 0 else 0.0


def state_bytes_fn(deployment: Deployment) -> Callable[[float], float] | None:
    """S_kv(l) of the deployment's model (the first node with a prefill cost model)."""
    for node in deployment.nodes:
        if node.prefill_cost is not None:
            return node.prefill_cost.s_kv_bytes
    return None


def prefill_time_fn(deployment: Deployment) -> Callable[[ClusterKind, float, float], float] | None:
    """T(cluster, uncached, cached): the first prefill node of each cluster's cost model (for the policy)."""
    models: dict[ClusterKind, PrefillCostModel] = {}
    for node in deployment.nodes:
        if node.prefill_cost is not None:
            models.setdefault(node.cluster, node.prefill_cost)
    if not models:
        return None

    def prefill_time_s(cluster: ClusterKind, uncached: float, cached: float) -> float:
        model = models.get(cluster) or next(iter(models.values()))
        return model.t_prefill_s(max(uncached, 1.0), cached)

    return prefill_time_s


def simulate(deployment: Deployment, policy: str, requests: Sequence[WorkloadRequest], *,
             policy_config: PolicyConfig | None = None, script: Sequence[ScriptedEvent] = (),
             options: SimOptions | None = None, rebalance: bool = False, reoptimise: Reoptimiser | None = None,
             warmup_s: float = 0.0, measure_end_s: float | None = None,
             progress: Callable[[float], None] | None = None, kv_index: GlobalKvIndex | None = None) -> RunResult:
    """Run `requests` through `deployment` under the registered router `policy`; `kv_index`: prefix caches
    to start from (e.g. `scenario.warmed_prefix_index`), empty by default."""
    opts = options or SimOptions()
    cfg = policy_config or PolicyConfig()
    index = kv_index if kv_index is not None else GlobalKvIndex()
    router = make_router(policy, cfg, kv_index=index, state_bytes=state_bytes_fn(deployment),
                         prefill_time_s=prefill_time_fn(deployment))
    rebalancer = None
    if rebalance:
        rebalancer = PdRebalancer(cfg.rebalancer, reoptimise=reoptimise, threshold_tokens=router.threshold_tokens)
    sim = Simulator(deployment, router, requests, kv_index=index, rebalancer=rebalancer, script=script,
                    options=opts, progress=progress)
    start = time.perf_counter()
    records = sim.run()
    wall = time.perf_counter() - start
    util = {role.value: u for role, u in sim.control.utilisation().items()}
    summary = summarize(records, rate_history=sim.egress.rate_history, utilisation=util,
                        tpot_slo_s=opts.tpot_slo_s, ttft_slo_s=opts.ttft_slo_s, warmup_s=warmup_s,
                        end_s=measure_end_s)
    return RunResult(
        policy=policy, records=tuple(records), summary=summary, samples=tuple(sim.control.samples),
        role_switches=tuple(sim.control.role_switches), egress_rate_history=tuple(sim.egress.rate_history),
        egress_capacity_history=tuple(sim.egress.capacity_history), num_events=sim.loop.num_events, wall_s=wall,
        reverse_bytes=sim.links[REVERSE_LINK_ID].bytes_sent_total,
    )


def role_of_count(samples: Sequence[Sample], role: Role) -> list[tuple[float, int]]:
    """(time_s, count) of PD-P or PD-D nodes over time, from the samples."""
    pick = {Role.PD_PREFILL: lambda s: s.num_pd_prefill, Role.PD_DECODE: lambda s: s.num_pd_decode,
            Role.PRFAAS_PREFILL: lambda s: s.num_prfaas_up}[role]
    return [(s.time_s, pick(s)) for s in samples]
