"""The four acceptance scenarios, run from their TOML files through the same path as the CLI.

Bounds are stated in each test; the measured numbers are in the sim report (and the README).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from prfaas.core.lifecycle import RequestState, Role
from prfaas.sim.build import build_inputs
from prfaas.sim.config import SimConfig, load_config
from prfaas.sim.metrics import meets_slo
from prfaas.sim.request import RequestRecord
from prfaas.sim.run import RunResult, simulate

SCENARIOS = Path(__file__).parent / "scenarios"


def _run(cfg: SimConfig, policy: str | None = None) -> RunResult:
    inputs = build_inputs(cfg)
    return simulate(inputs.deployment, policy or cfg.policy.name, inputs.requests,
                    policy_config=inputs.policy_config, script=inputs.script, options=inputs.options,
                    rebalance=cfg.policy.rebalance, reoptimise=inputs.reoptimise)


def _p90_ttft(records: tuple[RequestRecord, ...], lo: float, hi: float) -> float:
    return float(np.percentile([r.ttft_s for r in records if lo <= r.arrival_s < hi and r.ttft_s is not None], 90))


def test_a_link_drop_bandwidth_aware_holds_ttft_while_prfaas_queues_at_the_link() -> None:
    cfg = load_config(SCENARIOS / "link_drop.toml")
    assert not cfg.policy.bandwidth, "scenario (a) must run the policy's default short-term loop"
    plain, aware = _run(cfg, "prfaas"), _run(cfg, "prfaas-bandwidth-aware")
    before_plain = _p90_ttft(plain.records, 60, 300)
    drop_plain = _p90_ttft(plain.records, 300, 420)
    drop_aware = _p90_ttft(aware.records, 300, 420)
    # plain prfaas keeps offloading into the 4 Gbps link: its TTFT P90 for arrivals during the drop
    # (and the minute after) is several times its pre-drop level (measured 17.2 s against 4.3 s)
    assert drop_plain > 3 * before_plain
    # while the link is cool the loop changes nothing: same routes, same pre-drop TTFT
    assert [r.route for r in aware.records if r.arrival_s < 300] == [r.route for r in plain.records
                                                                      if r.arrival_s < 300]
    # bandwidth-aware (defaults): at most 60% of plain's P90 and under 10 s (measured 9.1 s), and SLO
    # attainment no worse than plain and at least 0.98 (measured 0.990 against 0.974)
    assert drop_aware <= 0.6 * drop_plain
    assert drop_aware <= 10.0
    assert aware.summary.slo_attainment >= plain.summary.slo_attainment
    assert aware.summary.slo_attainment >= 0.98
    # it did it by keeping some long requests local during the drop, not all of them
    reasons = [r.route for r in aware.records if 300 <= r.arrival_s < 360]
    assert "link_congested_local" in reasons and "long_offload" in reasons
    # and it relaxed after the link recovered: arrivals from 60 s after recovery route like plain prfaas
    assert [r.route for r in aware.records if r.arrival_s >= 420] == [r.route for r in plain.records
                                                                      if r.arrival_s >= 420]


@pytest.mark.parametrize(("seed", "rate_rps", "drop_gbps"), [(2, 1.2, 2.0), (3, 1.8, 4.0), (2, 1.5, 8.0)])
def test_a_link_drop_defaults_hold_off_the_scenario_point(seed: int, rate_rps: float, drop_gbps: float) -> None:
    """The defaults are not fitted to one point: other seeds, loads and drop depths (a 20x drop, a
    busier PD cluster, a mild drop) keep bandwidth-aware's drop-window P90 within 5% of plain prfaas's
    or below it, and its SLO attainment at or above plain's. In the 27-point sweep of
    benchmarks/bench_sim_link_drop_sweep.py (seeds 1-3, 1.2-1.8 req/s, 2/4/8 Gbps drops) it was below
    plain's P90 at every 2 and 4 Gbps point (hardest: 1.8 req/s into 2 Gbps, 34.7 s against 48.4 s); at
    8 Gbps, where plain barely suffers, within +0.2% (3.72 s against 3.72 s here) with attainment at
    least plain's everywhere."""
    cfg = load_config(SCENARIOS / "link_drop.toml")
    events = [msgspec.structs.replace(cfg.events[0], capacity_gbps=drop_gbps), *cfg.events[1:]]
    arrivals = msgspec.structs.replace(cfg.workload.arrivals, rate_rps=rate_rps)
    cfg = msgspec.structs.replace(cfg, seed=seed, events=events,
                                  workload=msgspec.structs.replace(cfg.workload, arrivals=arrivals))
    plain, aware = _run(cfg, "prfaas"), _run(cfg, "prfaas-bandwidth-aware")
    assert _p90_ttft(aware.records, 300, 420) <= 1.05 * _p90_ttft(plain.records, 300, 420)
    assert aware.summary.slo_attainment >= plain.summary.slo_attainment


