"""Throughput-optimal plan for many PrfaaS clusters and many PD clusters (issue 14).

The optimisation. PD region j offers traffic in fixed proportions w_j (`SiteTopology.traffic_weights`);
we maximise the common scale Lambda (region j serves Lambda * w_j req/s) over

- a threshold t_j and a split N_p,j + N_d,j per region, and
- an assignment x_ij >= 0 (req/s of region j's offloads prefilled on PrfaaS cluster i, only where a link
  i -> j exists),

subject to (Eqs. 3-6 of the paper, per cluster and per link):

    Lambda * w_j <= L_j(t_j)                                    local PD-P and PD-D of region j
    sum_i x_ij  = Lambda * w_j * p_j(t_j)                       every offload is prefilled somewhere
    sum_j x_ij * T_i(t_j) <= N_i                                PrfaaS cluster i's compute
    x_ij * S_ij(t_j)      <= B_ij                               link i -> j's capacity

where L_j(t) = max over splits of min(N_p / (T_short (1 - p)), Theta_pd-d(N_d)) -- the split only enters
region j's own constraint, so it is chosen per threshold (then shrunk to the smallest N_p that sustains the
load, the two-cluster optimiser's tie-break).

Method. For fixed thresholds the rest is a linear programme in (Lambda, x), solved exactly by a small simplex
(`planner.lp`), whose duals name the binding constraints. The thresholds range over the two-cluster
optimiser's candidate grid: every combination when the product of the grids is at most `max_joint`
(exact on the grid), otherwise cyclic coordinate ascent from "offload nothing" (a heuristic, reported as
such). Then each region's threshold is refined, coordinate-wise, over every support point between the coarse
neighbours of its best, as the two-cluster optimiser does; on a 1x1 topology this reproduces its result.
Ties: larger Lambda, then fewer PD-P instances in total, then smaller thresholds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from prfaas.core.units import BITS_PER_BYTE, GBPS_BITS_PER_S, gbps_to_bytes_per_s
from prfaas.planner.lp import lp_max
from prfaas.planner.model import LengthMode
from prfaas.planner.multi_case import MultiCase, RegionTable, candidate_thresholds, region_table

MULTI_COARSE_CANDIDATES = 64
MAX_JOINT_COMBINATIONS = 20_000
_REL_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class RegionPlan:
    name: str
    threshold_tokens: float
    n_p: int
    n_d: int
    offload_fraction: float
    served_rps: float
    offloaded_rps: float
    local_cap_rps: float  # L_j(t_j) at the chosen split
    local_binding: str  # "pd_prefill" or "pd_decode": the smaller of the two local caps


@dataclass(frozen=True, slots=True)
class SitePlan:
    name: str
    instances: int
    served_rps: float
    utilisation: float  # busy fraction of the cluster's instances


@dataclass(frozen=True, slots=True)
class LinkPlan:
    link_id: str
    prfaas: str
    pd: str
    offloaded_rps: float
    egress_gbps: float
    capacity_gbps: float
    utilisation: float


@dataclass(frozen=True, slots=True)
class MultiPlan:
    """The optimum: Lambda (scale of the traffic mix), per-region, per-cluster and per-link operating points."""

    scale: float  # Lambda: region j serves scale * w_j req/s
    total_rps: float
    regions: tuple[RegionPlan, ...]
    sites: tuple[SitePlan, ...]
    links: tuple[LinkPlan, ...]
    binding: tuple[str, ...]  # constraints with a positive shadow price ("pd_prefill@eu", "link a->eu", ...)
    exhaustive: bool  # True: every threshold combination of the grid was solved
    num_lps: int


class _Problem:
    """The LP for a fixed threshold index per region. Rows (fixed structure; a row whose terms vanish is trivially
    satisfied): one `local@pd` and one `demand@pd` per region, one `link a->pd` per usable link, one
    `prfaas_prefill@a` per PrfaaS cluster. Coefficients are normalised by their capacity."""

    def __init__(self, case: MultiCase, tables: list[RegionTable], instances: tuple[int, ...] | None = None) -> None:
        topo = case.topology
        self.case = case
        self.weights = np.array(topo.traffic_weights(), dtype=np.float64)
        self.instances = instances if instances is not None else tuple(s.instances for s in topo.prfaas)
        index = {name: i for i, name in enumerate(topo.prfaas_names)}
        self.edges: list[tuple[int, int, float]] = []  # (i, j, capacity bytes/s)
        self.latency_s: list[float] = []
        for j, pd in enumerate(topo.pd):
            for lk in topo.links_to(pd.name):
                i = index[lk.prfaas]
                if lk.capacity_gbps > 0 and self.instances[i] > 0 and self.weights[j] > 0:
                    self.edges.append((i, j, gbps_to_bytes_per_s(lk.capacity_gbps)))
                    self.latency_s.append(lk.latency_s)
        n_regions, n_sites, n_edges = len(topo.pd), len(topo.prfaas), len(self.edges)
        self.names = ([f"local@{pd.name}" for pd in topo.pd] + [f"demand@{pd.name}" for pd in topo.pd]
                      + [f"link {topo.prfaas[i].name}->{topo.pd[j].name}" for i, j, _ in self.edges]
                      + [f"prfaas_prefill@{s.name}" for s in topo.prfaas])
        self.template = np.zeros((2 * n_regions + n_edges + n_sites, 1 + n_edges))
        self.template[:n_regions, 0] = 1.0
        for e, (_, j, _) in enumerate(self.edges):
            self.template[n_regions + j, 1 + e] = -1.0
        self.rhs = np.zeros(self.template.shape[0])
        self.rhs[2 * n_regions:] = 1.0
        self.num_lps = 0
        self.tables = tables

    @property
    def tables(self) -> list[RegionTable]:
        return self._tables

    @tables.setter
    def tables(self, tables: list[RegionTable]) -> None:
        """Per region, the coefficient of every row it touches, over its threshold grid."""
        self._tables = tables
        self._coef: list[tuple[np.ndarray, np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]] = []
        for j, table in enumerate(tables):
            w = self.weights[j]
            local = table.local_cap_rps / w if w > 0 else np.full(table.thresholds.size, 1e12)
            demand = w * table.offload_fraction
            per_edge = []
            for e, (i, jj, cap) in enumerate(self.edges):
                if jj != j:
                    continue
                link = np.nan_to_num(table.shipped_bytes[:, i] / cap, nan=0.0)
                busy = np.nan_to_num(table.t_long_s[:, i] / self.instances[i], nan=0.0)
                per_edge.append((e, link, busy))
            self._coef.append((local, demand, per_edge))

    def solve(self, ks: tuple[int, ...], prefer_near: bool = False) -> tuple[float, np.ndarray, list[str], np.ndarray]:
        """(Lambda, x per edge, row names, duals) at threshold indices `ks`. `prefer_near`: among the optimal
        assignments pick one that favours low-latency links (a 1e-7 relative penalty on latency-weighted
        offloads; x is rescaled to the exact Lambda)."""
        n_regions, n_edges = len(self._tables), len(self.edges)
        a = self.template.copy()
        b = self.rhs.copy()
        site_row = 2 * n_regions + n_edges
        for j, k in enumerate(ks):
            local, demand, per_edge = self._coef[j]
            b[j] = local[k]
            a[n_regions + j, 0] = demand[k]
            for e, link, busy in per_edge:
                a[2 * n_regions + e, 1 + e] = link[k]
                a[site_row + self.edges[e][0], 1 + e] = busy[k]
        c = np.zeros(1 + n_edges)
        c[0] = 1.0
        sol = lp_max(c, a, b)
        self.num_lps += 1
        if not prefer_near or n_edges < 2 or sol.value <= 0:
            return sol.value, sol.z[1:], self.names, sol.duals
        lat = np.array([self.latency_s[e] for e in range(n_edges)])
        c[1:] = -1e-7 * (lat + 1e-3) / (lat.max() + 1e-3) / max(float(sol.z[1:].sum()), 1e-12) * sol.value
        near = lp_max(c, a, b)
        x = near.z[1:] * (sol.value / near.z[0]) if near.z[0] > 0 else sol.z[1:]
        return sol.value, x, self.names, sol.duals

    def lam(self, ks: tuple[int, ...]) -> float:
        return self.solve(ks)[0]

    def tie_key(self, ks: tuple[int, ...], lam: float) -> tuple[float, float]:
        n_p_total = sum(self._tables[j].split_for(k, lam * self.weights[j])[0] for j, k in enumerate(ks))
        t_total = sum(float(self._tables[j].thresholds[k]) for j, k in enumerate(ks))
        return -float(n_p_total), -t_total


class _Best:
    """Running argmax with the documented tie-break (Lambda, then fewer PD-P instances, then smaller thresholds)."""

    def __init__(self, problem: _Problem) -> None:
        self.problem = problem
        self.ks: tuple[int, ...] | None = None
        self.lam = -1.0

    def offer(self, ks: tuple[int, ...]) -> bool:
        lam = self.problem.lam(ks)
        if self.ks is None or lam > self.lam * (1 + _REL_TOL) + 1e-300:
            self.ks, self.lam = ks, lam
            return True
        if lam >= self.lam * (1 - _REL_TOL) and self.problem.tie_key(ks, lam) > self.problem.tie_key(self.ks, self.lam):
            self.ks, self.lam = ks, max(lam, self.lam)
            return True
        return False


def _search(problem: _Problem, max_joint: int) -> tuple[tuple[int, ...], bool]:
    """Best threshold indices on the coarse grids: exhaustive when small, coordinate ascent otherwise."""
    sizes = [t.thresholds.size for t in problem.tables]
    best = _Best(problem)
    if int(np.prod(sizes, dtype=np.float64)) <= max_joint:
        for ks in itertools.product(*(range(n) for n in sizes)):
            best.offer(ks)
        assert best.ks is not None
        return best.ks, True
    best.offer(tuple(n - 1 for n in sizes))  # the largest thresholds: offload nothing
    for _ in range(50):
        changed = False
        for j, n in enumerate(sizes):
            assert best.ks is not None
            current = best.ks
            for k in range(n):
                changed |= best.offer((*current[:j], k, *current[j + 1:]))
        if not changed:
            break
    assert best.ks is not None
    return best.ks, False


def best_on_grid(case: MultiCase, tables: list[RegionTable], instances: tuple[int, ...],
                 max_joint: int = MAX_JOINT_COMBINATIONS) -> MultiPlan:
    """The optimum on precomputed region tables for given PrfaaS instance counts (the sizing loop reuses tables)."""
    problem = _Problem(case, tables, instances)
    ks, exhaustive = _search(problem, max_joint)
    return _plan(problem, ks, exhaustive)


def optimize_multi(case: MultiCase, mode: LengthMode = LengthMode.REPRESENTATIVE, *,
                   num_coarse: int = MULTI_COARSE_CANDIDATES, max_joint: int = MAX_JOINT_COMBINATIONS,
                   refine: bool = True, instances: tuple[int, ...] | None = None,
                   thresholds: np.ndarray | None = None) -> MultiPlan:
    """The optimum of the module docstring. `thresholds` replaces the candidate grid (tests, brute force);
    `instances` overrides the PrfaaS instance counts (the sizing mode)."""
    grid = np.asarray(thresholds, dtype=np.float64) if thresholds is not None else candidate_thresholds(case,
                                                                                                        num_coarse)
    tables = [region_table(case, j, grid, mode) for j in range(len(case.topology.pd))]
    problem = _Problem(case, tables, instances)
    ks, exhaustive = _search(problem, max_joint)
    if refine and thresholds is None:
        tables, ks = _refine(case, mode, problem, grid, ks)
        problem.tables = tables
    return _plan(problem, ks, exhaustive)


def _refine(case: MultiCase, mode: LengthMode, problem: _Problem, grid: np.ndarray,
            ks: tuple[int, ...]) -> tuple[list[RegionTable], tuple[int, ...]]:
    """Per region, every support point between the coarse neighbours of its best threshold, others fixed."""
    lengths = case.lengths.lengths
    tables = list(problem.tables)
    chosen = [float(grid[k]) for k in ks]
    for j in range(len(tables)):
        k = ks[j]
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
        extra = lengths[(lengths > lo) & (lengths < hi)]
        if extra.size == 0:
            continue
        local_grid = np.unique(np.concatenate([[chosen[j]], extra]))
        tables[j] = region_table(case, j, local_grid, mode)
        problem.tables = tables
        fixed = [int(np.searchsorted(tables[m].thresholds, chosen[m])) for m in range(len(tables))]
        best = _Best(problem)
        for kk in range(local_grid.size):
            best.offer((*fixed[:j], kk, *fixed[j + 1:]))
        assert best.ks is not None
        chosen[j] = float(local_grid[best.ks[j]])
    final = tuple(int(np.searchsorted(tables[m].thresholds, chosen[m])) for m in range(len(tables)))
    return tables, final


def _plan(problem: _Problem, ks: tuple[int, ...], exhaustive: bool) -> MultiPlan:
    case, topo = problem.case, problem.case.topology
    lam, x, names, duals = problem.solve(ks, prefer_near=True)
    regions = []
    binding_local: dict[str, str] = {}
    for j, pd in enumerate(topo.pd):
        table, k = problem.tables[j], ks[j]
        load = float(lam * problem.weights[j])
        n_p, n_d = table.split_for(k, load)
        prefill_cap = n_p * table.per_np_rps[k]
        decode_cap = case.theta_pd_d(n_d)
        which = "pd_prefill" if prefill_cap <= decode_cap else "pd_decode"
        binding_local[pd.name] = which
        regions.append(RegionPlan(
            name=pd.name, threshold_tokens=float(table.thresholds[k]), n_p=n_p, n_d=n_d,
            offload_fraction=float(table.offload_fraction[k]), served_rps=load,
            offloaded_rps=load * float(table.offload_fraction[k]), local_cap_rps=float(min(prefill_cap, decode_cap)),
            local_binding=which))
    sites = []
    for i, site in enumerate(topo.prfaas):
        n = problem.instances[i]
        busy = sum(x[e] * problem.tables[j].t_long_s[ks[j], i] for e, (ii, j, _) in enumerate(problem.edges)
                   if ii == i and x[e] > 0)
        served = sum(x[e] for e, (ii, _, _) in enumerate(problem.edges) if ii == i)
        sites.append(SitePlan(site.name, n, float(served), float(busy / n) if n > 0 else 0.0))
    links = []
    for lk in topo.links:
        i, j = topo.prfaas_names.index(lk.prfaas), topo.pd_names.index(lk.pd)
        rps = sum(float(x[e]) for e, (ii, jj, _) in enumerate(problem.edges) if (ii, jj) == (i, j))
        s_bytes = problem.tables[j].shipped_bytes[ks[j], i]
        gbps = rps * float(s_bytes) * BITS_PER_BYTE / GBPS_BITS_PER_S if rps > 0 else 0.0
        links.append(LinkPlan(lk.link_id, lk.prfaas, lk.pd, rps, gbps, lk.capacity_gbps,
                              gbps / lk.capacity_gbps if lk.capacity_gbps > 0 else 0.0))
    binding = []
    for name, dual in zip(names, duals, strict=True):
        if dual <= 1e-9 or name.startswith("demand@"):
            continue
        if name.startswith("local@"):
            region = name.split("@", 1)[1]
            binding.append(f"{binding_local[region]}@{region}")
        else:
            binding.append(name)
    return MultiPlan(scale=float(lam), total_rps=float(lam) * float(problem.weights.sum()), regions=tuple(regions),
                     sites=tuple(sites), links=tuple(links), binding=tuple(binding), exhaustive=exhaustive,
                     num_lps=problem.num_lps)
