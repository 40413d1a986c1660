from __future__ import annotations

import pytest
from planner_helpers import AffineCost

from prfaas.planner.bandwidth import PAPER_EGRESS_EXAMPLES, egress_for_mix, egress_from_phi, phi_from_table
from prfaas.workload.distribution import DiscreteLengthDistribution


def test_phi_table_interpolation() -> None:
    rows = [(1024, 2.0), (4096, 8.0)]
    assert phi_from_table(rows, 1024) == 2.0
    assert phi_from_table(rows, 2048) == pytest.approx(4.0)  # log-log linear: phi ~ l here
    assert phi_from_table(rows, 8192) == pytest.approx(16.0)


def test_eq2_examples_reproduce_the_paper_from_table3() -> None:
    from prfaas.commands.bandwidth import estimate_for_model

    for ex in PAPER_EGRESS_EXAMPLES:
        est = estimate_for_model("table3", ex.model_name, ex.num_gpus, 8, ex.length_tokens)
        if ex.paper_bound == "<":
            assert est.egress_gbps < ex.paper_gbps
        else:
            assert est.egress_gbps == pytest.approx(ex.paper_gbps, rel=0.10), ex.label


def test_egress_for_a_mix_is_ratio_of_expectations() -> None:
    model = AffineCost(t0_s=1.0, per_token_s=0.0, per_token_bytes=1e6)
    mix = DiscreteLengthDistribution([1000, 3000], [0.5, 0.5])
    est = egress_for_mix(16, 8, model, mix)
    # E[S] = 2e9 B, E[T] = 1 s -> 16 Gbps per instance, 2 instances
    assert est.phi_kv_gbps_per_instance == pytest.approx(16.0)
    assert est.egress_gbps == pytest.approx(32.0)
    with pytest.raises(ValueError):
        egress_from_phi(0, 8, 1.0, "x")