def test_b_mix_shift_rebalancer_converts_roles_and_restores_throughput() -> None:
    cfg = load_config(SCENARIOS / "mix_shift.toml")
    static = _run(msgspec.structs.replace(cfg, policy=msgspec.structs.replace(cfg.policy, rebalance=False)))
    adaptive = _run(cfg)
    shift_start, shift_end, end = 600.0, 900.0, cfg.duration_s
    to_prefill = [s for s in adaptive.role_switches if s.to_role is Role.PD_PREFILL and s.time_s >= shift_start]
    assert to_prefill, "no PD-D -> PD-P conversion after the shift"
    assert to_prefill[0].time_s <= shift_end + 300.0
    thresholds = [s.threshold_tokens for s in adaptive.samples if s.time_s > shift_end + 300 and s.threshold_tokens]
    assert thresholds and min(thresholds) > 19_400  # t moved up to keep the long mix off a saturated PrfaaS
    # restored within 300 s of the shift's end: from then on completions keep up with arrivals and TTFT is bounded
    late = [r for r in adaptive.records if r.arrival_s >= shift_end + 300 and r.arrival_s < end - 60]
    finished = sum(r.finish_s is not None and r.finish_s <= end + 60 for r in late) / len(late)
    assert finished >= 0.99
    assert _p90_ttft(adaptive.records, shift_end + 300, end) <= 20.0
    # without the long-term loop the PrfaaS queue grows without bound
    assert _p90_ttft(static.records, end - 300, end) > 3 * _p90_ttft(adaptive.records, end - 300, end)


def _cache_aware_vs_prfaas(cfg: SimConfig) -> tuple[RunResult, RunResult]:
    plain, aware = _run(cfg, "prfaas"), _run(cfg, "prfaas-cache-aware")
    assert plain.summary.num_finished == aware.summary.num_finished == len(plain.records) == 12031
    assert plain.reverse_bytes == 0.0  # plain prfaas never moves a cache across clusters
    return plain, aware


def _ttft_mean_p90(run: RunResult) -> tuple[float, float]:
    mean, p90 = run.summary.ttft_mean_s, run.summary.ttft_p90_s
    assert mean is not None and p90 is not None
    return mean, p90


def test_c_mooncake_cache_aware_moves_fewer_bytes_at_equal_or_better_ttft() -> None:
    cfg = load_config(SCENARIOS / "mooncake_cache.toml")
    plain, aware = _cache_aware_vs_prfaas(cfg)
    # bytes across the link in both directions (state egress plus prefix transfers PD -> PrfaaS):
    # measured 3.10 TB against 3.54 TB (-12%), TTFT mean 1.07 s against 1.15 s, P90 1.94 s against 2.20 s
    assert aware.reverse_bytes > 0  # it did move caches across clusters
    assert aware.cross_cluster_bytes <= 0.92 * plain.cross_cluster_bytes
    (aware_mean, aware_p90), (plain_mean, plain_p90) = _ttft_mean_p90(aware), _ttft_mean_p90(plain)
    assert aware_mean <= plain_mean
    assert aware_p90 <= plain_p90


def test_c_mooncake_cache_aware_at_the_planners_threshold() -> None:
    """Same comparison at the planner's threshold for this trace and deployment (4 PD-P / 4 PD-D)."""
    cfg = load_config(SCENARIOS / "mooncake_cache.toml")
    planner = build_inputs(msgspec.structs.replace(cfg, policy=msgspec.structs.replace(cfg.policy, rebalance=True)))
    assert planner.reoptimise is not None
    threshold = planner.reoptimise(cfg.cluster.n_pd_prefill, cfg.cluster.n_pd_decode, None)
    assert threshold != cfg.policy.threshold_tokens  # measured 890 tokens
    plain, aware = _cache_aware_vs_prfaas(
        msgspec.structs.replace(cfg, policy=msgspec.structs.replace(cfg.policy, threshold_tokens=threshold)))
    # measured 3.74 TB against 4.66 TB (-20%), TTFT mean 1.16 s against 1.70 s, P90 2.27 s against 3.29 s
    assert aware.cross_cluster_bytes <= 0.85 * plain.cross_cluster_bytes
    (aware_mean, aware_p90), (plain_mean, plain_p90) = _ttft_mean_p90(aware), _ttft_mean_p90(plain)
    assert aware_mean <= plain_mean
    assert aware_p90 <= plain_p90


def test_d_prfaas_node_failure_reroutes_and_loses_nothing() -> None:
    cfg = load_config(SCENARIOS / "node_failure.toml")
    run = _run(cfg)
    assert len(run.records) == len(build_inputs(cfg).requests)
    assert all(r.state is RequestState.FINISHED_OK for r in run.records)
    retried = [r for r in run.records if r.attempts > 1]
    assert retried and all(r.arrival_s <= 250.0 and r.prefill_instance != "prfaas-0" for r in retried)
    assert all(r.prefill_instance != "prfaas-0" for r in run.records if 250.0 <= r.arrival_s < 500.0)
    assert any(r.prefill_instance == "prfaas-0" for r in run.records if r.arrival_s >= 520.0)
    assert all(meets_slo(r, cfg.tpot_slo_s * 1.5, None) for r in retried)
