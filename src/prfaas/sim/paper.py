"""The paper's case study in simulation (`prfaas simulate --scenario paper`).

For each configuration of Table 6 (PrfaaS-PD, homogeneous PD, naive heterogeneous) the planner's
`optimize` gives the threshold and the PD split; the simulator then

1. searches the maximum sustainable Poisson rate (`sim.search`, bisection between 0.5x and 1.25x the
   planner's Lambda_max), and
2. runs once at a common load (the same rate for every configuration) for TTFT, egress and offload,
   and once at the throughput found, for the egress the link must carry there.

`split_check` additionally searches the throughput of PrfaaS-PD at N_p - 1, N_p, N_p + 1 (planner's
threshold re-optimised per split) to test that the planner's split is also best in simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prfaas.planner.optimize import optimize, optimize_threshold
from prfaas.planner.paper import paper_case
from prfaas.planner.scenario import Scenario, Topology
from prfaas.policy.config import PolicyConfig
from prfaas.sim.deployment import SimOptions
from prfaas.sim.run import RunResult, simulate
from prfaas.sim.scenario import (
    POLICY_FOR_TOPOLOGY,
    deployment_for,
    poisson_workload,
    prefix_hit_workload,
    warmed_prefix_index,
)
from prfaas.sim.search import Probe, SustainCriteria, max_sustainable_rate

DEFAULT_COMMON_LOAD_RPS = 1.0  # light load: the paper's Table 6 TTFTs look queue-free


@dataclass(frozen=True, slots=True)
class PaperRow:
    configuration: str
    policy: str
    threshold_tokens: int | None
    n_prfaas: int
    n_p: int
    n_d: int
    planner_lambda_max: float
    throughput_rps: float
    throughput_vs_planner: float
    load_rps: float
    ttft_mean_s: float | None
    ttft_p90_s: float | None
    egress_gbps_mean: float
    offload_fraction: float
    egress_gbps_at_max: float  # mean egress when running at `throughput_rps` (the paper's ~13 Gbps figure)
    probes: tuple[Probe, ...]


@dataclass(frozen=True, slots=True)
class SplitPoint:
    n_p: int
    n_d: int
    threshold_tokens: int
    planner_lambda_max: float
    throughput_rps: float


def run_configuration(scenario: Scenario, *, threshold_tokens: int | None, n_p: int, n_d: int, rate_rps: float,
                      duration_s: float, seed: int, tail_s: float = 60.0) -> RunResult:
    deployment = deployment_for(scenario, n_p, n_d)
    policy = POLICY_FOR_TOPOLOGY[scenario.topology]
    cfg = PolicyConfig(threshold_tokens=threshold_tokens) if threshold_tokens is not None else PolicyConfig()
    hits = scenario.prefix_hits
    index = None
    if hits is None:
        requests = poisson_workload(scenario.lengths, int(scenario.output_tokens), rate_rps, duration_s=duration_s,
                                    seed=seed)
    else:
        requests, warm = prefix_hit_workload(hits, int(scenario.output_tokens), rate_rps, duration_s=duration_s,
                                             seed=seed)
        index = warmed_prefix_index(deployment, requests, warm, decode_holds_prefix=hits.decode_holds_prefix)
    options = SimOptions(horizon_s=duration_s + tail_s, tpot_slo_s=scenario.t_decode_s,
                         sample_interval_s=max(duration_s / 600, 1.0),
                         decode_holds_prefix=hits is not None and hits.decode_holds_prefix)
    return simulate(deployment, policy, requests, policy_config=cfg, options=options, measure_end_s=duration_s,
                    kv_index=index)


def search_configuration(scenario: Scenario, *, threshold_tokens: int | None, n_p: int, n_d: int,
                         planner_lambda: float, criteria: SustainCriteria, seed: int, rel_tol: float = 0.01,
                         on_probe: Callable[[Probe], None] | None = None) -> tuple[float, tuple[Probe, ...]]:
    def run_at(rate: float) -> RunResult:
        return run_configuration(scenario, threshold_tokens=threshold_tokens, n_p=n_p, n_d=n_d, rate_rps=rate,
                                 duration_s=criteria.duration_s, seed=seed, tail_s=criteria.tail_s)

    result = max_sustainable_rate(run_at, criteria, lo_rps=0.5 * planner_lambda, hi_rps=1.25 * planner_lambda,
                                  rel_tol=rel_tol, on_probe=on_probe)
    return result.throughput_rps, result.probes


def paper_rows(*, load_rps: float = DEFAULT_COMMON_LOAD_RPS, criteria: SustainCriteria | None = None,
               seed: int = 0, rel_tol: float = 0.01, on_probe: Callable[[str, Probe], None] | None = None
               ) -> list[PaperRow]:
    crit = criteria or SustainCriteria()
    case = paper_case()
    rows = []
    for scenario in (case.prfaas_pd, case.homogeneous, case.naive):
        best = optimize(scenario).best
        threshold = int(best.threshold_tokens) if best.threshold_tokens is not None else None
        hook = None if on_probe is None else (lambda p, name=scenario.name: on_probe(name, p))
        thr, probes = search_configuration(scenario, threshold_tokens=threshold, n_p=best.n_p, n_d=best.n_d,
                                           planner_lambda=best.lambda_max, criteria=crit, seed=seed,
                                           rel_tol=rel_tol, on_probe=hook)
        at_load = run_configuration(scenario, threshold_tokens=threshold, n_p=best.n_p, n_d=best.n_d,
                                    rate_rps=load_rps, duration_s=crit.duration_s, seed=seed, tail_s=crit.tail_s)
        s = at_load.summary
        at_max = run_configuration(scenario, threshold_tokens=threshold, n_p=best.n_p, n_d=best.n_d,
                                   rate_rps=thr, duration_s=crit.duration_s, seed=seed, tail_s=crit.tail_s)
        rows.append(PaperRow(
            configuration=scenario.name, policy=POLICY_FOR_TOPOLOGY[scenario.topology], threshold_tokens=threshold,
            n_prfaas=best.n_prfaas, n_p=best.n_p, n_d=best.n_d, planner_lambda_max=best.lambda_max,
            throughput_rps=thr, throughput_vs_planner=thr / best.lambda_max, load_rps=load_rps,
            ttft_mean_s=s.ttft_mean_s, ttft_p90_s=s.ttft_p90_s, egress_gbps_mean=s.egress_gbps_mean,
            offload_fraction=s.offload_fraction, egress_gbps_at_max=at_max.summary.egress_gbps_mean, probes=probes,
        ))
    return rows


def split_check(*, criteria: SustainCriteria | None = None, seed: int = 0, rel_tol: float = 0.01,
                spread: int = 1) -> list[SplitPoint]:
    """Simulated throughput of PrfaaS-PD around the planner's split (each split with its best t)."""
    crit = criteria or SustainCriteria()
    scenario = paper_case().prfaas_pd
    assert scenario.topology is Topology.PRFAAS_PD
    best = optimize(scenario).best
    points = []
    for n_p in range(max(1, best.n_p - spread), min(scenario.n_pd - 1, best.n_p + spread) + 1):
        n_d = scenario.n_pd - n_p
        plan = optimize_threshold(scenario, n_p, n_d)
        threshold = int(plan.threshold_tokens) if plan.threshold_tokens is not None else 0
        thr, _ = search_configuration(scenario, threshold_tokens=threshold, n_p=n_p, n_d=n_d,
                                      planner_lambda=plan.lambda_max, criteria=crit, seed=seed, rel_tol=rel_tol)
        points.append(SplitPoint(n_p, n_d, threshold, plan.lambda_max, thr))
    return points
