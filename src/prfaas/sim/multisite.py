"""The multi-site simulator: several PrfaaS clusters, several PD regions, one `SimLink` per (PrfaaS, PD) link.

It is the two-cluster `Simulator` with three things generalised (hooks `_route`, `_egress_for`,
`_open_servers`, `view`), so prefill, transfer, decode, failures and retries are the same code:

- **Routing per region.** Each PD region has its own router (the registry's, its own threshold and loops:
  the gateway of that region). For an offloadable request (prompt > the router's base threshold) the
  `policy.sites.SiteSelector` first picks the PrfaaS cluster (per-link telemetry, each cluster's queued work,
  prefix locality, per-link bandwidth loops, fair-share admission, failover before local); the router then sees
  its own region's PD nodes plus *that* cluster's nodes, with that link's snapshot as its egress link, and
  decides local vs offload exactly as in a two-cluster deployment. No site (every cluster down, refused or
  shedding): the router sees no PrfaaS node and prefills locally (`prfaas_down_local`); the record keeps the
  selector's reason (`site_reason`). Without a selector each region uses its one linked cluster (1x1 only).
- **Links.** Link `{prfaas}->{pd}` carries the state of offloads from region pd prefilled at prfaas (its own
  capacity and latency); a reverse link `{pd}->{prfaas}` per pair mirrors the two-cluster reverse link.
- **Fair order at each PrfaaS instance.** A PrfaaS node's prefill queue is a `policy.fair_queue.FairQueue`
  over regions (start-time fair queueing, cost = the node's prefill seconds, weights = the selector's), so a
  region under its share does not wait behind another's backlog. With one region it is FIFO. With
  `prefill_queue="node"` and `preempt_prefill` (the default, as the live node's `[policy] prefill_preemption`)
  a running prefill is also paused when another region's queued job's fair turn comes before it ends and that
  region is the lighter user of the instance (`sim.servers`, `FairQueue.preempts`), and its state's layer-wise
  release pauses with it.

Scripted events: the base ones (`link_capacity` on any link id, `node_fail`, `node_recover`) plus
`SiteEvent` (a whole PrfaaS or PD cluster fails: every node fails, its requests are re-dispatched, nothing is
lost; or recovers). Records are `MultiSiteRecord`s: a `RequestRecord` plus region, PrfaaS site and the
selector's reason.

Prefix caches per site (`sim.multisite_kv.SiteKvIndexes`): one `GlobalKvIndex` per PrfaaS cluster and per PD
region. The selector's prefix locality reads each PrfaaS cluster's own index, each region's router a view of
its region's index and its linked clusters' (what its gateway knows), and `decode_holds_prefix` the request's
region only. Long-term loop per region (`sim.multisite_rebalance`, `rebalancers`): each region's PD-P / PD-D
split from its own window. Known simplifications: cross-cluster cache transfers (the cache-aware router) are
supported on 1x1 topologies only.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

from prfaas.core.lifecycle import ClusterKind, RequestState, Role
from prfaas.core.link import LinkSnapshot
from prfaas.core.topology import link_id
from prfaas.policy.kv_index import cached_tokens_for
from prfaas.policy.region_load import LOAD_WINDOW_S, NEUTRAL_RATIO, RegionLoadMeter
from prfaas.policy.sites import PrfaasSiteView, SiteReason, SiteSelector, SitesView
from prfaas.policy.types import (
    PRFAAS_EGRESS_LINK_ID,
    ClusterView,
    FailureKind,
    Outcome,
    Rebalancer,
    RequestInfo,
    RoutePlan,
    Router,
)
from prfaas.sim.deployment import REVERSE_LINK_ID, ScriptedEvent, SimOptions
from prfaas.sim.events import EventPriority
from prfaas.sim.link import SimLink
from prfaas.sim.multisite_deployment import (
    BASE_RECORD_FIELDS,
    MultiSiteDeployment,
    MultiSiteRecord,
    SiteEvent,
    SiteEventKind,
    reverse_link_id,
)
from prfaas.sim.multisite_gateway import GatewaySiteViews
from prfaas.sim.multisite_kv import SiteKvIndexes
from prfaas.sim.multisite_load import SiteLoad
from prfaas.sim.multisite_queue import FairPrefillQueue, SiteQueue
from prfaas.sim.multisite_rebalance import RegionRebalancing
from prfaas.sim.node import SimNode
from prfaas.sim.request import RequestRecord, SimRequest
from prfaas.sim.simulator import Simulator
from prfaas.sim.view import (
    IndexedClusterView,
    LiveClusterView,
    RankEntry,
    _LiveLinks,
    live_view,
    release_sites_view,
    release_view,
)
from prfaas.sim.view_builder import ViewBuilder
from prfaas.workload.request import WorkloadRequest

SELECTOR_TICK_S = 0.5  # how often the per-link bandwidth loops are fed between arrivals
PREFILL_QUEUES = ("cluster", "node")  # where offloads wait at a PrfaaS cluster (`sim.multisite_queue`)


class RegionRouters:
    """What the base simulator calls `router`: observes and ticks go to each region's own router."""

    name = "regions"

    def __init__(self, sim: MultiSiteSimulator) -> None:
        self.sim = sim

    @property
    def threshold_tokens(self) -> int | None:
        first = next(iter(self.sim.routers.values()))
        return getattr(first, "threshold_tokens", None)

    @property
    def tick_interval_s(self) -> float | None:
        intervals = [r.tick_interval_s for r in self.sim.routers.values() if r.tick_interval_s is not None]
        if self.sim.selector is not None:
            intervals.append(SELECTOR_TICK_S)
        return min(intervals) if intervals else None

    def tick(self, view: ClusterView, now_s: float) -> None:
        sim = self.sim
        for region, router in sim.routers.items():
            if router.tick_interval_s is not None:
                router.tick(sim.region_view(region, sim.home_site(region)), now_s)
        if sim.selector is not None and sim.models_gateway_views:
            for region in sim.topology.pd_names:  # each region gateway ticks its links' loops with its own view
                sim.selector.tick(sim.sites_view(region=region), now_s, region)
        elif sim.selector is not None:
            sim.selector.tick(sim.sites_view(), now_s)

    def route(self, req: RequestInfo, view: ClusterView, now_s: float) -> RoutePlan:
        raise NotImplementedError("the multi-site simulator routes per region (MultiSiteSimulator._route)")

    def observe(self, outcome: Outcome, now_s: float) -> None:
        self.sim.routers[self.sim.region_of[outcome.request_id]].observe(outcome, now_s)

    def set_threshold(self, threshold_tokens: int) -> None:
        for router in self.sim.routers.values():
            router.set_threshold(threshold_tokens)


