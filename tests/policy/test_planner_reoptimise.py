"""The rebalancer re-optimising t with the real planner on the paper's case study (PAPER.md §5, §8)."""

from __future__ import annotations

import numpy as np
import pytest
from policy_helpers import make_view

from prfaas.planner.optimize import optimize_threshold
from prfaas.planner.paper import paper_case
from prfaas.planner.scenario import Scenario
from prfaas.policy.planner_adapter import planner_reoptimiser
from prfaas.policy.rebalancer import PdRebalancer, RebalancerConfig
from prfaas.policy.types import RebalanceReason, WindowStats
from prfaas.workload.distribution import DiscreteLengthDistribution


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return paper_case().prfaas_pd


def test_reoptimise_matches_the_planner_and_the_paper(scenario: Scenario) -> None:
    reoptimise = planner_reoptimiser(scenario)
    t_3_5 = reoptimise(3, 5, None)
    point = optimize_threshold(scenario, 3, 5)
    assert point.threshold_tokens is not None and t_3_5 == round(point.threshold_tokens)
    assert t_3_5 == pytest.approx(19_400, rel=0.03)  # the case study's t = 19.4K
    # one PD-P node fewer: PD-P saturates sooner, so more must be offloaded -> lower t
    assert reoptimise(2, 6, None) < t_3_5


def test_reoptimise_uses_the_live_length_distribution(scenario: Scenario) -> None:
    reoptimise = planner_reoptimiser(scenario)
    rng = np.random.default_rng(7)
    samples = scenario.lengths.sample(rng, 400)
    shorter = DiscreteLengthDistribution.from_samples((samples // 4).astype(np.float64), name="shorter")
    assert reoptimise(3, 5, shorter) < reoptimise(3, 5, None)


def test_rebalancer_with_the_real_planner(scenario: Scenario) -> None:
    reoptimise = planner_reoptimiser(scenario)
    t0 = reoptimise(3, 5, None)
    reb = PdRebalancer(RebalancerConfig(min_windows=1), reoptimise=reoptimise, threshold_tokens=t0)
    view = make_view(n_prfaas=4, n_pd_p=3, n_pd_d=5)
    window = WindowStats(start_s=0.0, end_s=60.0, prfaas_prefill_util=0.5, pd_prefill_util=0.3,
                         pd_decode_util=0.95)
    plan = reb.step(window, view, 60.0)
    assert plan.reason is RebalanceReason.DECODE_BOUND and len(plan.role_changes) == 1
    assert (plan.num_pd_prefill_target, plan.num_pd_decode_target) == (2, 6)
    assert plan.new_threshold_tokens == reoptimise(2, 6, None) != t0


def test_only_threshold_topologies(scenario: Scenario) -> None:
    with pytest.raises(ValueError, match="no offload threshold"):
        planner_reoptimiser(paper_case().homogeneous)
