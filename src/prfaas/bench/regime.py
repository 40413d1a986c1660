"""Scaling the paper's regime down to one machine, and the small configs the benchmarks use.

The paper's case study (arXiv 2604.15039 §4) runs its PrfaaS cluster compute-bound: at the operating point the
offloaded requests (mean l_long = 44K tokens) produce KV at N_prfaas * Phi_kv(l_long), about 13 Gbps, on a
100 Gbps link, i.e. **13 % average egress utilisation**. We keep that ratio:

    cap = N_prfaas * Phi_kv(l_long') / 0.13,      Phi_kv(l) = S_kv(l) / T_prefill(l)   (Eq. 1)

where Phi_kv comes from a `prfaas profile` of the small model on this machine and l_long' is the mean
offloaded length of the paper's log-normal after the length scaling of `workload.WorkloadSpec` (threshold
19.4K -> the deployment's threshold). `regime_for(profile, ...)` returns the numbers and the cap.

    tiny_config()       the CI deployment: tiny hybrid (4 layers, hidden 128), threshold 256, no rebalancing
    bench_config()      the benchmark deployment: the embedded default model (8 layers, hidden 512)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prfaas.bench.workload import PAPER_THRESHOLD_TOKENS
from prfaas.core.lifecycle import ClusterKind
from prfaas.perf.measured import ProfilePrefillModel, load_profile_json
from prfaas.serve.config import DeployConfig, GatewaySection, ModelSection, PolicySection, default_config
from prfaas.workload import scale_distribution, truncated_lognormal
from prfaas.workload.lognormal import PAPER_MU

PAPER_EGRESS_UTILISATION = 0.13  # ~13 Gbps average of ~100 Gbps at the operating point (arXiv 2604.15039 §4)
PAPER_L_LONG_TOKENS = 44_000


@dataclass(frozen=True, slots=True)
class Regime:
    length_factor: float
    threshold_tokens: int
    l_long_tokens: float  # mean offloaded prompt after scaling
    offload_fraction: float
    phi_kv_gbps: float  # one PrfaaS node at l_long
    n_prfaas: int
    cap_mbit: float
    target_utilisation: float

    def describe(self) -> str:
        return (f"lengths x{self.length_factor:.4f} (paper t=19.4K -> {self.threshold_tokens}, median "
                f"e^{PAPER_MU} x factor); offloaded share {self.offload_fraction:.2f}, l_long {self.l_long_tokens:.0f} "
                f"tokens; Phi_kv(l_long) {self.phi_kv_gbps * 1e3:.2f} Mbit/s per PrfaaS node x {self.n_prfaas} "
                f"-> cap {self.cap_mbit:.1f} Mbit/s for {self.target_utilisation:.0%} average egress utilisation")


def regime_for(profile_path: Path, threshold_tokens: int, max_prompt_tokens: int, n_prfaas: int = 1,
               target_utilisation: float = PAPER_EGRESS_UTILISATION) -> Regime:
    factor = threshold_tokens / PAPER_THRESHOLD_TOKENS
    dist = scale_distribution(truncated_lognormal(), factor, max_prompt_tokens)
    l_long = dist.mean_above(threshold_tokens) or float(threshold_tokens)
    model = ProfilePrefillModel(load_profile_json(profile_path))
    phi_bytes_per_s = model.s_kv_bytes(l_long) / model.t_prefill_s(l_long)
    phi_gbps = phi_bytes_per_s * 8 / 1e9
    cap_mbit = n_prfaas * phi_gbps * 1e3 / target_utilisation
    return Regime(factor, threshold_tokens, l_long, dist.prob_above(threshold_tokens), phi_gbps, n_prfaas,
                  cap_mbit, target_utilisation)


def tiny_config(threshold_tokens: int = 256, capacity_gbps: float | None = 0.05) -> DeployConfig:
    """The CI deployment (the serve tests' tiny model); loopback unless placed on sites."""
    cfg = default_config(
        model=ModelSection(num_layers=4, hidden_size=128, max_batch_size=32),
        gateway=GatewaySection(port=0, heartbeat_interval_s=0.2, heartbeat_timeout_s=1.5, route_wait_s=30.0),
        policy=PolicySection(threshold_tokens=threshold_tokens, rebalance=False))
    return _with_capacity(cfg, capacity_gbps)


def bench_config(threshold_tokens: int = 1024, capacity_gbps: float | None = 0.08) -> DeployConfig:
    """The benchmark deployment: the embedded default model, fixed P/D split (the planner's is compared)."""
    cfg = default_config(
        gateway=GatewaySection(port=0, heartbeat_interval_s=0.5, heartbeat_timeout_s=3.0, route_wait_s=60.0),
        policy=PolicySection(threshold_tokens=threshold_tokens, rebalance=False))
    return _with_capacity(cfg, capacity_gbps)


def _with_capacity(cfg: DeployConfig, capacity_gbps: float | None) -> DeployConfig:
    from prfaas.bench.deploy import with_link

    return with_link(cfg, capacity_gbps)


def node_names(cfg: DeployConfig, cluster: ClusterKind) -> list[str]:
    return [n.name for n in cfg.nodes if n.cluster is cluster]
