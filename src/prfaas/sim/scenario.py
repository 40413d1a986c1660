"""From a planner `Scenario` (and its plan) to a simulated deployment, a policy and a workload.

One function per step, so the paper case, the TOML config and the tests build runs the same way:

    deployment_for(scenario, n_p, n_d, ...)   nodes (PrfaaS prefill, PD-P, PD-D) and the egress link
    policy_for(topology)                      the registered router name for a topology
    poisson_workload(lengths, rate, ...)      Poisson arrivals with lengths from a distribution
    prefix_hit_workload(hits, rate, ...)      the same for a planner's prefix-hit workload: each request
                                              carries its cached prefix, warmed on every prefill node
    reoptimiser_for(scenario)                 the planner's threshold search, for the rebalancer

PD nodes carry both the prefill and the decode cost model, so the long-term loop can convert them.
The paper gives T_decode as a constant (25 ms at the SLO) and no decode profile; `ConstantStepDecode`
is that `DecodeCostModel`.
"""

from __future__ import annotations

import numpy as np

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.perf.base import DecodeCostModel, PrefillCostModel
from prfaas.planner.scenario import Scenario, Topology
from prfaas.policy.kv_index import GlobalKvIndex
from prfaas.policy.rebalancer import Reoptimiser
from prfaas.sim.deployment import Deployment, LinkSpec
from prfaas.sim.node import NodeSpec
from prfaas.workload.arrivals import ArrivalProcess, PoissonArrivals
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.generate import synthetic_requests
from prfaas.workload.prefix import PrefixHits
from prfaas.workload.request import BLOCK_TOKENS, WorkloadRequest, num_blocks_for

WARM_CACHE_BLOCKS = 10**9  # prefix-hit runs: caches that never evict (the planner assumes every hit holds)

# ~ 0.85 TiB of full-attention KV per node at ~17 KiB/token (our fit of arXiv 2604.15039 Table 5)
DEFAULT_CACHE_BLOCKS = 100_000

POLICY_FOR_TOPOLOGY = {
    Topology.PRFAAS_PD: "prfaas",
    Topology.HOMOGENEOUS: "homogeneous",
    Topology.NAIVE: "naive-offload",
}


class ConstantStepDecode:
    """`DecodeCostModel` with a fixed step time (the paper's T_decode at the SLO)."""

    def __init__(self, t_step_s: float) -> None:
        if t_step_s <= 0:
            raise ValueError("t_step_s must be > 0")
        self._t_step_s = t_step_s

    @property
    def name(self) -> str:
        return f"constant {self._t_step_s * 1e3:g} ms/step"

    def t_step_s(self, batch_size: int, context_tokens: float) -> float:
        return self._t_step_s


def decode_model_for(scenario: Scenario) -> DecodeCostModel:
    return scenario.pd_decode if scenario.pd_decode is not None else ConstantStepDecode(scenario.t_decode_s)


def pd_nodes(n_p: int, n_d: int, prefill: PrefillCostModel | None, decode: DecodeCostModel, bs_max: int,
             cache_blocks: int = DEFAULT_CACHE_BLOCKS, prefix: str = "pd") -> list[NodeSpec]:
    """`n_p` PD-P then `n_d` PD-D nodes, ids `pd-0`, `pd-1`, ..."""
    roles = [Role.PD_PREFILL] * n_p + [Role.PD_DECODE] * n_d
    return [NodeSpec(f"{prefix}-{i}", ClusterKind.PD, role, prefill, decode, bs_max, cache_blocks)
            for i, role in enumerate(roles)]


def prfaas_nodes(n: int, prefill: PrefillCostModel, cache_blocks: int = DEFAULT_CACHE_BLOCKS,
                 prefix: str = "prfaas") -> list[NodeSpec]:
    return [NodeSpec(f"{prefix}-{i}", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL, prefill, None, 1, cache_blocks)
            for i in range(n)]


