"""Turn a validated `SimConfig` into what `sim.run.simulate` takes: deployment, requests, script, options.

Model profiles: `profile = "paper"` is the case study (Table 5 on 8 x H200 for PrfaaS, the planner's
H20 model derived from it for PD, `planner.paper`); otherwise a `perf` profile JSON (`pd_profile`
defaults to the same file). Decode uses the profile's decode fit when it has decode points, else the
constant `t_decode_s`. Workloads come from `prfaas.workload` (traces, log-normal, mix shift, arrival
processes); requests arriving at or after `duration_s` are dropped. Relative paths (profiles, traces)
are relative to the config file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prfaas.core.errors import ConfigError
from prfaas.perf.base import DecodeCostModel, PrefillCostModel
from prfaas.perf.measured import ProfileDecodeModel, ProfilePrefillModel, load_profile_json
from prfaas.planner.scenario import Scenario, Topology
from prfaas.policy.config import PolicyConfig
from prfaas.policy.rebalancer import Reoptimiser
from prfaas.sim.config import SimConfig, policy_config
from prfaas.sim.deployment import Deployment, LinkSpec, ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.scenario import ConstantStepDecode, pd_nodes, prfaas_nodes, reoptimiser_for
from prfaas.workload import arrivals as arr
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.empirical import lengths_from_trace
from prfaas.workload.generate import synthetic_requests
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.mixshift import MixShift, short_long_split
from prfaas.workload.request import WorkloadRequest
from prfaas.workload.traces import load_trace


@dataclass(frozen=True, slots=True)
class RunInputs:
    deployment: Deployment
    requests: tuple[WorkloadRequest, ...]
    script: tuple[ScriptedEvent, ...]
    options: SimOptions
    policy_config: PolicyConfig
    lengths: DiscreteLengthDistribution
    reoptimise: Reoptimiser | None


@dataclass(frozen=True, slots=True)
class CostModels:
    prfaas_prefill: PrefillCostModel
    pd_prefill: PrefillCostModel
    decode: DecodeCostModel


def cost_models(cfg: SimConfig) -> CostModels:
    m = cfg.model
    if m.profile == "paper" and m.pd_profile is None:
        from prfaas.planner.paper import paper_case

        case = paper_case()
        assert case.prfaas_pd.prfaas_prefill is not None and case.prfaas_pd.pd_prefill is not None
        return CostModels(case.prfaas_pd.prfaas_prefill, case.prfaas_pd.pd_prefill, ConstantStepDecode(m.t_decode_s))
    profile = load_profile_json(resolve_path(m.profile, cfg))
    pd_profile = load_profile_json(resolve_path(m.pd_profile, cfg)) if m.pd_profile else profile
    decode: DecodeCostModel = ProfileDecodeModel(pd_profile) if pd_profile.decode else ConstantStepDecode(
        m.t_decode_s)
    return CostModels(ProfilePrefillModel(profile), ProfilePrefillModel(pd_profile), decode)


def resolve_path(path: str, cfg: SimConfig) -> Path:
    """A path from the config file: absolute, or relative to the file's directory."""
    p = Path(path)
    if p.is_absolute() or not cfg.source:
        return p
    return Path(cfg.source).parent / p


def deployment_from(cfg: SimConfig, models: CostModels) -> Deployment:
    c = cfg.cluster
    nodes = prfaas_nodes(c.n_prfaas, models.prfaas_prefill, c.cache_blocks)
    nodes += pd_nodes(c.n_pd_prefill, c.n_pd_decode, models.pd_prefill, models.decode, cfg.model.bs_max,
                      c.cache_blocks)
    link = LinkSpec(capacity_gbps=cfg.link.capacity_gbps, latency_s=cfg.link.latency_s, window_s=cfg.link.window_s,
                    buffer_s=cfg.link.buffer_s)
    return Deployment(tuple(nodes), link, c.intra_cluster_gbps)


def arrival_process(cfg: SimConfig) -> arr.ArrivalProcess:
    a = cfg.workload.arrivals
    if a.kind == "poisson":
        assert a.rate_rps is not None
        return arr.PoissonArrivals(a.rate_rps)
    if a.kind == "burst":
        assert a.base_rps is not None and a.burst_rps is not None and a.period_s is not None
        assert a.burst_s is not None
        return arr.BurstSchedule(a.base_rps, a.burst_rps, a.period_s, a.burst_s, a.phase_s)
    if a.kind == "diurnal":
        assert a.mean_rps is not None and a.amplitude_rps is not None and a.period_s is not None
        return arr.DiurnalRamp(a.mean_rps, a.amplitude_rps, a.period_s, a.phase_s)
    assert a.start_times_s is not None and a.step_rates_rps is not None
    return arr.StepSchedule(tuple(a.start_times_s), tuple(a.step_rates_rps))


