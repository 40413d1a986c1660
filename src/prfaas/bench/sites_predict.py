"""The multi-site simulator's prediction of a live `prfaas bench sites run`, on the very requests it sent.

    pred = predict_sites(topology, spec, result)          # sim.multisite_run.simulate_multisite, same everything
    pred.regions["us"] -> {"ttft_mean_s", "ttft_p90_s", "offload_share": {site: share}, "sent", "completed"}

What the simulator gets, each as the live run had it (`bench.sites_run`):
- **requests**: every live record of every region (sent, whatever its outcome): arrival = the record's `send_s`
  (seconds since the common start of the load), prompt = its `prompt_tokens`, output = its `max_tokens`;
  merged into one id space (`merge_regions`), each tagged with its region;
- **nodes**: the emulation's node counts (at most `max_nodes_per_cluster` per PrfaaS cluster and per PD role,
  `sites_run._nodes`' rule), as a topology whose PD clusters carry `prefill_instances` = the live PD-P count;
- **cost models**: the emulated engine's (`serve.emulated_backend.emulated_models` with the run's k_t and k_b:
  H200 timing on PrfaaS nodes, H20 on PD nodes, S_kv / k_b), decode T_decode x k_t per batch step (BS_max = the
  live model section's `max_batch_size`), as `bench.paper_config.sim_scenario` does for the single-site bench;
- **links**: the emulated capacities (paper Gbps x link scale, `sites_run.emulated_topology`: the tc caps);
  latency as the topology states it (the gateways' selectors see it; the veths add none);
- **policy**: the same router defaults with the run's threshold, the same site selector (`SiteSelectConfig`
  defaults, as the gateways build it), seeing the sites as each region's gateway does (`sim.multisite_gateway`:
  each PrfaaS node's prefill tokens as of its last heartbeat, every `HEARTBEAT_S`, the region's own in flight,
  T(tokens) per node), not the simulator's exact view;
- **fault**: the one the live run injected, at the time it injected it (`result.fault_s`): `site_fail` of the
  killed cluster (site-lost), or the link's capacity / 10 (link-degraded). None if the run injected none, or a
  burst (its extra requests are among the live records).
- **the regions' offered-load meters** (`policy.region_load`): the gateways' window in live seconds, and every
  request a gateway admitted before the load (the path probes, `before_load_s`) observed first, as live;
- **queues**: as live, the router picks the PrfaaS instance and each instance's queue starts its prefills in
  `FairQueue` order over regions (`prefill_queue = "node"`; live: `serve.worker`, cost = the emulated prefill's
  seconds, weights = the selector's), and pauses a running prefill for another region's whose fair turn comes
  first when the live nodes did (`preempt_prefill` = the spec's `prefill_preemption`, which `sites_run.sites_config`
  gives the nodes as `[policy] prefill_preemption`; live the pause waits for the next layer, simulated it is at once).

Differences that remain (docs/multisite-live.md): the routers see the chosen site's PrfaaS nodes as the gateway
does (`GatewaySiteViews.instance_view`) but their own region's PD nodes exactly; the links' telemetry is the
simulated link's, not a heartbeat's.
Control-plane and transport overheads are the measured request path only (`overhead`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from prfaas.bench.paper_overhead import RequestOverhead, shifted
from prfaas.bench.sites_run import HEARTBEAT_S, SitesFault, SitesRunResult, SitesRunSpec, emulated_topology
from prfaas.bench.summary import nearest_rank
from prfaas.core.errors import ConfigError
from prfaas.core.lifecycle import ClusterKind
from prfaas.core.topology import SiteTopology
from prfaas.perf.emulated import EmulatedDecodeModel, EmulationScale
from prfaas.policy.overrides import apply_policy_overrides
from prfaas.policy.region_load import LOAD_WINDOW_S
from prfaas.serve.config import EmulatedSection, ModelSection
from prfaas.serve.emulated_backend import emulated_models
from prfaas.sim.deployment import ScriptedEvent, ScriptKind, SimOptions
from prfaas.sim.multisite_deployment import MultiSiteDeployment, SiteEvent, SiteEventKind
from prfaas.sim.multisite_run import MultiSiteResult, merge_regions, simulate_multisite
from prfaas.workload.request import WorkloadRequest

LOCAL = "local"  # as bench.sites_report: a request prefilled in its own region


def live_node_counts(topology: SiteTopology, spec: SitesRunSpec) -> dict[str, tuple[int, int]]:
    """Nodes the live run starts per cluster: PrfaaS cluster -> (n, 0), PD region -> (PD-P, PD-D)
    (the rule of `sites_run._nodes`)."""
    cap = spec.max_nodes_per_cluster
    out = {s.name: (max(1, min(s.instances, cap)), 0) for s in topology.prfaas}
    for r in topology.pd:
        n_p = r.prefill_instances if r.prefill_instances is not None else max(1, r.instances // 2)
        out[r.name] = (max(1, min(n_p, cap)), max(1, min(r.instances - n_p, cap)))
    return out


def sim_topology(topology: SiteTopology, spec: SitesRunSpec) -> SiteTopology:
    """The live run's topology for the simulator: its node counts and its emulated link capacities."""
    counts = live_node_counts(topology, spec)
    emu = emulated_topology(topology, spec.link_scale)
    prfaas = [msgspec.structs.replace(s, instances=counts[s.name][0]) for s in emu.prfaas]
    pd = [msgspec.structs.replace(r, instances=sum(counts[r.name]), prefill_instances=counts[r.name][0])
          for r in emu.pd]
    return msgspec.structs.replace(emu, prfaas=prfaas, pd=pd)