def deployment_for(scenario: Scenario, n_p: int, n_d: int, *, latency_s: float = 0.005,
                   cache_blocks: int = DEFAULT_CACHE_BLOCKS, egress_gbps: float | None = None) -> Deployment:
    """Nodes for one of the three topologies; `n_p` is ignored for NAIVE (all PD nodes decode)."""
    decode = decode_model_for(scenario)
    nodes: list[NodeSpec] = []
    if scenario.topology in (Topology.PRFAAS_PD, Topology.NAIVE):
        assert scenario.prfaas_prefill is not None
        nodes += prfaas_nodes(scenario.n_prfaas, scenario.prfaas_prefill, cache_blocks)
    if scenario.topology is Topology.NAIVE:
        nodes += pd_nodes(0, n_d, scenario.pd_prefill, decode, scenario.bs_max, cache_blocks)
    else:
        nodes += pd_nodes(n_p, n_d, scenario.pd_prefill, decode, scenario.bs_max, cache_blocks)
    gbps = egress_gbps if egress_gbps is not None else scenario.egress_gbps
    return Deployment(tuple(nodes), LinkSpec(capacity_gbps=gbps, latency_s=latency_s))


def poisson_workload(lengths: DiscreteLengthDistribution, output_tokens: int, rate_rps: float, *,
                     duration_s: float, seed: int) -> list[WorkloadRequest]:
    return synthetic_requests(lengths, output_tokens, PoissonArrivals(rate_rps), duration_s=duration_s, seed=seed)


def prefix_hit_workload(hits: PrefixHits, output_tokens: int, rate_rps: float, *, duration_s: float,
                        seed: int) -> tuple[list[WorkloadRequest], dict[int, int]]:
    """Poisson requests whose (uncached, cached) split is drawn from `hits`, and each request's number of
    cached blocks. Block hashes are unique per request, so the only hits are the warmed prefixes
    (`warmed_prefix_index`); the cached tokens a node then finds are exactly the drawn ones."""
    arrival_ss, pair_ss = np.random.SeedSequence(seed).spawn(2)
    times = PoissonArrivals(rate_rps).arrival_times(np.random.default_rng(arrival_ss), duration_s)
    picks = np.random.default_rng(pair_ss).choice(hits.probs.size, size=times.size, p=hits.probs / hits.probs.sum())
    requests: list[WorkloadRequest] = []
    warm_blocks: dict[int, int] = {}
    for i, (t, k) in enumerate(zip(times, picks, strict=True)):
        cached, total = int(hits.cached_tokens[k]), int(hits.uncached_tokens[k] + hits.cached_tokens[k])
        chain = tuple(i * 1024 + j for j in range(num_blocks_for(total)))  # <= 1024 blocks per prompt
        requests.append(WorkloadRequest(i, float(t), total, output_tokens, chain))
        warm_blocks[i] = -(-cached // BLOCK_TOKENS)  # cached_tokens_for caps a last partial block at l - 1
    return requests, warm_blocks


def warmed_prefix_index(deployment: Deployment, requests: list[WorkloadRequest], warm_blocks: dict[int, int], *,
                        decode_holds_prefix: bool = False) -> GlobalKvIndex:
    """A `GlobalKvIndex` in which every prefill node (and every PD-D node too when the decode side holds
    prefixes) already holds each request's cached prefix."""
    index = GlobalKvIndex()
    for node in deployment.nodes:
        index.add_node(node.instance_id, node.cluster, WARM_CACHE_BLOCKS)
    holder_ids = [n.instance_id for n in deployment.nodes if decode_holds_prefix or n.role is not Role.PD_DECODE]
    for req in requests:
        head = req.block_hashes[: warm_blocks.get(req.request_id, 0)]
        if head:
            for instance_id in holder_ids:
                index.insert(instance_id, head)
    return index


def modulated_workload(lengths: DiscreteLengthDistribution, output_tokens: int, arrivals: ArrivalProcess, *,
                       duration_s: float, seed: int) -> list[WorkloadRequest]:
    return synthetic_requests(lengths, output_tokens, arrivals, duration_s=duration_s, seed=seed)


def reoptimiser_for(scenario: Scenario) -> Reoptimiser:
    """The planner's best threshold for given PD counts (on observed lengths when the loop has them)."""
    from prfaas.planner.optimize import optimize_threshold

    def reoptimise(n_p: int, n_d: int, lengths: DiscreteLengthDistribution | None) -> int:
        scen = scenario if lengths is None else scenario.replace(lengths=lengths)
        point = optimize_threshold(scen, n_p, n_d)
        return int(point.threshold_tokens) if point.threshold_tokens is not None else 0

    return reoptimise
