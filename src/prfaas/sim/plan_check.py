"""Planner vs simulator on the same cost model: the planner's stage capacities (Eqs. 3-6) recomputed from
what the simulated requests really cost.

The planner prices a class of requests by expectations (p = P(L > t), E[T | L > t], E[S_shipped | L > t],
E[T | L <= t]). A simulated run at a load below saturation realises each request's route, prefill time and
shipped bytes; `realised_capacities` puts the run's own means into the same equations:

    Theta_prfaas / p   = min(N_prfaas / mean(prefill_s | PrfaaS), B_out / mean(bytes | PrfaaS)) / p_sim
    Theta_pd_p / (1-p) = N_p / mean(prefill_s | PD) / (1 - p_sim)
    Theta_pd_d         = the planner's (a constant step time and BS_max, not a per-request cost)

so `lambda_max` here is the throughput the planner would predict had it known the simulated costs. It
differs from the planner's only where the two cost models differ (prefix hits priced differently, bytes
shipped differently, routing on another length): a test of "one cost model in both", free of the
queueing margin that the max-sustainable-rate search (`sim.search`) adds near saturation.
"""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.core.lifecycle import ClusterKind
from prfaas.core.units import BITS_PER_BYTE, GBPS_BITS_PER_S
from prfaas.planner.model import PlanPoint
from prfaas.sim.run import RunResult


@dataclass(frozen=True, slots=True)
class RealisedCapacities:
    """Stage caps on Lambda (req/s) from a simulated run's per-request costs (None: stage unused)."""

    num_requests: int
    offload_fraction: float
    mean_prefill_prfaas_s: float | None
    mean_prefill_pd_s: float | None
    mean_shipped_bytes: float | None
    prfaas_cap_rps: float | None
    pd_prefill_cap_rps: float | None
    pd_decode_cap_rps: float
    lambda_max: float


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def realised_capacities(result: RunResult, point: PlanPoint, egress_gbps: float | None,
                        end_s: float | None = None) -> RealisedCapacities:
    """Eqs. 3-6 at `point`'s counts with the means of `result`'s finished requests (arrived before `end_s`)."""
    recs = [r for r in result.records if r.is_ok and r.prefill_s is not None
            and (end_s is None or r.arrival_s < end_s)]
    if not recs:
        raise ValueError("the run finished no request")
    offloaded = [r for r in recs if r.prefill_cluster == ClusterKind.PRFAAS.value]
    local = [r for r in recs if r.prefill_cluster == ClusterKind.PD.value]
    p = len(offloaded) / len(recs)
    t_prfaas = _mean([float(r.prefill_s) for r in offloaded if r.prefill_s is not None])
    t_pd = _mean([float(r.prefill_s) for r in local if r.prefill_s is not None])
    shipped = _mean([float(r.transfer_bytes) for r in offloaded])
    caps: list[float] = [point.theta_pd_d]
    prfaas_cap = pd_cap = None
    if offloaded and t_prfaas is not None and shipped is not None:
        theta = point.n_prfaas / t_prfaas
        if egress_gbps is not None and shipped > 0:
            theta = min(theta, egress_gbps * GBPS_BITS_PER_S / (shipped * BITS_PER_BYTE))
        prfaas_cap = theta / p
        caps.append(prfaas_cap)
    if local and t_pd is not None:
        pd_cap = point.n_p / t_pd / (1.0 - p)
        caps.append(pd_cap)
    return RealisedCapacities(len(recs), p, t_prfaas, t_pd, shipped, prfaas_cap, pd_cap, point.theta_pd_d,
                              min(caps))
