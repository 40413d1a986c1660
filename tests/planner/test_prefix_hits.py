"""The planner's prefix-hit pricing: route on the uncached length, prefill incrementally, ship the whole state
(or only the increment when the decode side holds the prefix); no hits -> the paper's numbers unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prfaas.core.errors import ConfigError
from prfaas.planner.build import PlanInputs, build_case
from prfaas.planner.model import LengthMode, ThroughputModel
from prfaas.planner.optimize import optimize
from prfaas.workload.prefix import hits_after_hit_rate


def test_no_hits_is_the_paper_case() -> None:
    plain, zero = build_case(PlanInputs()), build_case(PlanInputs(hit_rate=0.0))
    assert zero.prfaas_pd.prefix_hits is None
    a, b = optimize(plain.prfaas_pd).best, optimize(zero.prfaas_pd).best
    assert (a.threshold_tokens, a.n_p, a.n_d, a.lambda_max) == (b.threshold_tokens, b.n_p, b.n_d, b.lambda_max)


@pytest.mark.parametrize("decode_holds", [False, True])
def test_representative_point_prices_the_pair(decode_holds: bool) -> None:
    scen = build_case(PlanInputs(egress_gbps=10.0, hit_rate=0.7, decode_holds_prefix=decode_holds)).prfaas_pd
    hits = scen.prefix_hits
    assert hits is not None and hits.decode_holds_prefix is decode_holds
    point = ThroughputModel(scen).evaluate(10_000.0, 3, 5)
    above = hits.uncached_tokens > 10_000
    c_long = float(np.dot(hits.probs[above], hits.cached_tokens[above]) / hits.probs[above].sum())
    l_long = point.l_long_tokens
    assert l_long is not None
    model = scen.prfaas_prefill
    assert model is not None
    assert point.t_prefill_long_s == pytest.approx(model.t_prefill_s(l_long, c_long))
    assert point.t_prefill_long_s != pytest.approx(model.t_prefill_s(l_long))  # not a fresh prompt
    whole = model.s_kv_bytes(l_long + c_long)
    increment = whole - model.s_kv_bytes(c_long) + model.s_kv_bytes(0.0)
    assert point.s_kv_long_bytes == pytest.approx(increment if decode_holds else whole)


def test_exact_mode_is_the_expectation_over_the_pairs() -> None:
    scen = build_case(PlanInputs(egress_gbps=10.0, hit_rate=0.5)).prfaas_pd
    hits = scen.prefix_hits
    model = scen.prfaas_prefill
    assert hits is not None and model is not None
    point = ThroughputModel(scen, LengthMode.EXACT).evaluate(20_000.0, 3, 5)
    above = hits.uncached_tokens > 20_000
    w = hits.probs[above] / hits.probs[above].sum()
    times = [model.t_prefill_s(float(u), float(c)) for u, c in zip(hits.uncached_tokens[above],
                                                                    hits.cached_tokens[above], strict=True)]
    sizes = [model.s_kv_bytes(float(u + c)) for u, c in zip(hits.uncached_tokens[above],
                                                            hits.cached_tokens[above], strict=True)]
    assert point.t_prefill_long_s == pytest.approx(float(np.dot(w, times)), rel=1e-9)
    assert point.s_kv_long_bytes == pytest.approx(float(np.dot(w, sizes)), rel=1e-9)


def test_hit_rate_point_of_the_issue() -> None:
    # `prfaas plan --json --egress-gbps 10 --hit-rate 0.7`: formerly Lambda 4.781 at t = 3,714 (a hit priced
    # as a fresh prompt of its uncached length); an independent full-state model gave 3.826 at t = 10,750
    best = optimize(build_case(PlanInputs(egress_gbps=10.0, hit_rate=0.7)).prfaas_pd).best
    assert best.lambda_max == pytest.approx(3.831, abs=0.002)
    assert best.threshold_tokens == pytest.approx(10_733, abs=1)
    assert (best.n_p, best.n_d) == (3, 5)
    assert best.egress_gbps == pytest.approx(10.0, rel=1e-3)


def test_replacing_lengths_drops_the_hits_and_mismatched_hits_are_refused() -> None:
    scen = build_case(PlanInputs(hit_rate=0.7)).prfaas_pd
    plain = build_case(PlanInputs()).prfaas_pd
    assert scen.replace(lengths=plain.lengths).prefix_hits is None
    other = hits_after_hit_rate(plain.lengths, 0.3)
    with pytest.raises(ValueError, match="uncached lengths of prefix_hits"):
        scen.replace(prefix_hits=other)


def test_hit_rate_and_cache_replay_are_exclusive() -> None:
    trace = Path(__file__).resolve().parents[2] / "data" / "traces" / "mooncake_conversation_trace.jsonl"
    with pytest.raises(ConfigError, match="either --hit-rate or --cache-blocks"):
        build_case(PlanInputs(workload=str(trace), cache_blocks=1000, hit_rate=0.5))
