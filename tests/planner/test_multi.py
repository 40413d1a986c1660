"""The multi-site planner: the LP against scipy, 1x1 against the two-cluster optimiser, 2x2 against brute force."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from planner_helpers import AffineCost

from prfaas.core.topology import PdSite, PrfaasSite, SiteLink, SiteTopology, check_topology, two_cluster
from prfaas.planner.build import PlanInputs, build_case
from prfaas.planner.lp import lp_max
from prfaas.planner.model import LengthMode
from prfaas.planner.multi import optimize_multi
from prfaas.planner.multi_baselines import alone_scale, dedicated_plan, home_links, naive_split
from prfaas.planner.multi_build import build_multi_case, load_topology
from prfaas.planner.multi_case import MultiCase
from prfaas.planner.multi_size import size_prfaas, spreads
from prfaas.planner.optimize import optimize
from prfaas.workload.distribution import DiscreteLengthDistribution

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "topologies" / "two-by-two.toml"


# --- the simplex ------------------------------------------------------------------------------------
def test_simplex_small_problem_by_hand() -> None:
    # max x + y s.t. x <= 2, y <= 3, x + 2y <= 6  ->  x = 2, y = 2, value 4; rows 1 and 3 bind
    sol = lp_max(np.array([1.0, 1.0]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 2.0]]), np.array([2.0, 3.0, 6.0]))
    assert sol.value == pytest.approx(4.0)
    assert sol.z == pytest.approx([2.0, 2.0])
    assert sol.duals == pytest.approx([0.5, 0.0, 0.5])


def test_simplex_matches_scipy_on_random_problems() -> None:
    linprog = pytest.importorskip("scipy.optimize").linprog
    rng = np.random.default_rng(7)
    for _ in range(200):
        m, n = int(rng.integers(2, 10)), int(rng.integers(1, 8))
        a = rng.uniform(-1, 2, (m, n))
        a[0] = np.abs(a[0]) + 0.1  # keeps the problem bounded
        b = rng.uniform(0, 3, m)
        b[rng.random(m) < 0.3] = 0.0  # degenerate rows, as the assignment's demand rows
        c = rng.uniform(-1, 2, n)
        ref = linprog(-c, A_ub=a, b_ub=b, method="highs")
        assert lp_max(c, a, b).value == pytest.approx(-ref.fun, rel=1e-9, abs=1e-9)


# --- 1x1 == the two-cluster planner -----------------------------------------------------------------
def test_one_by_one_topology_reproduces_the_two_cluster_plan() -> None:
    two = optimize(build_case(PlanInputs()).prfaas_pd).best
    plan = optimize_multi(build_multi_case(two_cluster(4, 8, 100.0)))
    (region,) = plan.regions
    assert plan.total_rps == pytest.approx(two.lambda_max, rel=1e-9)
    assert (region.threshold_tokens, region.n_p, region.n_d) == (two.threshold_tokens, two.n_p, two.n_d)
    assert plan.links[0].link_id == "prfaas->pd"
    assert plan.links[0].egress_gbps == pytest.approx(two.egress_gbps, rel=1e-9)
    assert plan.binding == ("prfaas_prefill@prfaas",) and two.binding_stage.value == "prfaas_prefill"


def test_thin_link_binds_in_one_by_one() -> None:
    two = optimize(build_case(PlanInputs(egress_gbps=2.0)).prfaas_pd).best
    plan = optimize_multi(build_multi_case(two_cluster(4, 8, 2.0), PlanInputs(egress_gbps=2.0)))
    assert plan.total_rps == pytest.approx(two.lambda_max, rel=1e-9)
    assert "link prfaas->pd" in plan.binding or "pd_prefill@pd" in plan.binding


# --- 2x2 against brute force -------------------------------------------------------------------------
def small_case(seed: int) -> MultiCase:
    """Two PrfaaS clusters on different accelerators, two PD regions, asymmetric links (one missing or thin)."""
    rng = np.random.default_rng(seed)
    lengths = np.unique(rng.integers(200, 20_000, size=12))
    dist = DiscreteLengthDistribution(lengths, rng.random(lengths.size) + 0.1)
    per_byte = float(rng.uniform(5e4, 3e5))
    fast = AffineCost(0.05, float(rng.uniform(2e-5, 6e-5)), per_token_bytes=per_byte)
    slow = AffineCost(0.08, float(rng.uniform(6e-5, 1.2e-4)), per_token_bytes=per_byte)
    pd_cost = AffineCost(0.1, float(rng.uniform(2e-4, 5e-4)), per_token_bytes=per_byte)
    topo = check_topology(SiteTopology(
        prfaas=[PrfaasSite(name="a", instances=int(rng.integers(1, 4))),
                PrfaasSite(name="b", instances=int(rng.integers(1, 4)))],
        pd=[PdSite(name="x", instances=int(rng.integers(2, 5)), traffic_rps=float(rng.uniform(1, 4))),
            PdSite(name="y", instances=int(rng.integers(2, 5)), traffic_rps=float(rng.uniform(0.5, 2)))],
        links=[SiteLink(prfaas="a", pd="x", capacity_gbps=float(rng.choice([1.0, 10.0, 100.0]))),
               SiteLink(prfaas="b", pd="x", capacity_gbps=float(rng.choice([0.5, 2.0, 20.0]))),
               SiteLink(prfaas="a", pd="y", capacity_gbps=float(rng.choice([0.2, 1.0, 5.0])))],
    ))  # no b -> y link: asymmetric
    return MultiCase(name=f"s{seed}", topology=topo, prfaas_models=(fast, slow), pd_models=(pd_cost, pd_cost),
                     lengths=dist, output_tokens=float(rng.integers(100, 600)), bs_max=int(rng.integers(8, 40)),
                     t_decode_s=0.025)


def brute_force(case: MultiCase, grid: np.ndarray, steps: int) -> float:
    """Every threshold pair, every split, and offload fractions on a grid; Lambda from the closed form."""
    topo, dist = case.topology, case.lengths
    w = topo.traffic_weights()
    n = [s.instances for s in topo.prfaas]
    cap = {(lk.prfaas, lk.pd): lk.capacity_gbps * 1e9 / 8 for lk in topo.links}

    def terms(j: int, t: float) -> tuple[float, float | None, list[float], list[float]]:
        p = dist.prob_above(t)
        short = dist.mean_at_or_below(t)
        t_short = case.pd_models[j].t_prefill_s(short) if short is not None else None
        long = dist.mean_above(t)
        t_long = [m.t_prefill_s(long) if long is not None else 0.0 for m in case.prfaas_models]
        s_long = [m.s_kv_bytes(long) if long is not None else 0.0 for m in case.prfaas_models]
        return p, t_short, t_long, s_long

    def local(j: int, p: float, t_short: float | None) -> float:
        total = topo.pd[j].instances
        best = 0.0
        for n_p in range(1, total):
            pre = float("inf") if p >= 1.0 or t_short is None else n_p / (t_short * (1 - p))
            best = max(best, min(pre, case.theta_pd_d(total - n_p)))
        return best

    fracs = np.linspace(0.0, 1.0, steps + 1)
    best = 0.0
    for tx, ty in itertools.product(grid, grid):
        tx_terms, ty_terms = terms(0, float(tx)), terms(1, float(ty))
        lam_local = min(local(0, tx_terms[0], tx_terms[1]) / w[0], local(1, ty_terms[0], ty_terms[1]) / w[1])
        for f in fracs:  # f: share of x's offloads on a (the rest on b); y can only use a
            shares = {("a", "x"): f, ("b", "x"): 1 - f, ("a", "y"): 1.0}
            lam = lam_local
            busy = [0.0, 0.0]
            for (site, region), share in shares.items():
                j = 0 if region == "x" else 1
                i = 0 if site == "a" else 1
                p, _, t_long, s_long = tx_terms if j == 0 else ty_terms
                demand = w[j] * p * share
                if demand > 0:
                    lam = min(lam, cap[(site, region)] / (demand * s_long[i]))
                    busy[i] += demand * t_long[i]
            for i in range(2):
                if busy[i] > 0:
                    lam = min(lam, n[i] / busy[i])
            best = max(best, lam)
    return best


@pytest.mark.parametrize("seed", range(8))
def test_two_by_two_matches_brute_force_on_small_grids(seed: int) -> None:
    case = small_case(seed)
    lengths = case.lengths.lengths
    grid = np.unique(np.concatenate([[lengths[0] - 1], lengths[:: max(lengths.size // 5, 1)], [lengths[-1]]]))
    plan = optimize_multi(case, LengthMode.REPRESENTATIVE, thresholds=grid)
    brute = brute_force(case, grid, steps=400)
    assert plan.scale >= brute * (1 - 1e-9)  # the LP is exact: no fraction grid beats it
    assert plan.scale <= brute * (1 + 5e-3)  # and the fine fraction grid gets within 0.5% of it
    # the plan is self-consistent: every region's traffic is assigned, no cluster or link over capacity
    for region in plan.regions:
        assigned = sum(lk.offloaded_rps for lk in plan.links if lk.pd == region.name)
        assert assigned == pytest.approx(region.offloaded_rps, rel=1e-6, abs=1e-9)
        assert region.served_rps <= region.local_cap_rps * (1 + 1e-9)
    assert all(s.utilisation <= 1 + 1e-6 for s in plan.sites)
    assert all(lk.utilisation <= 1 + 1e-6 for lk in plan.links)
    assert plan.exhaustive and plan.binding


def test_coordinate_ascent_is_used_for_large_grids_and_stays_close() -> None:
    case = small_case(3)
    exact = optimize_multi(case, num_coarse=32)
    heuristic = optimize_multi(case, num_coarse=32, max_joint=10)
    assert exact.exhaustive and not heuristic.exhaustive
    assert heuristic.scale <= exact.scale * (1 + 1e-9)
    assert heuristic.scale >= exact.scale * 0.9


# --- baselines, sizing and the worked example --------------------------------------------------------
def test_worked_example_sharing_beats_per_region_clusters_at_equal_gpus() -> None:
    topo, inputs = load_topology(str(EXAMPLE))
    case = build_multi_case(topo, inputs)
    shared = optimize_multi(case)
    dedicated = dedicated_plan(case)
    assert home_links(case) == {("prefill-us", "us"), ("prefill-eu", "eu")}
    assert shared.scale > dedicated.scale * 1.2  # same 8 PrfaaS + 16 PD instances, shared links
    assert shared.scale > naive_split(case).scale > alone_scale(case)
    # the thin far link carries traffic but within its 10 Gbps
    far = next(lk for lk in shared.links if lk.link_id == "prefill-eu->us")
    assert 0 < far.egress_gbps <= 10.0 * (1 + 1e-6)


def test_spreads_enumerate_every_allocation() -> None:
    assert sorted(spreads(3, 2)) == [(0, 3), (1, 2), (2, 1), (3, 0)]
    assert len(list(spreads(6, 3))) == 28
    assert list(spreads(4, 2, step=2)) == [(0, 4), (2, 2), (4, 0)]


def test_sizing_builds_where_the_links_are() -> None:
    case = small_case(1)
    # candidate b has no link to y and a thin one to x: the budget should go (mostly) to a
    thin = [SiteLink(prfaas=lk.prfaas, pd=lk.pd, capacity_gbps=0.01 if lk.prfaas == "b" else 100.0)
            for lk in case.topology.links]
    topo = check_topology(SiteTopology(prfaas=case.topology.prfaas, pd=case.topology.pd, links=thin))
    case = MultiCase(name="thin", topology=topo, prfaas_models=case.prfaas_models, pd_models=case.pd_models,
                     lengths=case.lengths, output_tokens=case.output_tokens, bs_max=case.bs_max,
                     t_decode_s=case.t_decode_s)
    result = size_prfaas(case, 4, num_coarse=12)
    best = result.rows[0]
    assert best.instances[0] >= best.instances[1]
    assert result.rows[0].scale >= max(r.scale for r in result.rows) * (1 - 1e-9)
    assert len(result.rows) == 5
    smaller = size_prfaas(case, 2, num_coarse=12)
    assert smaller.rows[0].scale <= best.scale * (1 + 1e-9)  # more budget never hurts
    if result.min_budget is not None:
        assert result.min_budget <= 4