class MultiSiteSimulator(Simulator):
    """One multi-site run. `routers`: one per PD region; `region_of`: request id -> region (every request);
    `selector`: None only when every region has at most one link (then that link's cluster is used);
    `prefill_queue`: "cluster" or "node" (`sim.multisite_queue`); `fair_order=False`: the cluster queues are
    FIFO (an ablation); `preempt_prefill`: with "node", a PrfaaS instance pauses its running prefill for another
    region's whose fair turn comes first (`sim.servers`; no effect with "cluster" or with one region), judging the
    regions' offered load over `load_window_s` as their gateways do (`policy.region_load`); `load_history`: per
    region, arrivals its gateway's meter saw before these requests (times in the simulation's seconds, before the
    first request: a live run's probes), observed first. `gateway_heartbeat_s`: the site selector sees the sites
    as a live region gateway does (`sim.multisite_gateway`: the nodes' prefill tokens as of their last heartbeat,
    this often, and the region's own in flight; for predictions of live runs); None: the exact view."""

    def __init__(self, deployment: MultiSiteDeployment, routers: Mapping[str, Router],
                 requests: Iterable[WorkloadRequest], region_of: Mapping[int, str], *,
                 selector: SiteSelector | None = None, kv_index: SiteKvIndexes | None = None,
                 script: Iterable[ScriptedEvent | SiteEvent] = (), options: SimOptions | None = None,
                 prefill_queue: str = "cluster", fair_order: bool = True, preempt_prefill: bool = True,
                 rebalancers: Mapping[str, Rebalancer] | None = None, load_window_s: float = LOAD_WINDOW_S,
                 load_history: Mapping[str, Sequence[float]] | None = None,
                 gateway_heartbeat_s: float | None = None,
                 progress: Callable[[float], None] | None = None) -> None:
        topo = deployment.topology
        if prefill_queue not in PREFILL_QUEUES:
            raise ValueError(f"prefill_queue must be one of {', '.join(PREFILL_QUEUES)}, got {prefill_queue!r}")
        if set(routers) != set(topo.pd_names):
            raise ValueError(f"one router per PD region: got {sorted(routers)}, regions {list(topo.pd_names)}")
        if selector is None and any(len(topo.links_to(pd)) > 1 for pd in topo.pd_names):
            raise ValueError("a region with several links needs a SiteSelector")
        self.site_deployment = deployment
        self.preempt_prefill = preempt_prefill
        self.topology = topo
        self.routers = dict(routers)
        self.region_of = region_of
        self.selector = selector
        self.cluster_of_node = deployment.cluster_of_nodes()
        self.site_kv = kv_index if kv_index is not None else SiteKvIndexes.for_clusters(self.cluster_of_node)
        weights = selector.weights if selector is not None else None
        self.site_queues: dict[str, SiteQueue] = {}
        if prefill_queue == "cluster":
            self.site_queues = {s.name: SiteQueue(self._region_of_req, self._site_cost_s(s.name), weights,
                                                  fair_order=fair_order)
                                for s in topo.prfaas}
        self.site_of_request: dict[int, str] = {}
        self.site_reason_of_request: dict[int, SiteReason] = {}
        # each region gateway's offered-load meter (policy.region_load), only where an instance may preempt: it
        # counts the region's arrivals at their routing, and an offload queued at an instance carries its ratio
        # then (the instant it was routed), as the live gateway stamps PrefillRequest.region_load
        metered = preempt_prefill and prefill_queue == "node"
        self._region_loads = {pd: RegionLoadMeter(w, load_window_s)
                              for pd, w in zip(topo.pd_names, topo.traffic_weights(), strict=True)
                              if metered and w > 0}
        for region, times_s in (load_history or {}).items():
            if region not in topo.pd_names:
                raise ValueError(f"load_history names {region!r}, not a PD region ({', '.join(topo.pd_names)})")
            meter = self._region_loads.get(region)
            if meter is not None:
                for t_s in sorted(times_s):
                    meter.observe(t_s)
        self._link_of_request: dict[int, SimLink] = {}
        script = list(script)
        super().__init__(deployment.deployment(), RegionRouters(self), requests, kv_index=self.site_kv,
                         script=[e for e in script if isinstance(e, ScriptedEvent)], options=options,
                         progress=progress)
        self.links = {}
        for lk in topo.links:
            for lid in (lk.link_id, reverse_link_id(lk.prfaas, lk.pd)):
                self.links[lid] = SimLink(self.loop, lid, lk.capacity_gbps, lk.latency_s, deployment.window_s,
                                          deployment.buffer_s)
        self._no_link = SimLink(self.loop, "none", 0.0)
        members: dict[str, list[SimNode]] = {}
        for node in self.nodes.values():
            members.setdefault(self.cluster_of_node[node.instance_id], []).append(node)
        self.cluster_nodes = members
        self._builders = {name: ViewBuilder(nodes) for name, nodes in members.items()}
        self._prfaas_names = topo.prfaas_names
        self._site_links = {lk.link_id: self.links[lk.link_id] for lk in topo.links}
        self._live_parts: dict[tuple[str, str | None], tuple[list[str], list[ViewBuilder],
                                                             dict[ClusterKind, ViewBuilder],
                                                             dict[str, SimLink]] | None] = {}
        self._site_loads = {name: SiteLoad(members[name], region_of.__getitem__, topo.pd_names)
                            for name in self._prfaas_names if name in members}
        self._homes = {pd: (links[0].prfaas if (links := topo.links_to(pd)) else None) for pd in topo.pd_names}
        self._gateway_views: GatewaySiteViews | None = None
        if gateway_heartbeat_s is not None:
            if selector is None:
                raise ValueError("gateway_heartbeat_s needs a SiteSelector (it is the selector's view)")
            self._gateway_views = GatewaySiteViews(gateway_heartbeat_s, self.cluster_of_node, selector.prefill_time_s)
        self.rebalancing: RegionRebalancing | None = None
        if rebalancers:
            if self.options.control_interval_s is None:
                raise ValueError("per-region rebalancers need SimOptions.control_interval_s")
            self.rebalancing = RegionRebalancing(self, rebalancers, self.options.control_interval_s)
        for event in sorted((e for e in script if isinstance(e, SiteEvent)), key=lambda e: e.time_s):
            if event.site not in members:
                raise ValueError(f"site event for unknown cluster {event.site!r}")
            self.loop.schedule(event.time_s, EventPriority.SCRIPTED, self._on_site_event, event)

    # --- results ---------------------------------------------------------------------------------
    def run(self) -> list[RequestRecord]:
        if self.rebalancing is not None:
            self.rebalancing.start()
        records = super().run()
        out: list[RequestRecord] = []
        base_fields = operator.attrgetter(*BASE_RECORD_FIELDS)  # the base record's fields, in order, at C speed
        for rec in records:
            rid = rec.request_id
            reason = self.site_reason_of_request.get(rid)
            out.append(MultiSiteRecord(*base_fields(rec), region=self.region_of[rid],  # type: ignore[misc]
                                       prfaas_site=self.site_of_request.get(rid, "") if rec.is_offloaded else "",
                                       site_reason=reason.value if reason is not None else ""))
        self.records = out
        return out

    @property
    def egress(self) -> SimLink:
        """The first topology link (what the samples' `egress_gbps` shows; an idle stand-in without links)."""
        if not self.topology.links:
            return self._no_link
        return self.links[self.topology.links[0].link_id]

    # --- views -----------------------------------------------------------------------------------
    @property
    def models_gateway_views(self) -> bool:
        """Whether the site selector sees the sites as the live region gateways do (`gateway_heartbeat_s`)."""
        return self._gateway_views is not None

    def home_site(self, region: str) -> str | None:
        return self._homes[region]

    def _merged(self, clusters: Sequence[str], links: Mapping[str, LinkSnapshot]) -> IndexedClusterView:
        now = self.loop.now_s
        snaps = [self._builders[c].snapshot(links, now) for c in clusters if c in self._builders]
        instances: list = []
        groups: dict = {}
        ranks: dict[tuple[ClusterKind, Role], tuple[RankEntry, ...]] = {}
        for snap in snaps:
            instances.extend(snap.instances)
            for key, members in snap.groups.items():
                groups[key] = groups.get(key, ()) + members
            for key, entries in snap.ranks.items():
                ranks[key] = tuple(sorted(ranks[key] + entries)) if key in ranks else entries
        return IndexedClusterView(instances=tuple(instances), links=links, time_s=now,
                                  groups=MappingProxyType(groups), ranks=MappingProxyType(ranks))

    def clusters_view(self, clusters: Sequence[str]) -> IndexedClusterView:
        """The nodes of `clusters`, no link (what a region's rebalancer sees)."""
        return self._merged(clusters, {})

    def region_view(self, region: str, site: str | None) -> IndexedClusterView:
        """What region's router sees: its PD nodes, plus PrfaaS cluster `site`'s nodes and link (if any)."""
        if site is None:
            return self._merged([region], {})
        links = {PRFAAS_EGRESS_LINK_ID: self.links[link_id(site, region)].snapshot(),
                 REVERSE_LINK_ID: self.links[reverse_link_id(site, region)].snapshot()}
        return self._merged([site, region], links)

    def _live_region_view(self, region: str, site: str | None, now_s: float) -> ClusterView:
        """`region_view` for one routing decision: on demand (`sim.view.live_view`); release it after. Where the
        gateways' view is modelled, the site's PrfaaS nodes as the region's gateway sees them."""
        views = self._gateway_views
        if views is not None and site is not None:
            merged = self.region_view(region, site)
            instances = tuple(views.instance_view(now_s, region, inst) if inst.cluster is ClusterKind.PRFAAS
                              else inst for inst in merged.instances)
            return ClusterView(instances=instances, links=merged.links, time_s=merged.time_s)
        key = (region, site)
        parts = self._live_parts.get(key)
        if parts is None:
            clusters = [region] if site is None else [site, region]
            builders = [self._builders[c] for c in clusters if c in self._builders]
            kinds = [{node.cluster for node in self.cluster_nodes[c]} for c in clusters if c in self._builders]
            owner = {kind: b for b, ks in zip(builders, kinds, strict=True) for kind in ks}
            links: dict[str, SimLink] = {}
            if site is not None:
                links = {PRFAAS_EGRESS_LINK_ID: self.links[link_id(site, region)],
                         REVERSE_LINK_ID: self.links[reverse_link_id(site, region)]}
            disjoint = len(owner) == sum(len(ks) for ks in kinds)
            parts = (clusters, builders, owner, links) if disjoint else None
            self._live_parts[key] = parts
        if parts is None:  # a cluster kind in two clusters: the merged snapshot
            return self.region_view(region, site)
        clusters, builders, owner, links = parts
        return live_view(builders, owner, links, now_s, lambda sealed, _time_s: self._merged(clusters, sealed))

    def view(self) -> ClusterView:
        """Every node and link (the control loop's view)."""
        links = {lid: link.snapshot() for lid, link in self.links.items()}
        return self._merged([*self.topology.prfaas_names, *self.topology.pd_names], links)

    def sites_view(self, *, live_links: bool = False, region: str | None = None) -> SitesView:
        """Each PrfaaS cluster's up instances and queued prefill seconds (per region), and every link.

        `live_links`: link snapshots taken on first use (for one decision; pass the view to
        `sim.view.release_sites_view` right after). `region`: the view of that region's gateway where the simulator
        models the gateways' view (`gateway_heartbeat_s`; otherwise every region sees the exact view)."""
        now = self.loop.now_s
        sites: dict[str, PrfaasSiteView] = {}
        for name in self._prfaas_names:
            if self._gateway_views is not None and region is not None:
                sites[name] = self._gateway_site(name, region, now)
                continue
            by_region: dict[str, float] = {}
            load = self._site_loads.get(name)
            if load is None:
                up, queued, work = 0, 0, 0.0
            else:
                load.refresh()
                work = load.work_s(now, by_region)
                up, queued = load.up, load.queued
            site_queue = self.site_queues.get(name)
            if site_queue is not None:
                queued += len(site_queue)
                for region, seconds in site_queue.queued_s_by_region().items():
                    by_region[region] = by_region.get(region, 0.0) + seconds
                    work += seconds
            sites[name] = PrfaasSiteView(name, up, work, by_region, queued)
        if live_links:
            return SitesView(sites, _LiveLinks(self._site_links))
        return SitesView(sites, {lk.link_id: self.links[lk.link_id].snapshot() for lk in self.topology.links})

    def _gateway_site(self, name: str, region: str, now_s: float) -> PrfaasSiteView:
        """Cluster `name` as region `region`'s live gateway sees it (`sim.multisite_gateway`)."""
        assert self._gateway_views is not None
        up = [n.instance_id for n in self.cluster_nodes.get(name, ()) if n.is_up and n.prefill is not None]
        work, own, queued = self._gateway_views.site_parts(now_s, region, name, up)
        return PrfaasSiteView(name, len(up), work, {region: own}, queued)

    def _cached_by_site(self, req: SimRequest) -> dict[str, int]:
        hashes = req.wl.block_hashes
        if not hashes:
            return {}
        out: dict[str, int] = {}
        for name in self.topology.prfaas_names:  # a lost node's blocks left the index with it
            best = self.site_kv.cluster_prefix_blocks(name, hashes)
            if best:
                out[name] = cached_tokens_for(best, req.wl.input_tokens)
        return out

    def _pd_prefix_blocks(self, req: SimRequest, hashes: Sequence[int]) -> int:
        return self.site_kv.cluster_prefix_blocks(self.region_of[req.request_id], hashes)

    # --- routing (hooks of the base simulator) ---------------------------------------------------
    def _choose_site(self, req: SimRequest, region: str, base_threshold: int,
                     now_s: float) -> tuple[str | None, SiteReason | None]:
        if self.selector is None:
            return self._homes[region], None
        if base_threshold > 0 and req.wl.input_tokens <= base_threshold:
            return None, None  # the router keeps it local whatever the sites look like
        view = self.sites_view(live_links=True, region=region)
        try:
            choice = self.selector.choose(region, req.wl.input_tokens, self._cached_by_site(req), view, now_s,
                                          base_threshold)
        finally:
            release_sites_view(view)
        return choice.site, choice.reason

    def _route(self, req: SimRequest, now_s: float) -> RoutePlan:
        rid = req.request_id
        region = self.region_of[rid]
        meter = self._region_loads.get(region)
        if meter is not None and req.attempt == 0:
            meter.observe(now_s)
        router = self.routers[region]
        base = getattr(router, "threshold_tokens", None) or 0
        site, reason = self._choose_site(req, region, base, now_s)
        view = self._live_region_view(region, site, now_s)
        try:
            plan = router.route(req.info, view, now_s)
        finally:
            if isinstance(view, LiveClusterView):
                release_view(view)  # sealed if the router kept it
        if reason is not None:
            self.site_reason_of_request[rid] = reason
        else:
            self.site_reason_of_request.pop(rid, None)
        if self.rebalancing is not None:
            self.rebalancing.on_routed(region, req, plan)
        views = self._gateway_views
        if views is not None:
            if plan.prefill_cluster is ClusterKind.PRFAAS:
                views.sent(now_s, rid, region, plan.prefill_instance_id, plan.uncached_tokens)
            else:
                views.answered(now_s, rid)  # an earlier attempt's, if any
        if plan.prefill_cluster is ClusterKind.PRFAAS:
            assert site is not None
            self.site_of_request[rid] = site
            self._link_of_request[rid] = self.links[link_id(site, region)]
            ct = plan.cache_transfer
            if ct is not None and ct.source_cluster is not ct.dest_cluster and not self.topology.is_two_cluster:
                raise NotImplementedError("cross-cluster cache transfers need a 1x1 topology")
        else:
            self.site_of_request.pop(rid, None)
            self._link_of_request.pop(rid, None)
        return plan

    def _on_state_delivered(self, req: SimRequest) -> None:
        if self._gateway_views is not None:
            self._gateway_views.answered(self.loop.now_s, req.request_id)  # the prefill's reply (its state sent)
        super()._on_state_delivered(req)

    def _egress_for(self, req: SimRequest) -> SimLink:
        return self._link_of_request[req.request_id]

    def _region_of_req(self, req: SimRequest) -> str:
        return self.region_of[req.request_id]

    def _load_of_req(self, req: SimRequest) -> float:
        """The offered-load ratio of `req`'s region now (queued at an instance in the event that routed it)."""
        meter = self._region_loads.get(self.region_of[req.request_id])
        return NEUTRAL_RATIO if meter is None else meter.ratio(self.loop.now_s)

    def _site_cost_s(self, site: str) -> Callable[[SimRequest], float]:
        cost = self.site_deployment.prefill_model(site)
        return lambda r: cost.t_prefill_s(max(r.uncached_tokens, 1), r.cached_tokens)

    def _open_servers(self, node: SimNode) -> None:
        super()._open_servers(node)
        if node.prefill is not None and node.cluster is ClusterKind.PRFAAS and not self.site_queues:
            weights = self.selector.weights if self.selector is not None else None
            queue = FairPrefillQueue(self._region_of_req, self._site_cost_s(self.cluster_of_node[node.instance_id]),
                                     weights, preempt=self.preempt_prefill,
                                     load_of=self._load_of_req if self._region_loads else None)
            node.prefill.set_queue(queue, queue if self.preempt_prefill else None)

    # --- the cluster-level queue (prefill_queue = "cluster") -------------------------------------
    def _enqueue_prefill(self, req: SimRequest) -> None:
        site_queue = self.site_queues.get(self.cluster_of_node[req.prefill_id]) if self.site_queues else None
        if site_queue is None:
            super()._enqueue_prefill(req)
            return
        if not any(n.is_up for n in self.cluster_nodes[self.cluster_of_node[req.prefill_id]]):
            self._retry(req, FailureKind.PREFILL_NODE_LOST)
            return
        req.state = RequestState.QUEUED
        req.prefill_enqueue_s = self.loop.now_s
        site_queue.push(req)
        self._start_queued(self.cluster_of_node[req.prefill_id])

    def _start_queued(self, site: str) -> None:
        """Start queued offloads of `site` on its free instances (instance order)."""
        site_queue = self.site_queues[site]
        if not site_queue:
            return
        load = self._site_loads.get(site)
        if load is None:
            return
        load.refresh()
        for node in load.free_nodes():  # free now; starting one frees no other
            if not site_queue:
                return
            srv = node.prefill
            if node.is_up and srv is not None and srv.current is None and not srv.queue:
                req = site_queue.pop()
                enqueued_s = req.prefill_enqueue_s
                req.prefill_id = node.instance_id
                srv.enqueue(req)  # starts now
                req.prefill_enqueue_s = enqueued_s  # the wait in the cluster's queue counts
                node.touch()

    def _on_prefill_done(self, req: SimRequest) -> None:
        super()._on_prefill_done(req)
        site = self.cluster_of_node[req.prefill_id]
        if site in self.site_queues:
            self._start_queued(site)

    def fail_node(self, instance_id: str) -> None:
        super().fail_node(instance_id)
        site = self.cluster_of_node[instance_id]
        site_queue = self.site_queues.get(site)
        if site_queue and not any(n.is_up for n in self.cluster_nodes[site]):
            for req in site_queue.drain():  # nothing left to run them: re-dispatch
                self._retry(req, FailureKind.PREFILL_NODE_LOST)

    def recover_node(self, instance_id: str) -> None:
        super().recover_node(instance_id)
        site = self.cluster_of_node[instance_id]
        if site in self.site_queues:
            self._start_queued(site)

    # --- site events -----------------------------------------------------------------------------
    def _on_site_event(self, event: SiteEvent) -> None:
        for node in list(self.cluster_nodes[event.site]):
            if event.kind is SiteEventKind.SITE_FAIL:
                self.fail_node(node.instance_id)
            else:
                self.recover_node(node.instance_id)