def sim_deployment(topology: SiteTopology, spec: SitesRunSpec) -> MultiSiteDeployment:
    """The emulated engine's cost models on the live node counts and link caps (`sites_run.sites_config`'s model)."""
    section = EmulatedSection(time_scale=spec.time_scale, state_scale=spec.state_scale)
    models = emulated_models(section)
    decode = EmulatedDecodeModel(section.t_decode_s, EmulationScale(spec.time_scale, spec.state_scale))
    bs_max = ModelSection().max_batch_size  # sites_config leaves it at its default
    return MultiSiteDeployment(sim_topology(topology, spec), models[ClusterKind.PRFAAS], models[ClusterKind.PD],
                               decode, bs_max=bs_max, cache_blocks=0)  # prefix_cache_bytes = 0 live


def live_requests(result: SitesRunResult, regions: Sequence[str]) -> tuple[list[WorkloadRequest], dict[int, str],
                                                                          dict[int, int]]:
    """Every request the live run sent, as the simulator's: (requests, region of each, live record index of each)."""
    per_region: dict[str, list[WorkloadRequest]] = {}
    for name in regions:
        run = result.regions.get(name)
        if run is None:
            continue
        per_region[name] = [WorkloadRequest(rec.index, max(rec.send_s, 0.0), max(rec.prompt_tokens, 1),
                                            rec.max_tokens) for rec in run.records]
    if not any(per_region.values()):
        raise ConfigError("no live request to predict")
    requests, region_of = merge_regions(per_region)
    # merge_regions renumbers in arrival order (ties: region order, then the live index): map back to the index
    order = sorted(((r.arrival_s, k, r.request_id) for k, reqs in enumerate(per_region.values()) for r in reqs))
    live_index = {new_id: index for new_id, (_, _, index) in enumerate(order)}
    return requests, region_of, live_index


def fault_script(topology: SiteTopology, spec: SitesRunSpec,
                 result: SitesRunResult) -> tuple[ScriptedEvent | SiteEvent, ...]:
    """The fault the live run injected, at its time: site_fail (site-lost) or capacity / 10 (link-degraded)."""
    if result.fault is None or result.fault_target is None or result.fault_s is None:
        return ()
    if SitesFault(result.fault) is SitesFault.BURST:
        return ()  # the burst is in the requests' arrivals
    if SitesFault(result.fault) is SitesFault.SITE_LOST:
        return (SiteEvent(result.fault_s, SiteEventKind.SITE_FAIL, result.fault_target),)
    link = next((lk for lk in topology.links if lk.link_id == result.fault_target), None)
    if link is None:
        raise ConfigError(f"fault target {result.fault_target!r} is not a link of the topology")
    emulated_gbps = link.capacity_gbps * spec.link_scale
    return (ScriptedEvent(result.fault_s, ScriptKind.LINK_CAPACITY, link_id=link.link_id,
                          capacity_gbps=emulated_gbps / 10.0),)


