"""Closed-form checks of Eqs. 1-6 (PAPER.md §4.2)."""

from __future__ import annotations

import pytest
from planner_helpers import AffineCost

from prfaas.planner.model import LengthMode, Stage, ThroughputModel, phi_kv_gbps
from prfaas.planner.scenario import Scenario, Topology
from prfaas.workload.distribution import DiscreteLengthDistribution

# lengths 1000 and 3000 with equal probability
DIST = DiscreteLengthDistribution([1000, 3000], [0.5, 0.5])
PRFAAS = AffineCost(t0_s=0.0, per_token_s=0.001)  # T(3000) = 3 s
PD = AffineCost(t0_s=0.0, per_token_s=0.002)  # T(1000) = 2 s


def scenario(egress_gbps: float | None = None, topology: Topology = Topology.PRFAAS_PD, **kw: object) -> Scenario:
    base = dict(name="t", topology=topology, pd_prefill=PD, pd_decode=None, prfaas_prefill=PRFAAS, n_prfaas=3,
                n_pd=4, egress_gbps=egress_gbps, lengths=DIST, output_tokens=100, bs_max=10, t_decode_s=0.05)
    base.update(kw)
    return Scenario(**base)  # type: ignore[arg-type]


def test_eq1_phi_kv_units() -> None:
    # 701.3 MiB in 1.84 s is 3.197 Gbps (PAPER.md §0)
    assert phi_kv_gbps(701.3 * 2**20, 1.84) == pytest.approx(3.197, abs=1e-3)


def test_eqs_3_to_6_at_a_threshold() -> None:
    point = ThroughputModel(scenario()).evaluate(2000, n_p=2, n_d=2)
    assert point.offload_fraction == 0.5
    assert point.l_long_tokens == 3000 and point.l_short_tokens == 1000
    assert point.theta_prfaas == pytest.approx(3 / 3.0)  # Eq. 3, compute bound
    assert point.theta_pd_p == pytest.approx(2 / 2.0)  # Eq. 4
    assert point.theta_pd_d == pytest.approx(2 * 10 / (0.05 * 100))  # Eq. 5 = 4
    # Eq. 6: min(1/0.5, 1/0.5, 4) = 2; ties resolve to a prefill stage
    assert point.lambda_max == pytest.approx(2.0)
    assert point.binding_stage in (Stage.PRFAAS_PREFILL, Stage.PD_PREFILL)
    assert point.headroom(Stage.PD_DECODE) == pytest.approx(1.0)
    # egress at the operating point: Lambda * p * S(l_long) = 2 * 0.5 * 3e6 B = 3e6 B/s = 0.024 Gbps
    assert point.egress_gbps == pytest.approx(0.024)


def test_egress_binds_when_the_link_is_small() -> None:
    # S(3000) = 3e6 B = 0.024 Gbit; a 0.012 Gbps link carries 0.5 req/s
    point = ThroughputModel(scenario(egress_gbps=0.012)).evaluate(2000, n_p=2, n_d=2)
    assert point.theta_prfaas_egress == pytest.approx(0.5)
    assert point.theta_prfaas == pytest.approx(0.5)
    assert point.binding_stage is Stage.PRFAAS_EGRESS
    assert point.lambda_max == pytest.approx(1.0)


def test_threshold_boundary_stays_local() -> None:
    point = ThroughputModel(scenario()).evaluate(3000, n_p=2, n_d=2)  # l == t -> local
    assert point.offload_fraction == 0.0
    assert point.theta_prfaas is None
    # the PrfaaS stage drops out; PD-P sees E[L] = 2000 -> T = 4 s -> 0.5 req/s
    assert point.lambda_max == pytest.approx(0.5)


def test_all_offloaded_drops_pd_prefill() -> None:
    point = ThroughputModel(scenario()).evaluate(999, n_p=1, n_d=3)
    assert point.offload_fraction == 1.0 and point.theta_pd_p is None
    assert point.lambda_max == pytest.approx(min(3 / 2.0, 3 * 10 / 5.0))


def test_homogeneous_and_naive_topologies() -> None:
    homog = ThroughputModel(scenario(topology=Topology.HOMOGENEOUS, n_prfaas=0, prfaas_prefill=None))
    point = homog.evaluate(None, n_p=3, n_d=1)
    assert point.offload_fraction == 0.0 and point.threshold_tokens is None
    assert point.lambda_max == pytest.approx(min(3 / 4.0, 1 * 10 / 5.0))
    naive = ThroughputModel(scenario(topology=Topology.NAIVE, pd_prefill=None))
    point = naive.evaluate(None, n_p=0, n_d=4)
    assert point.offload_fraction == 1.0
    assert point.lambda_max == pytest.approx(min(3 / 2.0, 4 * 10 / 5.0))


def test_exact_mode_uses_expectations_of_t_not_t_of_the_mean() -> None:
    class Quadratic(AffineCost):
        def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
            return (num_tokens / 1000.0) ** 2

    sc = scenario(prfaas_prefill=Quadratic(0.0, 0.0), pd_prefill=Quadratic(0.0, 0.0))
    rep = ThroughputModel(sc, LengthMode.REPRESENTATIVE).evaluate(5000, n_p=2, n_d=2)
    exact = ThroughputModel(sc, LengthMode.EXACT).evaluate(5000, n_p=2, n_d=2)
    # all local: T(E[L]) = 4 s vs E[T(L)] = (1 + 9) / 2 = 5 s
    assert rep.theta_pd_p == pytest.approx(2 / 4.0)
    assert exact.theta_pd_p == pytest.approx(2 / 5.0)


def test_invalid_scenarios_are_rejected() -> None:
    with pytest.raises(ValueError, match="PrfaaS-PD needs"):
        scenario(n_prfaas=0)
    with pytest.raises(ValueError, match="egress"):
        scenario(egress_gbps=-1.0)
    with pytest.raises(ValueError, match="> 0"):
        scenario(bs_max=0)
