from __future__ import annotations

import pytest
from simkit import small_deployment

from prfaas.sim.deployment import SimOptions
from prfaas.sim.paper import paper_rows
from prfaas.sim.run import RunResult, simulate
from prfaas.sim.search import SustainCriteria, judge, max_sustainable_rate
from prfaas.workload.arrivals import PoissonArrivals
from prfaas.workload.generate import synthetic_requests
from prfaas.workload.lognormal import truncated_lognormal

CRITERIA = SustainCriteria(duration_s=300.0, tail_s=20.0, tpot_slo_s=0.01)


def _decode_bound_run(rate: float) -> RunResult:
    # 1 decode node, BS_max 4, 100 steps of 10 ms per request -> exactly 4 req/s of decode capacity;
    # prefill (2 PD-P, ~0.06 s each) is far faster, so decode binds.
    dep = small_deployment(n_prfaas=0, n_p=2, n_d=1, max_batch=4, step_s=0.01)
    wl = synthetic_requests(truncated_lognormal(7.0, 0.5, 128, 4000), 100, PoissonArrivals(rate),
                            duration_s=CRITERIA.duration_s, seed=11)
    return simulate(dep, "homogeneous", wl, options=SimOptions(horizon_s=CRITERIA.duration_s + CRITERIA.tail_s,
                                                                tpot_slo_s=0.01))


def test_judge_separates_under_and_overload() -> None:
    assert judge(_decode_bound_run(3.0), 3.0, CRITERIA).is_sustainable
    over = judge(_decode_bound_run(5.0), 5.0, CRITERIA)
    assert not over.is_sustainable
    assert over.finished_fraction < 0.9


def test_bisection_finds_the_analytic_decode_capacity() -> None:
    result = max_sustainable_rate(_decode_bound_run, CRITERIA, lo_rps=2.0, hi_rps=6.0, rel_tol=0.03)
    assert result.throughput_rps == pytest.approx(4.0, rel=0.07)
    rates = [p.rate_rps for p in result.probes]
    assert len(rates) == len(set(rates)) <= 10


def test_paper_case_orders_the_configurations_like_table_6() -> None:
    rows = {r.configuration: r for r in paper_rows(load_rps=1.5, criteria=SustainCriteria(duration_s=600.0),
                                                   rel_tol=0.03)}
    prfaas, homo, naive = rows["prfaas_pd"], rows["homogeneous"], rows["naive"]
    assert prfaas.threshold_tokens is not None and (prfaas.n_p, prfaas.n_d) == (3, 5)
    for row in rows.values():
        assert 0.8 <= row.throughput_vs_planner <= 1.05
    assert prfaas.throughput_rps > 1.3 * homo.throughput_rps
    assert prfaas.throughput_rps > 1.15 * naive.throughput_rps
    assert prfaas.ttft_mean_s is not None and homo.ttft_mean_s is not None
    assert prfaas.ttft_mean_s < 0.7 * homo.ttft_mean_s
    assert homo.egress_gbps_mean == 0.0 and naive.offload_fraction == 1.0
    assert 0.4 < prfaas.offload_fraction < 0.6
