"""The inputs of a multi-site plan: a topology plus one prefill cost model per cluster and the shared traffic shape.

Per PD region j and candidate threshold t, `region_table` evaluates the paper's model (`ThroughputModel`,
so the REPRESENTATIVE/EXACT length modes and prefix hits behave exactly as in the two-cluster planner) for
every PrfaaS cluster i: p_j(t) = P(L > t), T_long on i's accelerator, the bytes an offload ships, and the
region's best local cap L_j(t) = max over splits of min(N_p / (T_short (1 - p)), Theta_pd-d(N_d)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prfaas.core.topology import SiteTopology
from prfaas.perf.base import PrefillCostModel
from prfaas.planner.model import LengthMode, ThroughputModel
from prfaas.planner.optimize import threshold_candidates
from prfaas.planner.report import Assumption
from prfaas.planner.scenario import Scenario, Topology
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.prefix import PrefixHits


@dataclass(frozen=True, slots=True)
class MultiCase:
    """Everything the multi-site optimiser needs. Models are per cluster, in the topology's order."""

    name: str
    topology: SiteTopology
    prfaas_models: tuple[PrefillCostModel, ...]
    pd_models: tuple[PrefillCostModel, ...]
    lengths: DiscreteLengthDistribution
    output_tokens: float
    bs_max: int
    t_decode_s: float
    prefix_hits: PrefixHits | None = None
    assumptions: tuple[Assumption, ...] = ()

    def __post_init__(self) -> None:
        if len(self.prfaas_models) != len(self.topology.prfaas) or len(self.pd_models) != len(self.topology.pd):
            raise ValueError("one prefill model per cluster, in the topology's order")

    def pair_scenario(self, i: int, j: int) -> Scenario:
        """PrfaaS cluster i with PD region j as a two-cluster scenario (n_prfaas 1: only per-request terms used)."""
        pd = self.topology.pd[j]
        return Scenario(
            name=f"{self.topology.prfaas[i].name}->{pd.name}", topology=Topology.PRFAAS_PD,
            pd_prefill=self.pd_models[j], pd_decode=None, prfaas_prefill=self.prfaas_models[i], n_prfaas=1,
            n_pd=pd.instances, egress_gbps=None, lengths=self.lengths, output_tokens=self.output_tokens,
            bs_max=self.bs_max, t_decode_s=self.t_decode_s, prefix_hits=self.prefix_hits)

    def local_scenario(self, j: int) -> Scenario:
        """PD region j alone (homogeneous: every prefill local)."""
        pd = self.topology.pd[j]
        return Scenario(
            name=f"{pd.name} alone", topology=Topology.HOMOGENEOUS, pd_prefill=self.pd_models[j], pd_decode=None,
            prfaas_prefill=None, n_prfaas=0, n_pd=pd.instances, egress_gbps=None, lengths=self.lengths,
            output_tokens=self.output_tokens, bs_max=self.bs_max, t_decode_s=self.t_decode_s,
            prefix_hits=self.prefix_hits)

    def theta_pd_d(self, n_d: int) -> float:
        return n_d * self.bs_max / (self.t_decode_s * self.output_tokens)

    def splits(self, j: int) -> list[tuple[int, int]]:
        pd = self.topology.pd[j]
        if pd.prefill_instances is not None:
            return [(pd.prefill_instances, pd.instances - pd.prefill_instances)]
        return [(n_p, pd.instances - n_p) for n_p in range(1, pd.instances)]


@dataclass(frozen=True, slots=True)
class RegionTable:
    """Per-threshold terms of one PD region (arrays over the candidate thresholds; I = number of PrfaaS clusters)."""

    thresholds: np.ndarray  # (K,)
    offload_fraction: np.ndarray  # (K,) p_j(t)
    per_np_rps: np.ndarray  # (K,) 1 / (T_short (1 - p)); inf when p == 1
    local_cap_rps: np.ndarray  # (K,) L_j(t): the best split's local cap
    t_long_s: np.ndarray  # (K, I) mean PrfaaS prefill time on cluster i (nan when p == 0)
    shipped_bytes: np.ndarray  # (K, I) mean bytes an offload ships
    theta_d_by_split: np.ndarray  # (S,) Theta_pd-d per split
    n_p_by_split: np.ndarray  # (S,)
    n_d_by_split: np.ndarray  # (S,)

    def split_for(self, k: int, load_rps: float) -> tuple[int, int]:
        """The smallest N_p whose split sustains `load_rps` at threshold index k (the best split if none does)."""
        caps = np.minimum(self.n_p_by_split * self.per_np_rps[k], self.theta_d_by_split)
        ok = np.flatnonzero(caps >= load_rps * (1.0 - 1e-9))
        idx = int(ok[0]) if ok.size else int(np.argmax(caps))
        return int(self.n_p_by_split[idx]), int(self.n_d_by_split[idx])


def candidate_thresholds(case: MultiCase, num_coarse: int) -> np.ndarray:
    """The coarse threshold grid (the two-cluster optimiser's candidates; always includes 'offload nothing')."""
    return threshold_candidates(case.local_scenario(0), num_coarse)


def region_table(case: MultiCase, j: int, thresholds: np.ndarray, mode: LengthMode) -> RegionTable:
    """Evaluate region j's terms at every threshold (see module docstring)."""
    n_prfaas = len(case.topology.prfaas)
    k = thresholds.size
    p = np.zeros(k)
    per_np = np.full(k, np.inf)
    t_long = np.full((k, n_prfaas), np.nan)
    shipped = np.full((k, n_prfaas), np.nan)
    if n_prfaas:
        pair_models = [ThroughputModel(case.pair_scenario(i, j), mode) for i in range(n_prfaas)]
    else:  # no PrfaaS cluster at all: only the local terms are read
        local = case.local_scenario(j).replace(topology=Topology.PRFAAS_PD, n_prfaas=1,
                                               prfaas_prefill=case.pd_models[j])
        pair_models = [ThroughputModel(local, mode)]
    for idx, t in enumerate(thresholds):
        for i, model in enumerate(pair_models):
            point = model.evaluate(float(t), 1, 1)
            p[idx] = point.offload_fraction
            if point.t_prefill_short_s is not None and point.offload_fraction < 1.0:
                per_np[idx] = 1.0 / (point.t_prefill_short_s * (1.0 - point.offload_fraction))
            if n_prfaas and point.t_prefill_long_s is not None:
                t_long[idx, i] = point.t_prefill_long_s
                shipped[idx, i] = point.s_kv_long_bytes
    splits = case.splits(j)
    n_p = np.array([a for a, _ in splits], dtype=np.float64)
    n_d = np.array([b for _, b in splits], dtype=np.float64)
    theta_d = np.array([case.theta_pd_d(b) for _, b in splits])
    local_cap = np.minimum(n_p[None, :] * per_np[:, None], theta_d[None, :]).max(axis=1)
    return RegionTable(thresholds=np.asarray(thresholds, dtype=np.float64), offload_fraction=p, per_np_rps=per_np,
                       local_cap_rps=local_cap, t_long_s=t_long, shipped_bytes=shipped, theta_d_by_split=theta_d,
                       n_p_by_split=n_p, n_d_by_split=n_d)
