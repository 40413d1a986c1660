"""Turn a validated multi-site `SimConfig` (one with `[topology]`) into what `simulate_multisite` takes.

Each cluster's prefill model comes from its `accelerator`, derived exactly as the multi-site planner derives it
(`planner.multi_build.AcceleratorPrefillModels`): `[model] profile = "paper"` is the case study's Table 5 model
on H200, carried to H20 by the paper's calibration and to any other catalog accelerator by the peak BF16 ratio;
a measured `profile` is taken as measured on H200 (the planner's default `prfaas_gpu`) and `pd_profile`, when
given, is every other accelerator's model. So clusters naming the defaults (h200 PrfaaS, h20 PD) prefill with
the models the simulator always used. Decode is the config's (`sim.build.cost_models`) in every PD cluster, as
in the planner.
Region k (topology order) draws its requests from its workload with seed + k: `[regions.NAME.workload]` if
given, else `[workload]` with Poisson arrivals at the region's `traffic_rps` (unless `[workload.arrivals]`
sets a rate). Requests are merged into one id space (`merge_regions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from prfaas.planner.build import PlanInputs
from prfaas.planner.multi_build import AcceleratorPrefillModels
from prfaas.policy.config import PolicyConfig
from prfaas.policy.sites import SiteSelectConfig
from prfaas.sim.build import cost_models, resolve_path, workload_from
from prfaas.sim.config import ArrivalsSection, SimConfig, WorkloadSection, policy_config
from prfaas.sim.deployment import ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.multisite_deployment import MultiSiteDeployment, SiteEvent, SiteEventKind
from prfaas.sim.multisite_run import merge_regions
from prfaas.workload.request import WorkloadRequest


@dataclass(frozen=True, slots=True)
class MultiSiteInputs:
    deployment: MultiSiteDeployment
    requests: tuple[WorkloadRequest, ...]
    region_of: dict[int, str]
    script: tuple[ScriptedEvent | SiteEvent, ...]
    options: SimOptions
    policy_config: PolicyConfig
    selector: str
    selector_config: SiteSelectConfig
    rebalance: bool = False  # `[policy] rebalance`: each region's own PD-P / PD-D rebalancer


def region_workload(cfg: SimConfig, region: str) -> WorkloadSection:
    assert cfg.topology is not None
    section = cfg.regions.get(region)
    w = section.workload if section is not None and section.workload is not None else cfg.workload
    a = w.arrivals
    if a.kind == "poisson" and a.rate_rps is None:
        pd = next(p for p in cfg.topology.pd if p.name == region)
        w = msgspec.structs.replace(w, arrivals=ArrivalsSection(kind="poisson", rate_rps=pd.traffic_rps))
    return w


def build_multisite_inputs(cfg: SimConfig) -> MultiSiteInputs:
    topo = cfg.topology
    if topo is None:
        raise ValueError("not a multi-site scenario: no [topology] section")
    models = cost_models(cfg)
    prefill = accelerator_prefill_models(cfg)
    site_prefill = {s.name: prefill.model_for(s.accelerator) for s in topo.prfaas}
    site_prefill.update({s.name: prefill.model_for(s.accelerator) for s in topo.pd})
    prfaas_default = site_prefill[topo.prfaas[0].name] if topo.prfaas else prefill.model_for(prefill.source_gpu)
    c = cfg.cluster
    deployment = MultiSiteDeployment(topo, prfaas_default, site_prefill[topo.pd[0].name], models.decode,
                                     bs_max=cfg.model.bs_max, cache_blocks=c.cache_blocks,
                                     intra_cluster_gbps=c.intra_cluster_gbps, window_s=cfg.link.window_s,
                                     buffer_s=cfg.link.buffer_s, site_prefill=site_prefill)
    per_region: dict[str, list[WorkloadRequest]] = {}
    for k, pd in enumerate(topo.pd_names):
        region_cfg = msgspec.structs.replace(cfg, workload=region_workload(cfg, pd), seed=cfg.seed + k)
        per_region[pd], _ = workload_from(region_cfg)
    requests, region_of = merge_regions(per_region)
    options = SimOptions(horizon_s=cfg.horizon_s, tpot_slo_s=cfg.tpot_slo_s, ttft_slo_s=cfg.ttft_slo_s,
                         control_interval_s=cfg.policy.control_interval_s if cfg.policy.rebalance else None,
                         sample_interval_s=max(cfg.duration_s / 1000, 1.0),
                         decode_holds_prefix=c.decode_holds_prefix)
    s = cfg.sites
    selector_config = SiteSelectConfig(target_queue_s=s.target_queue_s, weights=s.weights,
                                       min_available_fraction=s.min_available_fraction,
                                       bandwidth=policy_config(cfg).bandwidth)
    return MultiSiteInputs(deployment, tuple(requests), region_of, script_of(cfg), options, policy_config(cfg),
                           s.selector, selector_config, cfg.policy.rebalance)


def accelerator_prefill_models(cfg: SimConfig) -> AcceleratorPrefillModels:
    """The planner's per-accelerator prefill models for this config's `[model]` (module docstring)."""
    m = cfg.model
    if m.profile == "paper":
        return AcceleratorPrefillModels(PlanInputs())
    pd_profile = str(resolve_path(m.pd_profile, cfg)) if m.pd_profile else None
    return AcceleratorPrefillModels(PlanInputs(profile_path=str(resolve_path(m.profile, cfg)),
                                               pd_profile_path=pd_profile))


def script_of(cfg: SimConfig) -> tuple[ScriptedEvent | SiteEvent, ...]:
    out: list[ScriptedEvent | SiteEvent] = []
    for ev in cfg.events:
        if ev.kind == "link_capacity":
            out.append(ScriptedEvent(ev.time_s, ScriptKind.LINK_CAPACITY, link_id=ev.link,
                                     capacity_gbps=ev.capacity_gbps))
        elif ev.kind in ("site_fail", "site_recover"):
            assert ev.site is not None
            out.append(SiteEvent(ev.time_s, SiteEventKind(ev.kind), ev.site))
        else:
            kind = ScriptKind.NODE_FAIL if ev.kind == "node_fail" else ScriptKind.NODE_RECOVER
            out.append(ScriptedEvent(ev.time_s, kind, instance_id=ev.instance))
    return tuple(out)