def workload_from(cfg: SimConfig) -> tuple[list[WorkloadRequest], DiscreteLengthDistribution]:
    w = cfg.workload
    if w.kind == "trace":
        assert w.trace is not None
        trace = load_trace(resolve_path(w.trace, cfg), limit=w.limit)
        scaled = [_rescale(r, w.time_scale) for r in trace]
        kept = [r for r in scaled if r.arrival_s < cfg.duration_s]
        if not kept:
            raise ConfigError(f"no trace request arrives before duration_s = {cfg.duration_s}", path=w.trace)
        return kept, lengths_from_trace(kept)
    dist = truncated_lognormal(w.mu, w.sigma, w.min_tokens, w.max_tokens)
    sampler: DiscreteLengthDistribution | MixShift = dist
    if w.kind == "mixshift":
        short, long = short_long_split(dist, w.split_tokens)
        sampler = MixShift(short, long, w.start_long_fraction, w.end_long_fraction, w.shift_start_s, w.shift_end_s)
    reqs = synthetic_requests(sampler, w.output_tokens, arrival_process(cfg), duration_s=cfg.duration_s,
                              seed=cfg.seed)
    if not reqs:
        raise ConfigError("the workload produced no request (rate too low or duration too short)", path=cfg.source)
    return reqs, dist


def _rescale(req: WorkloadRequest, time_scale: float) -> WorkloadRequest:
    if time_scale == 1.0:
        return req
    return WorkloadRequest(req.request_id, req.arrival_s * time_scale, req.input_tokens, req.output_tokens,
                           req.block_hashes, req.session_id)


def script_from(cfg: SimConfig) -> tuple[ScriptedEvent, ...]:
    kinds = {"link_capacity": ScriptKind.LINK_CAPACITY, "node_fail": ScriptKind.NODE_FAIL,
             "node_recover": ScriptKind.NODE_RECOVER}
    out = []
    for ev in cfg.events:
        kind = kinds[ev.kind]
        if kind is ScriptKind.LINK_CAPACITY:
            out.append(ScriptedEvent(ev.time_s, kind, link_id=ev.link, capacity_gbps=ev.capacity_gbps))
        else:
            out.append(ScriptedEvent(ev.time_s, kind, instance_id=ev.instance))
    return tuple(out)


def build_inputs(cfg: SimConfig) -> RunInputs:
    models = cost_models(cfg)
    deployment = deployment_from(cfg, models)
    requests, lengths = workload_from(cfg)
    options = SimOptions(horizon_s=cfg.horizon_s, tpot_slo_s=cfg.tpot_slo_s, ttft_slo_s=cfg.ttft_slo_s,
                         control_interval_s=cfg.policy.control_interval_s if cfg.policy.rebalance else None,
                         sample_interval_s=max(cfg.duration_s / 1000, 1.0),
                         decode_holds_prefix=cfg.cluster.decode_holds_prefix)
    reoptimise = None
    if cfg.policy.rebalance and cfg.cluster.n_prfaas >= 1 and cfg.cluster.n_pd_prefill + cfg.cluster.n_pd_decode >= 2:
        reoptimise = reoptimiser_for(_planner_scenario(cfg, models, lengths))
    return RunInputs(deployment, tuple(requests), script_from(cfg), options, policy_config(cfg), lengths, reoptimise)


def _planner_scenario(cfg: SimConfig, models: CostModels, lengths: DiscreteLengthDistribution) -> Scenario:
    c = cfg.cluster
    return Scenario(name="config", topology=Topology.PRFAAS_PD, pd_prefill=models.pd_prefill, pd_decode=None,
                    prfaas_prefill=models.prfaas_prefill, n_prfaas=c.n_prfaas, n_pd=c.n_pd_prefill + c.n_pd_decode,
                    egress_gbps=cfg.link.capacity_gbps or None, lengths=lengths,
                    output_tokens=max(cfg.workload.output_tokens, 1), bs_max=cfg.model.bs_max,
                    t_decode_s=cfg.model.t_decode_s)
