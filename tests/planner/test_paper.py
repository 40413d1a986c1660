"""Acceptance: the planner reproduces the paper's Table 6 (PAPER.md §8.2)."""

from __future__ import annotations

import pytest

from prfaas.planner.model import LengthMode
from prfaas.planner.paper import paper_case
from prfaas.planner.run import run_plan


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    return run_plan(paper_case(), LengthMode.REPRESENTATIVE, compare_modes=True)


def test_prfaas_pd_matches_table6(run) -> None:  # type: ignore[no-untyped-def]
    best = run.prfaas_pd.best
    assert best.threshold_tokens == pytest.approx(19_400, rel=0.10)
    assert (best.n_prfaas, best.n_p, best.n_d) == (4, 3, 5)
    assert best.lambda_max == pytest.approx(3.24, rel=0.05)
    assert abs(best.offload_fraction - 0.496) <= 0.03
    assert best.egress_gbps == pytest.approx(13.0, rel=0.25)
    # Eq. 7 at the optimum: both prefill stages saturate together (within the discrete grid)
    assert best.theta_prfaas / best.offload_fraction == pytest.approx(
        best.theta_pd_p / (1 - best.offload_fraction), rel=0.02)


def test_baselines_match_table6(run) -> None:  # type: ignore[no-untyped-def]
    homog, naive = run.homogeneous.best, run.naive.best
    assert (homog.n_p, homog.n_d) == (9, 3)
    assert homog.lambda_max == pytest.approx(2.11, rel=0.05)
    assert homog.theta_pd_d == pytest.approx(2.35, rel=0.01)
    assert naive.lambda_max == pytest.approx(2.45, rel=0.05)
    assert naive.theta_pd_d == pytest.approx(6.25, rel=0.01)
    assert run.speedup_vs_homogeneous == pytest.approx(1.54, rel=0.05)
    assert run.speedup_vs_naive == pytest.approx(1.32, rel=0.05)


def test_exact_expectations_change_the_answer_a_little(run) -> None:  # type: ignore[no-untyped-def]
    alt = run.alternate.best
    assert run.alternate.mode is LengthMode.EXACT
    assert alt.lambda_max != run.prfaas_pd.best.lambda_max
    assert alt.lambda_max == pytest.approx(run.prfaas_pd.best.lambda_max, rel=0.05)


def test_equal_cost_gain_depends_on_price_ratio() -> None:
    from prfaas.planner.cost import GpuPrices

    cheap = run_plan(paper_case(), prices=GpuPrices.from_ratio(1.5)).equal_cost
    dear = run_plan(paper_case(), prices=GpuPrices.from_ratio(2.29)).equal_cost
    assert cheap.gain_linear > dear.gain_linear
    # closed form of the linear comparison
    assert dear.cost_prfaas_pd == pytest.approx(32 * 2.29 + 64)
    assert dear.lambda_homogeneous_linear_equal_cost == pytest.approx(
        dear.lambda_homogeneous * (32 * 2.29 + 64) / 96)
