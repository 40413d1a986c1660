"""The optimiser against brute force on small grids."""

from __future__ import annotations

import numpy as np
import pytest
from planner_helpers import AffineCost

from prfaas.planner.model import LengthMode, ThroughputModel
from prfaas.planner.optimize import optimize, optimize_threshold
from prfaas.planner.scenario import Scenario, Topology
from prfaas.workload.distribution import DiscreteLengthDistribution


def random_scenario(seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    lengths = np.unique(rng.integers(100, 20_000, size=int(rng.integers(3, 40))))
    probs = rng.random(lengths.size) + 0.05
    return Scenario(
        name=f"r{seed}", topology=Topology.PRFAAS_PD,
        pd_prefill=AffineCost(float(rng.uniform(0.05, 0.5)), float(rng.uniform(1e-4, 5e-4))), pd_decode=None,
        prfaas_prefill=AffineCost(float(rng.uniform(0.05, 0.5)), float(rng.uniform(2e-5, 1e-4)),
                                  per_token_bytes=float(rng.uniform(1e3, 1e5))),
        n_prfaas=int(rng.integers(1, 5)), n_pd=int(rng.integers(2, 9)),
        egress_gbps=float(rng.choice([0.5, 5.0, 100.0])), lengths=DiscreteLengthDistribution(lengths, probs),
        output_tokens=float(rng.integers(50, 1000)), bs_max=int(rng.integers(4, 64)), t_decode_s=0.025,
    )


def brute_force(sc: Scenario, mode: LengthMode) -> float:
    model = ThroughputModel(sc, mode)
    candidates = [float(sc.lengths.lengths[0] - 1), *map(float, sc.lengths.lengths)]
    return max(model.evaluate(t, n_p, sc.n_pd - n_p).lambda_max for t in candidates for n_p in range(1, sc.n_pd))


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("mode", list(LengthMode))
def test_optimum_matches_brute_force(seed: int, mode: LengthMode) -> None:
    sc = random_scenario(seed)
    result = optimize(sc, mode)
    assert result.best.lambda_max == pytest.approx(brute_force(sc, mode), rel=1e-12)
    assert result.best.n_p + result.best.n_d == sc.n_pd
    # the reported point is consistent with a fresh evaluation
    again = ThroughputModel(sc, mode).evaluate(result.best.threshold_tokens, result.best.n_p, result.best.n_d)
    assert again.lambda_max == pytest.approx(result.best.lambda_max)


def test_fixed_split_threshold_search() -> None:
    sc = random_scenario(3)
    point = optimize_threshold(sc, 1, sc.n_pd - 1)
    model = ThroughputModel(sc)
    best = max(model.evaluate(float(t), 1, sc.n_pd - 1).lambda_max for t in sc.lengths.lengths)
    assert point.lambda_max == pytest.approx(max(best, model.evaluate(sc.lengths.min_tokens - 1, 1,
                                                                        sc.n_pd - 1).lambda_max))


def test_curves_cover_every_split() -> None:
    sc = random_scenario(7)
    result = optimize(sc)
    assert [p.n_p for p in result.split_curve] == list(range(1, sc.n_pd))
    assert all(p.threshold_tokens == result.best.threshold_tokens for p in result.split_curve)
    assert all(p.n_p == result.best.n_p for p in result.threshold_curve)