@dataclass(frozen=True, slots=True)
class SitesPrediction:
    sim: MultiSiteResult
    requests: tuple[WorkloadRequest, ...]
    region_of: Mapping[int, str]
    live_index_of: Mapping[int, int]  # simulated request id -> the live record's index in its region
    script: tuple[ScriptedEvent | SiteEvent, ...]
    regions: dict[str, dict[str, Any]]  # region -> what the report shows beside the live numbers
    overhead: RequestOverhead | None = None  # the measured request path the simulator was given (None: none)
    residual_key: Mapping[int, int] | None = None  # simulated id -> the id that picks its path residual

    def rows(self) -> list[tuple[str, float, str, float | None]]:
        """Per simulated request: (region, arrival s as sent live, where prefilled (site or "local"), TTFT s
        from that arrival, the request path included; None unless it finished OK)."""
        out = []
        keys = self.residual_key
        for r in self.sim.records:
            key = r.request_id if keys is None else keys[r.request_id]
            path_s = 0.0 if self.overhead is None else self.overhead.at(r.input_tokens, key)
            ttft = r.ttft_s + path_s if r.is_ok and r.ttft_s is not None else None
            out.append((self.region_of[r.request_id], r.arrival_s - path_s, r.prfaas_site or LOCAL, ttft))
        return out


def _shares(places: list[str]) -> dict[str, float]:
    return {p: places.count(p) / len(places) for p in sorted(set(places))} if places else {}


def predict_sites(topology: SiteTopology, spec: SitesRunSpec, result: SitesRunResult,
                  overhead: RequestOverhead | None = None,
                  before_load_s: Mapping[str, Sequence[float]] | None = None) -> SitesPrediction:
    """The simulator on the live run's requests, nodes, cost models, links, policy and fault (module docstring).
    `overhead`: the measured request path (`bench.sites_overhead`); each request then reaches the gateway's
    policy `overhead(l)` after it was sent, and its TTFT is counted from when it was sent. `before_load_s`: per
    region, when (s before the load's start, negative) its gateway admitted requests before the load (the path
    probes, `PathProbe.arrivals_before`): its offered-load meter counted them, and so does the simulated one."""
    deployment = sim_deployment(topology, spec)
    requests, region_of, live_index = live_requests(result, deployment.topology.pd_names)
    script = fault_script(topology, spec, result)
    policy = apply_policy_overrides({}, spec.threshold_tokens)
    # each request's path residual is picked by its region and live index, not by the merged id: a burst's extra
    # requests renumber the merge, and the other regions' requests must get the same residuals in both runs
    # (a well-mixed key: `RequestOverhead.at` takes it modulo the residuals' count, which a key like
    # index * regions + region would confine to one region's residue class)
    residual_key = {rid: zlib.crc32(f"{region_of[rid]}/{live_index[rid]}".encode()) for rid in live_index}
    sent = requests if overhead is None else shifted(requests, overhead, residual_key)
    sim = simulate_multisite(deployment, "prfaas", sent, region_of, selector=spec.site_selector,
                             policy_config=policy, script=script, options=SimOptions(),
                             prefill_queue="node", preempt_prefill=spec.prefill_preemption,
                             load_window_s=LOAD_WINDOW_S * spec.time_scale,  # the gateways' window (live time)
                             load_history=before_load_s, gateway_heartbeat_s=HEARTBEAT_S)
    prediction = SitesPrediction(sim, tuple(requests), region_of, live_index, script, {}, overhead, residual_key)
    rows = prediction.rows()
    for name in result.regions:
        own = [row for row in rows if row[0] == name]
        ok = [row for row in own if row[3] is not None]
        ttfts = [row[3] for row in ok if row[3] is not None]
        prediction.regions[name] = {"sent": len(own), "completed": len(ok),
                                    "ttft_mean_s": sum(ttfts) / len(ttfts) if ttfts else None,
                                    "ttft_p90_s": nearest_rank(ttfts, 0.9),
                                    "offload_share": _shares([row[2] for row in ok])}
    return prediction
