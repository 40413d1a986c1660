"""From command-line choices to what a benchmark needs: deployment config, sites, workload, load options.

    setup = resolve_setup(SetupChoices(...))     # validates; picks the cap (explicit, or the paper's regime)
    setup.cfg, setup.sites_spec, setup.spec, setup.opts, setup.slo, setup.regime

Cap: `cap_mbit` if given; else, with a `prfaas profile` JSON, the cap that puts the small model in the paper's
regime (`regime.regime_for`: 13 % average egress utilisation); else 80 Mbit/s (the regime measured for the
default model on the project's 2-core machine) or 50 Mbit/s for the tiny CI model. Sites are used when asked,
or by default when this process can make namespaces (root); otherwise everything runs on loopback and the
cap only paces the PrfaaS senders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from prfaas.bench.deploy import CorruptPlan, with_link
from prfaas.bench.loadgen import LoadOptions
from prfaas.bench.netns import SiteError, can_emulate
from prfaas.bench.regime import Regime, bench_config, regime_for, tiny_config
from prfaas.bench.sites import SitesSpec
from prfaas.bench.summary import Slo
from prfaas.bench.workload import WorkloadKind, WorkloadSpec
from prfaas.core.errors import ConfigError
from prfaas.core.lifecycle import ClusterKind
from prfaas.serve.config import DeployConfig, load_config

DEFAULT_CAP_MBIT = 80.0
TINY_CAP_MBIT = 50.0
MAX_CONTEXT_TOKENS = 16384  # engine.default_model.DEFAULT_MAX_CONTEXT_TOKENS (not imported: it pulls in torch)


@dataclass(frozen=True, slots=True)
class SetupChoices:
    config: Path | None = None
    tiny: bool = False
    sites: bool | None = None  # None: when possible
    cap_mbit: float | None = None
    profile: Path | None = None
    workload: str = "lognormal"
    trace: Path | None = None
    num_requests: int = 40
    rate_rps: float = 1.0
    max_tokens: int = 16
    seed: int = 0
    threshold_tokens: int | None = None
    policy: str | None = None
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    concurrency: int = 32
    time_budget_s: float = 600.0
    request_timeout_s: float = 300.0
    delay_ms: float = 0.0  # one-way delay of the KV stream (sender shim; EMULATION, no netem here)
    chunk_loss: float = 0.0  # probability a KV chunk send is lost and retransmitted (fault node; EMULATION)


@dataclass(frozen=True, slots=True)
class BenchSetup:
    cfg: DeployConfig
    sites_spec: SitesSpec | None
    spec: WorkloadSpec
    opts: LoadOptions
    slo: Slo
    cap_mbit: float
    regime: Regime | None
    notes: tuple[str, ...]
    fault_nodes: dict[str, CorruptPlan]


def _base_config(c: SetupChoices) -> DeployConfig:
    if c.config is not None:
        return load_config(c.config)
    return tiny_config() if c.tiny else bench_config()


def _use_sites(choice: bool | None) -> tuple[bool, str | None]:
    possible, why = can_emulate()
    if choice is True and not possible:
        raise SiteError(f"--sites needs network namespaces: {why} (use --no-sites for loopback)")
    if choice is None and not possible:
        return False, f"running on loopback: {why}"
    return bool(choice if choice is not None else possible), None


def _policy(cfg: DeployConfig, c: SetupChoices) -> DeployConfig:
    policy = cfg.policy
    if c.policy is not None:
        policy = msgspec.structs.replace(policy, name=c.policy)
    if c.threshold_tokens is not None:
        policy = msgspec.structs.replace(policy, threshold_tokens=c.threshold_tokens)
    return msgspec.structs.replace(cfg, policy=policy)


def resolve_setup(c: SetupChoices) -> BenchSetup:
    if c.num_requests < 1 or c.rate_rps <= 0 or c.max_tokens < 1 or c.concurrency < 1:
        raise ConfigError("--requests, --rate-rps, --max-tokens and --concurrency must be positive")
    try:
        kind = WorkloadKind(c.workload)
    except ValueError:
        raise ConfigError(f"--workload must be one of: {', '.join(k.value for k in WorkloadKind)}") from None
    cfg = _policy(_base_config(c), c)
    threshold = int(cfg.policy.threshold_tokens or 1024)
    max_prompt = MAX_CONTEXT_TOKENS - c.max_tokens - 1
    regime = regime_for(c.profile, threshold, max_prompt) if c.profile is not None else None
    cap = c.cap_mbit or (regime.cap_mbit if regime else (TINY_CAP_MBIT if c.tiny else DEFAULT_CAP_MBIT))
    use_sites, note = _use_sites(c.sites)
    if c.delay_ms < 0 or not 0.0 <= c.chunk_loss < 1.0:
        raise ConfigError("--delay-ms must be >= 0 and --chunk-loss in [0, 1)")
    delay_s = c.delay_ms / 1000.0 if c.delay_ms else cfg.egress_link().one_way_delay_s
    cfg = with_link(cfg, cap / 1000.0, delay_s)
    lossy = {n.name: CorruptPlan(corrupt_seqs=(), probability=c.chunk_loss)
             for n in cfg.nodes if n.cluster is ClusterKind.PRFAAS} if c.chunk_loss > 0 else {}
    spec = WorkloadSpec(kind=kind, num_requests=c.num_requests, rate_rps=c.rate_rps, threshold_tokens=threshold,
                        max_tokens=c.max_tokens, seed=c.seed, trace_path=c.trace)
    opts = LoadOptions(max_concurrency=c.concurrency, time_budget_s=c.time_budget_s,
                       request_timeout_s=c.request_timeout_s, model=cfg.model.served_name)
    notes = tuple(n for n in (note, regime.describe() if regime else None) if n)
    return BenchSetup(cfg, SitesSpec(cap_mbit=cap) if use_sites else None, spec, opts,
                      Slo(c.slo_ttft_s, c.slo_tpot_s), cap, regime, notes, lossy)
