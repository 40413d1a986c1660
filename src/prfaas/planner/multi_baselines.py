"""What the multi-site optimum is compared with, each at the same traffic mix (Lambda = scale of the mix):

- `alone`: every PD cluster on its own, no PrfaaS cluster (each region's best homogeneous split).
- `dedicated`: per-region PrfaaS clusters -- each PrfaaS cluster serves only its home region (the PD cluster
  it has the lowest-latency link to; ties: the first listed), then optimised as usual. A PD region with no
  home cluster runs alone. This is "build a PrfaaS cluster next to every region".
- `naive_split`: the PrfaaS clusters used as one shared pool with a naive split: every region uses one common
  threshold and spreads its offloads over the PrfaaS clusters it has a live link to in proportion to their
  instance counts (what a load balancer that ignores links and demand does); the common threshold and every
  split are still optimised on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prfaas.planner.model import LengthMode
from prfaas.planner.multi import MultiPlan, optimize_multi
from prfaas.planner.multi_case import MultiCase, candidate_thresholds, region_table

NAIVE_COARSE_CANDIDATES = 256


@dataclass(frozen=True, slots=True)
class NaivePlan:
    scale: float
    threshold_tokens: float | None


def alone_scale(case: MultiCase, mode: LengthMode = LengthMode.REPRESENTATIVE) -> float:
    """Lambda with every region alone (no offload)."""
    weights = case.topology.traffic_weights()
    caps = []
    top = np.array([case.lengths.max_tokens])
    for j in range(len(case.topology.pd)):
        if weights[j] > 0:
            caps.append(float(region_table(case, j, top, mode).local_cap_rps[0]) / weights[j])
    return min(caps)


def home_links(case: MultiCase) -> set[tuple[str, str]]:
    """The (prfaas, pd) pairs of the dedicated baseline: each PrfaaS cluster to its lowest-latency PD cluster."""
    topo = case.topology
    keep: set[tuple[str, str]] = set()
    for site in topo.prfaas:
        links = [lk for lk in topo.links if lk.prfaas == site.name]
        if links:
            best = min(links, key=lambda lk: (lk.latency_s, topo.pd_names.index(lk.pd)))
            keep.add((best.prfaas, best.pd))
    return keep


def dedicated_plan(case: MultiCase, mode: LengthMode = LengthMode.REPRESENTATIVE, **kwargs: object) -> MultiPlan:
    """The optimum when each PrfaaS cluster serves only its home region."""
    keep = home_links(case)
    dropped = {(lk.prfaas, lk.pd) for lk in case.topology.links if (lk.prfaas, lk.pd) not in keep}
    sub = MultiCase(name=f"{case.name} (dedicated)", topology=case.topology.without_links(dropped),
                    prfaas_models=case.prfaas_models, pd_models=case.pd_models, lengths=case.lengths,
                    output_tokens=case.output_tokens, bs_max=case.bs_max, t_decode_s=case.t_decode_s,
                    prefix_hits=case.prefix_hits, assumptions=case.assumptions)
    return optimize_multi(sub, mode, **kwargs)  # type: ignore[arg-type]


def naive_split(case: MultiCase, mode: LengthMode = LengthMode.REPRESENTATIVE,
                num_coarse: int = NAIVE_COARSE_CANDIDATES) -> NaivePlan:
    """Best common threshold with proportional spreading (module docstring); closed form per threshold."""
    topo = case.topology
    grid = candidate_thresholds(case, num_coarse)
    tables = [region_table(case, j, grid, mode) for j in range(len(topo.pd))]
    weights = topo.traffic_weights()
    index = {name: i for i, name in enumerate(topo.prfaas_names)}
    fractions: list[dict[int, tuple[float, float]]] = []  # per region: i -> (fraction, capacity bytes/s)
    for pd in topo.pd:
        live = [(index[lk.prfaas], lk.capacity_gbps * 1e9 / 8) for lk in topo.links_to(pd.name)
                if lk.capacity_gbps > 0 and topo.prfaas[index[lk.prfaas]].instances > 0]
        total = sum(topo.prfaas[i].instances for i, _ in live)
        fractions.append({i: (topo.prfaas[i].instances / total, cap) for i, cap in live})
    best = NaivePlan(0.0, None)
    for k, t in enumerate(grid):
        caps = []
        busy = np.zeros(len(topo.prfaas))  # seconds of PrfaaS work per unit of Lambda
        for j, table in enumerate(tables):
            w = weights[j]
            if w <= 0:
                continue
            caps.append(table.local_cap_rps[k] / w)
            demand = w * table.offload_fraction[k]
            if demand <= 0:
                continue
            if not fractions[j]:
                caps.append(0.0)
                continue
            for i, (f, cap) in fractions[j].items():
                busy[i] += demand * f * table.t_long_s[k, i]
                caps.append(cap / (demand * f * table.shipped_bytes[k, i]))
        for i, site in enumerate(topo.prfaas):
            if busy[i] > 0:
                caps.append(site.instances / busy[i])
        scale = float(min(caps))
        if scale > best.scale:
            best = NaivePlan(scale, float(t))
    return best
