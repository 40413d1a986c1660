"""Planner vs simulator on prefix-hit workloads: one cost model in both (within 7%).

The planner's plan for a hit-rate workload and for a trace replayed through an LRU prefix cache is run in
the simulator below saturation (0.8 x Lambda_max), each request carrying its drawn cached prefix on every
prefill node. The run's realised per-request costs (route, prefill time, shipped bytes) are put back into
Eqs. 3-6 (`sim.plan_check`); each stage's cap and Lambda_max must agree with the planner's within 7%.
The planner's former pricing of a hit as a fresh prompt of its uncached length fails this (egress ~25%
low at hit rate 0.7, 10 Gbps).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.planner.build import PlanInputs, build_case
from prfaas.planner.model import LengthMode, PlanPoint, Stage
from prfaas.planner.optimize import optimize
from prfaas.planner.scenario import Scenario
from prfaas.sim.paper import run_configuration
from prfaas.sim.plan_check import RealisedCapacities, realised_capacities

TRACE = Path(__file__).resolve().parents[2] / "data" / "traces" / "mooncake_conversation_trace.jsonl"
DURATION_S = 1800.0
TOLERANCE = 0.07


def _realised(scenario: Scenario, mode: LengthMode) -> tuple[PlanPoint, RealisedCapacities]:
    best = optimize(scenario, mode).best
    threshold = int(best.threshold_tokens) if best.threshold_tokens is not None else None
    run = run_configuration(scenario, threshold_tokens=threshold, n_p=best.n_p, n_d=best.n_d,
                            rate_rps=0.8 * best.lambda_max, duration_s=DURATION_S, seed=0)
    return best, realised_capacities(run, best, scenario.egress_gbps, end_s=DURATION_S)


def _stage_cap(point: PlanPoint, *stages: Stage) -> float:
    return min(cap for stage, cap in point.stage_limits if stage in stages)


def _assert_agree(point: PlanPoint, sim: RealisedCapacities) -> None:
    assert sim.offload_fraction == pytest.approx(point.offload_fraction, abs=0.02)
    if point.offload_fraction > 0:
        assert sim.prfaas_cap_rps is not None
        prfaas = _stage_cap(point, Stage.PRFAAS_PREFILL, Stage.PRFAAS_EGRESS)
        assert sim.prfaas_cap_rps == pytest.approx(prfaas, rel=TOLERANCE)
        assert sim.mean_shipped_bytes == pytest.approx(point.s_kv_long_bytes, rel=TOLERANCE)
    if point.offload_fraction < 1:
        assert sim.pd_prefill_cap_rps == pytest.approx(_stage_cap(point, Stage.PD_PREFILL), rel=TOLERANCE)
    assert sim.lambda_max == pytest.approx(point.lambda_max, rel=TOLERANCE)


@pytest.mark.parametrize("decode_holds_prefix", [False, True])
def test_hit_rate_workload_planner_matches_simulator(decode_holds_prefix: bool) -> None:
    case = build_case(PlanInputs(egress_gbps=10.0, hit_rate=0.7, decode_holds_prefix=decode_holds_prefix))
    for scenario in (case.prfaas_pd, case.naive):
        for mode in (LengthMode.EXACT, LengthMode.REPRESENTATIVE):
            point, sim = _realised(scenario, mode)
            _assert_agree(point, sim)


def test_hit_rate_full_state_ships_more_than_the_increment() -> None:
    full = build_case(PlanInputs(egress_gbps=10.0, hit_rate=0.7)).naive
    increment = build_case(PlanInputs(egress_gbps=10.0, hit_rate=0.7, decode_holds_prefix=True)).naive
    _, sim_full = _realised(full, LengthMode.EXACT)
    _, sim_increment = _realised(increment, LengthMode.EXACT)
    assert sim_full.mean_shipped_bytes is not None and sim_increment.mean_shipped_bytes is not None
    assert sim_full.mean_shipped_bytes > 1.5 * sim_increment.mean_shipped_bytes


def test_trace_workload_with_lru_prefix_hits_planner_matches_simulator() -> None:
    case = build_case(PlanInputs(egress_gbps=10.0, workload=str(TRACE), cache_blocks=100_000))
    assert case.prfaas_pd.prefix_hits is not None
    for scenario in (case.prfaas_pd, case.naive, case.homogeneous):
        point, sim = _realised(scenario, LengthMode.EXACT)
        _assert_agree(point, sim)
