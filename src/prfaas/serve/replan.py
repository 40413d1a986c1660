"""The planner inside the live long-term loop: re-optimise the threshold for the gateway's node counts.

With `[policy] profile = "FILE.json"` (a `prfaas profile` output measured on the nodes' hardware), the
gateway builds a planner `Scenario` of this deployment and hands `policy.planner_adapter.planner_reoptimiser`
to the rebalancer, which calls it with the live uncached-length samples after each role change. Both
clusters use the profile (one hardware type on one machine; give each cluster its own profile to plan a
heterogeneous deployment). Without a profile the threshold moves only by hand (`POST /admin/policy`) or
through the short-term bandwidth loop.
"""

from __future__ import annotations

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.perf.measured import ProfileDecodeModel, ProfilePrefillModel, load_profile_json
from prfaas.planner.scenario import Scenario, Topology
from prfaas.policy.planner_adapter import planner_reoptimiser
from prfaas.policy.rebalancer import Reoptimiser
from prfaas.serve.config import DeployConfig
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


def live_reoptimiser(cfg: DeployConfig) -> Reoptimiser | None:
    """The planner-backed re-optimiser, or None when the config names no profile or lacks a cluster."""
    path = cfg.policy.profile
    if path is None:
        return None
    roles = {n.role for n in cfg.nodes}
    if Role.PRFAAS_PREFILL not in roles or sum(1 for n in cfg.nodes if n.cluster is ClusterKind.PD) < 2:
        return None
    return planner_reoptimiser(live_scenario(cfg, path))
