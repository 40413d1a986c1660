"""Cost knowledge the live gateway hands its policy: the planner for the long-term loop, S_kv for link budgets,
prefill times for cache-transfer decisions.

The planner inside the live long-term loop re-optimises the threshold for the gateway's node counts.

With `[policy] profile = "FILE.json"` (a `prfaas profile` output measured on the nodes' hardware), the
gateway builds a planner `Scenario` of this deployment and hands `policy.planner_adapter.planner_reoptimiser`
to the rebalancer, which calls it with the live uncached-length samples after each role change. Both
clusters use the profile (one hardware type on one machine; give each cluster its own profile to plan a
heterogeneous deployment). With `model.engine = "emulated"` and no profile, the scenario is the emulated
engine's own (scaled) cost models, per cluster (`emulated_scenario`): the nodes' timing is known exactly.
Without either the threshold moves only by hand (`POST /admin/policy`) or through the short-term bandwidth loop.
"""

from __future__ import annotations

import bisect

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.perf.measured import ProfileDecodeModel, ProfilePrefillModel, load_profile_json
from prfaas.planner.scenario import Scenario, Topology
from prfaas.policy.planner_adapter import planner_reoptimiser
from prfaas.policy.rebalancer import Reoptimiser
from prfaas.policy.routers.base import PrefillTimeFn
from prfaas.serve.config import DeployConfig, EngineKind
from prfaas.workload.distribution import DiscreteLengthDistribution

DEFAULT_OUTPUT_TOKENS = 256  # L_out until the planner sees live samples; only the decode bound uses it


def live_scenario(cfg: DeployConfig, profile_path: str) -> Scenario:
    """This deployment as a planner scenario: counts from `cfg.nodes`, egress from the PrfaaS link."""
    profile = load_profile_json(profile_path)
    prefill = ProfilePrefillModel(profile)
    n_prfaas = sum(1 for n in cfg.nodes if n.cluster is ClusterKind.PRFAAS)
    n_pd = sum(1 for n in cfg.nodes if n.cluster is ClusterKind.PD)
    lengths = DiscreteLengthDistribution([p.num_tokens for p in profile.prefill], [1.0] * len(profile.prefill),
                                         name="profile lengths (until live samples arrive)")
    bs_max = cfg.model.max_batch_size
    context = lengths.mean()
    t_decode_s = ProfileDecodeModel(profile).t_step_s(bs_max, context) if profile.decode else 0.05
    egress = next((link.capacity_gbps for link in cfg.links), None)
    return Scenario(
        name="live", topology=Topology.PRFAAS_PD, pd_prefill=prefill, pd_decode=None, prfaas_prefill=prefill,
        n_prfaas=n_prfaas, n_pd=n_pd, egress_gbps=egress, lengths=lengths, output_tokens=DEFAULT_OUTPUT_TOKENS,
        bs_max=bs_max, t_decode_s=t_decode_s, gpus_per_instance_prfaas=1, gpus_per_instance_pd=1,
    )


def emulated_scenario(cfg: DeployConfig) -> Scenario:
    """This emulated deployment as a planner scenario: the emulated engine's scaled cost models per cluster
    (`serve.emulated_backend.emulated_models`), its step time, the PrfaaS link's capacity, and the paper's length
    distribution (the emulated model is the paper's) until live samples arrive."""
    from prfaas.perf.emulated import EmulatedDecodeModel, EmulationScale
    from prfaas.serve.emulated_backend import emulated_models
    from prfaas.workload.lognormal import truncated_lognormal

    section = cfg.model.emulated
    models = emulated_models(section)
    scale = EmulationScale(section.time_scale, section.state_scale)
    n_prfaas = sum(1 for n in cfg.nodes if n.cluster is ClusterKind.PRFAAS)
    n_pd = sum(1 for n in cfg.nodes if n.cluster is ClusterKind.PD)
    egress = next((link.capacity_gbps for link in cfg.links), None)
    return Scenario(
        name="live-emulated", topology=Topology.PRFAAS_PD, pd_prefill=models[ClusterKind.PD],
        pd_decode=EmulatedDecodeModel(section.t_decode_s, scale), prfaas_prefill=models[ClusterKind.PRFAAS],
        n_prfaas=n_prfaas, n_pd=n_pd, egress_gbps=egress, lengths=truncated_lognormal(),
        output_tokens=DEFAULT_OUTPUT_TOKENS, bs_max=cfg.model.max_batch_size,
        t_decode_s=scale.duration_s(section.t_decode_s), gpus_per_instance_prfaas=1, gpus_per_instance_pd=1,
    )


def live_reoptimiser(cfg: DeployConfig) -> Reoptimiser | None:
    """The planner-backed re-optimiser, or None when the config names no profile (and the engine is not the
    emulated one) or lacks a cluster."""
    path = cfg.policy.profile
    is_emulated = cfg.model.engine is EngineKind.EMULATED
    if path is None and not is_emulated:
        return None
    roles = {n.role for n in cfg.nodes}
    if Role.PRFAAS_PREFILL not in roles or sum(1 for n in cfg.nodes if n.cluster is ClusterKind.PD) < 2:
        return None
    return planner_reoptimiser(live_scenario(cfg, path) if path is not None else emulated_scenario(cfg))


class StateBytesCurve:
    """S_kv(l) by piecewise-linear interpolation of the (tokens, bytes) points a node reports at registration
    (the end segments extend linearly). Immutable; a plain callable for the policy."""

    def __init__(self, points: list[tuple[int, int]]) -> None:
        ordered = sorted({int(n): int(b) for n, b in points}.items())
        if not ordered:
            raise ValueError("no S_kv points")
        self._tokens = [float(n) for n, _ in ordered]
        self._bytes = [float(b) for _, b in ordered]

    def __call__(self, num_tokens: float) -> float:
        xs, ys = self._tokens, self._bytes
        if len(xs) == 1:
            return ys[0]
        i = bisect.bisect_right(xs, num_tokens) - 1
        i = min(max(i, 0), len(xs) - 2)
        slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
        return max(0.0, ys[i] + slope * (num_tokens - xs[i]))


def live_prefill_time(cfg: DeployConfig) -> PrefillTimeFn | None:
    """T(cluster, uncached, cached) from `[policy] profile` (both clusters run the profiled hardware), or None."""
    if cfg.policy.profile is None:
        return None
    model = ProfilePrefillModel(load_profile_json(cfg.policy.profile))

    def prefill_time_s(_cluster: ClusterKind, uncached_tokens: float, cached_tokens: float) -> float:
        return model.t_prefill_s(max(uncached_tokens, 1.0), cached_tokens)

    return prefill_time_s
