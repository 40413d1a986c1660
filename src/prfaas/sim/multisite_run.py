"""One multi-site run end to end: each region's router, the site selector, the simulator, per-region and
per-link summaries. What `prfaas simulate --config` (a `[topology]` scenario) and the tests call.

    merge_regions({"us": us_requests, "eu": eu_requests}) -> (requests, region_of)   # one id space
    simulate_multisite(deployment, policy, requests, region_of, selector="prfaas-sites", ...) -> MultiSiteResult
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from prfaas.policy.config import PolicyConfig
from prfaas.policy.rebalancer import PdRebalancer
from prfaas.policy.region_load import LOAD_WINDOW_S
from prfaas.policy.registry import make_router
from prfaas.policy.site_registry import make_site_selector
from prfaas.policy.sites import SiteSelectConfig
from prfaas.policy.types import Rebalancer
from prfaas.sim.control import RoleSwitch
from prfaas.sim.deployment import ScriptedEvent, SimOptions
from prfaas.sim.metrics import Summary, summarize
from prfaas.sim.multisite import MultiSiteSimulator
from prfaas.sim.multisite_deployment import MultiSiteDeployment, MultiSiteRecord, SiteEvent
from prfaas.sim.multisite_kv import SiteKvIndexes
from prfaas.sim.multisite_rebalance import RegionPlan
from prfaas.sim.run import prefill_time_fn
from prfaas.workload.request import WorkloadRequest


@dataclass(frozen=True, slots=True)
class LinkSummary:
    link_id: str
    bytes_sent: float
    transfers: int
    gbps_mean: float  # bytes sent / the run's span
    capacity_history: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class MultiSiteResult:
    policy: str
    selector: str | None
    records: tuple[MultiSiteRecord, ...]
    regions: Mapping[str, Summary]
    links: Mapping[str, LinkSummary]
    offloads_by_site: Mapping[str, Mapping[str, int]]  # region -> PrfaaS site -> offloaded requests
    num_events: int
    wall_s: float
    role_switches: tuple[RoleSwitch, ...] = ()  # PD-P <-> PD-D conversions (with `rebalance`)
    rebalance_plans: tuple[RegionPlan, ...] = ()  # every region's every long-term step (with `rebalance`)

    def region_records(self, region: str) -> list[MultiSiteRecord]:
        return [r for r in self.records if r.region == region]


def merge_regions(per_region: Mapping[str, Sequence[WorkloadRequest]]) -> tuple[list[WorkloadRequest], dict[int, str]]:
    """Every region's requests in arrival order (ties: the mapping's order), renumbered 0..n-1."""
    tagged = [(r.arrival_s, k, r.request_id, region, r) for k, (region, reqs) in enumerate(per_region.items())
              for r in reqs]
    tagged.sort(key=lambda t: (t[0], t[1], t[2]))
    out: list[WorkloadRequest] = []
    region_of: dict[int, str] = {}
    for new_id, (_, _, _, region, r) in enumerate(tagged):
        out.append(WorkloadRequest(new_id, r.arrival_s, r.input_tokens, r.output_tokens, r.block_hashes,
                                   r.session_id))
        region_of[new_id] = region
    return out, region_of


def simulate_multisite(deployment: MultiSiteDeployment, policy: str, requests: Sequence[WorkloadRequest],
                       region_of: Mapping[int, str], *, selector: str | None = "prfaas-sites",
                       selector_config: SiteSelectConfig | None = None, policy_config: PolicyConfig | None = None,
                       script: Sequence[ScriptedEvent | SiteEvent] = (), options: SimOptions | None = None,
                       warmup_s: float = 0.0, measure_end_s: float | None = None,
                       kv_index: SiteKvIndexes | None = None, prefill_queue: str = "cluster",
                       fair_order: bool = True, preempt_prefill: bool = True, rebalance: bool = False,
                       load_window_s: float = LOAD_WINDOW_S,
                       load_history: Mapping[str, Sequence[float]] | None = None,
                       gateway_heartbeat_s: float | None = None,
                       progress: Callable[[float], None] | None = None) -> MultiSiteResult:
    """Run `requests` (region of each in `region_of`) over the topology; every region runs router `policy`
    (`rebalance`: and its own `PdRebalancer`, every `options.control_interval_s`). `preempt_prefill`: with
    `prefill_queue="node"`, PrfaaS instances preempt as the live node does (`MultiSiteSimulator`);
    `load_window_s`: the regions' offered-load window (`policy.region_load`, in the simulation's seconds);
    `load_history`: arrivals the regions' meters saw before `requests`; `gateway_heartbeat_s`: the selector sees
    the sites as the live region gateways do (`MultiSiteSimulator`, `sim.multisite_gateway`)."""
    opts = options or SimOptions()
    cfg = policy_config or PolicyConfig()
    topo = deployment.topology
    index = kv_index if kv_index is not None else SiteKvIndexes.for_clusters(deployment.cluster_of_nodes())
    base = deployment.deployment()
    state_bytes = deployment.prfaas_prefill.s_kv_bytes
    routers = {pd: make_router(policy, cfg, kv_index=index.scoped([pd, *(lk.prfaas for lk in topo.links_to(pd))]),
                               state_bytes=state_bytes, prefill_time_s=prefill_time_fn(base))
               for pd in topo.pd_names}
    site_selector = None
    if selector is not None:
        models = {site: deployment.prefill_model(site) for site in deployment.topology.prfaas_names}

        def site_time_s(site: str, uncached: float, cached: float) -> float:
            model = models[site] if site in models else deployment.prefill_model(site)
            return model.t_prefill_s(max(uncached, 1.0), cached)

        site_selector = make_site_selector(selector, deployment.topology, site_time_s, state_bytes, selector_config)
    rebalancers: dict[str, Rebalancer] | None = None
    if rebalance:
        rebalancers = {pd: PdRebalancer(cfg.rebalancer, threshold_tokens=router.threshold_tokens)
                       for pd, router in routers.items()}
    sim = MultiSiteSimulator(deployment, routers, requests, region_of, selector=site_selector, kv_index=index,
                             script=script, options=opts, prefill_queue=prefill_queue,
                             fair_order=fair_order, preempt_prefill=preempt_prefill, rebalancers=rebalancers,
                             load_window_s=load_window_s, load_history=load_history,
                             gateway_heartbeat_s=gateway_heartbeat_s, progress=progress)
    start = time.perf_counter()
    records = [r for r in sim.run() if isinstance(r, MultiSiteRecord)]
    wall = time.perf_counter() - start
    span_s = max((r.finish_s or r.arrival_s for r in records), default=0.0)
    regions = {}
    for pd in deployment.topology.pd_names:
        own = [r for r in records if r.region == pd]
        hist = [sim.links[lk.link_id].rate_history for lk in deployment.topology.links_to(pd)]
        # the egress fields of a region's summary are its home (first) link's
        regions[pd] = summarize(own, rate_history=hist[0] if hist else [(0.0, 0.0)], utilisation={},
                                tpot_slo_s=opts.tpot_slo_s,
                                ttft_slo_s=opts.ttft_slo_s, warmup_s=warmup_s, end_s=measure_end_s)
    links = {}
    for lk in deployment.topology.links:
        link = sim.links[lk.link_id]
        links[lk.link_id] = LinkSummary(lk.link_id, link.bytes_sent_total, link.transfers_total,
                                        link.bytes_sent_total * 8 / 1e9 / span_s if span_s > 0 else 0.0,
                                        tuple(link.capacity_history))
    offloads: dict[str, dict[str, int]] = {pd: {} for pd in deployment.topology.pd_names}
    for r in records:
        if r.prfaas_site:
            offloads[r.region][r.prfaas_site] = offloads[r.region].get(r.prfaas_site, 0) + 1
    plans = tuple(sim.rebalancing.plans) if sim.rebalancing is not None else ()
    return MultiSiteResult(policy, selector, tuple(records), regions, links, offloads, sim.loop.num_events, wall,
                           tuple(sim.control.role_switches), plans)
