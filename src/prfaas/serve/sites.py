"""Many sites in the live system: a `[topology]` in the serve config, one gateway per PD region.

    [topology] ...                                    # core.topology's format: PrfaaS clusters, PD regions, links
    [[gateways]]  region = "us"; host = ...; port = ... # one per PD region (or none: [gateway] region = "us")
    [[nodes]]     name = "prefill-us-0"; cluster = "prfaas"; role = "prfaas_prefill"; site = "prefill-us"

    region_config(cfg, "us")      # what region us's gateway runs: its PD nodes + the PrfaaS nodes linked to us
    node_gateways(cfg, "pd-0")    # where a node registers and heartbeats: its region's gateway; a PrfaaS node
                                  # every gateway of a region its cluster links to (each keeps its own cache report)
    routing = make_site_routing(cfg, control)   # None without [topology]: today's behaviour, untouched
    view = routing.narrow(info, view, threshold, now_s)   # the router only sees the chosen PrfaaS site's nodes

A region's gateway routes with its router (whether to offload: the threshold) and a `policy.sites` selector
(where): per request it builds a `SitesView` from the nodes' heartbeats (per-site up instances and queued prefill
work, this region's own in-flight work at each site for the fair share, per-link telemetry: the PrfaaS nodes'
sender snapshots toward this region's PD nodes) and the KV index (the prompt's prefix cached per site), asks the
selector for a site, and hands the router a view whose PrfaaS nodes are that site's only (none: local prefill).
A site whose prefill node is lost (connection refused) is taken out at once (all its nodes marked down until
they heartbeat again) and the attempt is retried on the other sites before local prefill (`on_prefill_lost`).
PrfaaS nodes stream to the decode node the asking gateway names, so they serve every region they link to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING

import msgspec

from prfaas.catalog.tomlfile import TomlDoc
from prfaas.core.errors import ConfigError
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.core.link import LinkSnapshot
from prfaas.core.topology import TopologyError, check_topology, link_id
from prfaas.policy.kv_index import cached_tokens_for
from prfaas.policy.site_registry import list_site_selectors, make_site_selector
from prfaas.policy.sites import PrfaasSiteView, SiteChoice, SiteSelectConfig, SitesView
from prfaas.policy.types import PRFAAS_EGRESS_LINK_ID, ClusterView, RequestInfo
from prfaas.serve.cluster import NodeRecord, NodeRegistry, merge_links

if TYPE_CHECKING:
    from prfaas.serve.config import DeployConfig
    from prfaas.serve.control import ControlPlane

_log = logging.getLogger(__name__)
TICK_INTERVAL_S = 0.5  # the per-link bandwidth loops' update period (a heartbeat)
MAX_REMEMBERED = 10_000  # site reasons kept for requests still routing
FALLBACK_S_PER_TOKEN = 1e-4  # prefill-time estimate without a profile (our engine, no [policy] profile)


def _err(doc: TomlDoc | None, key: str, message: str) -> ConfigError:
    return doc.error(key, message) if doc is not None else ConfigError(f"{key}: {message}")


# --- the config ----------------------------------------------------------------------------------
def validate_sites(cfg: DeployConfig, doc: TomlDoc | None) -> None:
    """Cross-field checks of `[topology]`, `[[gateways]]`, `gateway.region` and each node's `site`."""
    topo = cfg.topology
    if topo is None:
        for i, node in enumerate(cfg.nodes):
            if node.site is not None:
                raise _err(doc, f"nodes[{i}].site", "site needs a [topology] section")
        if cfg.gateways:
            raise _err(doc, "gateways", "[[gateways]] (one per PD region) needs a [topology] section")
        if cfg.gateway.region is not None:
            raise _err(doc, "gateway.region", "region needs a [topology] section")
        return
    try:
        check_topology(topo)
    except TopologyError as exc:
        raise _err(doc, exc.key, exc.reason) from None
    if cfg.policy.site_selector not in list_site_selectors():
        raise _err(doc, "policy.site_selector", f"unknown site selector {cfg.policy.site_selector!r}; known: "
                                                f"{', '.join(list_site_selectors())}")
    regions = set(topo.pd_names)
    if cfg.gateways:
        if cfg.gateway.region is not None:
            raise _err(doc, "gateway.region", "give the regions in [[gateways]] or one gateway.region, not both")
        seen: set[str] = set()
        for i, gw in enumerate(cfg.gateways):
            if gw.region not in regions:
                raise _err(doc, f"gateways[{i}].region", f"unknown PD region {gw.region!r}; known: "
                                                         f"{', '.join(topo.pd_names)}")
            if gw.region in seen:
                raise _err(doc, f"gateways[{i}].region", f"a second gateway for region {gw.region!r}")
            seen.add(gw.region)
    elif cfg.gateway.region is None:
        raise _err(doc, "gateway.region", "with [topology], name the PD region this gateway serves (or give "
                                          "[[gateways]], one per region)")
    elif cfg.gateway.region not in regions:
        raise _err(doc, "gateway.region", f"unknown PD region {cfg.gateway.region!r}; known: "
                                          f"{', '.join(topo.pd_names)}")
    served = set(served_regions(cfg))
    for i, node in enumerate(cfg.nodes):
        key = f"nodes[{i}].site"
        if node.site is None:
            raise _err(doc, key, "with [topology] every node names its site (its PrfaaS cluster or PD region)")
        if node.cluster is ClusterKind.PRFAAS and node.site not in topo.prfaas_names:
            raise _err(doc, key, f"a prfaas node's site is a PrfaaS cluster; {node.site!r} is not one of "
                                 f"{', '.join(topo.prfaas_names) or '(none)'}")
        if node.cluster is ClusterKind.PD and node.site not in served:
            raise _err(doc, key, f"a pd node's site is a PD region with a gateway; {node.site!r} is not one of "
                                 f"{', '.join(sorted(served))}")
    for region in served:
        if not any(n.site == region and n.role is Role.PD_DECODE for n in cfg.nodes):
            raise _err(doc, "nodes", f"region {region!r} has no pd_decode node")


def served_regions(cfg: DeployConfig) -> list[str]:
    """The PD regions with a gateway (empty without [topology])."""
    if cfg.topology is None:
        return []
    if cfg.gateways:
        return [g.region for g in cfg.gateways]
    return [cfg.gateway.region] if cfg.gateway.region is not None else []


def gateway_address(cfg: DeployConfig, region: str) -> tuple[str, int]:
    for gw in cfg.gateways:
        if gw.region == region:
            return gw.host, gw.port
    if cfg.gateway.region == region:
        return cfg.gateway.host, cfg.gateway.port
    raise ConfigError(f"no gateway for region {region!r}; served: {', '.join(served_regions(cfg))}")


def node_gateways(cfg: DeployConfig, name: str) -> list[tuple[str, int]]:
    """Where node `name` registers and heartbeats (the gateway; with [topology] every gateway that routes to it)."""
    node = cfg.node(name)
    if cfg.topology is None:
        return [(cfg.gateway.host, cfg.gateway.port)]
    if node.cluster is ClusterKind.PD:
        return [gateway_address(cfg, node.site or "")]
    linked = {lk.pd for lk in cfg.topology.links if lk.prfaas == node.site}
    return [gateway_address(cfg, region) for region in served_regions(cfg) if region in linked]


def region_config(cfg: DeployConfig, region: str) -> DeployConfig:
    """The config region `region`'s gateway runs: its address, its PD nodes and the PrfaaS nodes linked to it,
    its own request log (`<log>-<region>.jsonl`)."""
    topo = cfg.topology
    if topo is None:
        raise ConfigError("region_config needs a [topology] section")
    host, port = gateway_address(cfg, region)
    linked = {lk.prfaas for lk in topo.links_to(region)}
    nodes = [n for n in cfg.nodes if (n.cluster is ClusterKind.PD and n.site == region)
             or (n.cluster is ClusterKind.PRFAAS and n.site in linked)]
    log = cfg.gateway.request_log
    if log is not None and cfg.gateways:
        stem, dot, ext = log.rpartition(".")
        log = f"{stem}-{region}.{ext}" if dot else f"{log}-{region}"
    gateway = msgspec.structs.replace(cfg.gateway, region=region, host=host, port=port, request_log=log)
    return msgspec.structs.replace(cfg, gateway=gateway, nodes=nodes, gateways=[])


# --- the gateway's side --------------------------------------------------------------------------
def _site_prefill_time(cfg: DeployConfig, control: ControlPlane) -> Callable[[str, float, float], float]:
    from prfaas.serve.config import EngineKind

    if cfg.model.engine is EngineKind.EMULATED:
        from prfaas.serve.emulated_backend import emulated_models

        model = emulated_models(cfg.model.emulated)[ClusterKind.PRFAAS]
        return lambda _site, uncached, cached: model.t_prefill_s(max(uncached, 1.0), cached)
    live = control.prefill_time_s
    if live is not None:
        return lambda _site, uncached, cached: live(ClusterKind.PRFAAS, uncached, cached)
    return lambda _site, uncached, _cached: FALLBACK_S_PER_TOKEN * uncached


class SiteRouting:
    """One region gateway's site choice (module docstring)."""

    def __init__(self, cfg: DeployConfig, control: ControlPlane) -> None:
        assert cfg.topology is not None and cfg.gateway.region is not None
        self.region = cfg.gateway.region
        self.topology = cfg.topology
        self.control = control
        self.site_of = {n.name: n.site or "" for n in cfg.nodes}
        self.sites = tuple(lk.prfaas for lk in self.topology.links_to(self.region))
        self.prefill_time_s = _site_prefill_time(cfg, control)
        from prfaas.serve.config import policy_config  # config imports this module

        # the per-link loops run the gateway's `[policy.bandwidth]` settings (as its two-cluster loop does)
        self.selector = make_site_selector(cfg.policy.site_selector, self.topology, self.prefill_time_s,
                                           self._state_bytes,
                                           SiteSelectConfig(bandwidth=policy_config(cfg).bandwidth))
        self.last_choice: SiteChoice | None = None
        self._reasons: dict[int, str] = {}  # request id -> the last choice's reason (read once, bounded)
        self.capacity_gbps: dict[str, float] = {}  # link id -> capacity told by the operator (`set_link_capacity`)
        self.offloads_by_site: dict[str, int] = dict.fromkeys(self.sites, 0)

    def _state_bytes(self, tokens: float) -> float:
        curve = self.control.state_bytes
        return float(curve(tokens)) if curve is not None else 0.0

    @property
    def registry(self) -> NodeRegistry:
        return self.control.nodes

    def _site_records(self, site: str) -> list[NodeRecord]:
        return [r for r in self.registry.nodes.values()
                if r.cluster is ClusterKind.PRFAAS and self.site_of.get(r.name) == site]

    def _work_s(self, site: str, tokens: float) -> float:
        return self.prefill_time_s(site, tokens, 0.0) if tokens > 0 else 0.0

    def link_snapshot(self, site: str, now_s: float) -> LinkSnapshot | None:
        """Link site->region: the site's senders' telemetry toward this region's PD nodes, merged."""
        peers = {f"{r.info.kv_host}:{r.info.kv_port}" for r in self.registry.nodes.values()
                 if r.cluster is ClusterKind.PD}
        snaps = [s for r in self._site_records(site) if r.is_up and r.heartbeat is not None
                 for s in r.heartbeat.links if s.link_id in peers]
        lid = link_id(site, self.region)
        snap = merge_links(lid, now_s, snaps)
        told = self.capacity_gbps.get(lid)
        if told is None:
            return snap
        if snap is None:
            return LinkSnapshot(link_id=lid, time_s=now_s, capacity_gbps=told, goodput_gbps=0.0, window_s=0.0,
                                bytes_total=0, transfers_total=0, transfers_failed=0, transfers_in_flight=0,
                                bytes_in_flight=0, is_up=told > 0)
        return dataclasses.replace(snap, capacity_gbps=told, is_up=snap.is_up and told > 0)

    def sites_view(self, now_s: float) -> SitesView:
        sites: dict[str, PrfaasSiteView] = {}
        links: dict[str, LinkSnapshot] = {}
        for site in self.sites:
            up = [r for r in self._site_records(site) if r.is_up and r.role is Role.PRFAAS_PREFILL
                  and r.pending_role is None]
            total_s = sum(self._work_s(site, max(r.heartbeat.queued_tokens if r.heartbeat else 0,
                                                 r.gateway_prefill_tokens)) for r in up)
            own_s = sum(self._work_s(site, r.gateway_prefill_tokens) for r in up)
            # the heartbeat counts every region's requests at the node, `gateway_prefills` this gateway's in flight
            # (some not arrived yet): the larger is the best lower bound, their sum counts ours twice
            queued = sum(max(r.heartbeat.queued_requests if r.heartbeat else 0, r.gateway_prefills) for r in up)
            sites[site] = PrfaasSiteView(site, len(up), total_s, {self.region: own_s}, queued)
            snap = self.link_snapshot(site, now_s)
            if snap is not None:
                links[snap.link_id] = snap
        return SitesView(sites=MappingProxyType(sites), links=MappingProxyType(links))

    def cached_tokens_by_site(self, info: RequestInfo) -> dict[str, int]:
        index = self.control.kv_index
        if not info.block_hashes:
            return {}
        out: dict[str, int] = {}
        for site in self.sites:
            blocks = max((index.node_prefix_blocks(r.name, info.block_hashes) for r in self._site_records(site)
                          if r.is_up and index.has_node(r.name)), default=0)
            if blocks:
                out[site] = cached_tokens_for(blocks, info.input_tokens, index.block_tokens)
        return out

    def choose(self, info: RequestInfo, threshold_tokens: int | None, now_s: float) -> SiteChoice:
        choice = self.selector.choose(self.region, info.input_tokens, self.cached_tokens_by_site(info),
                                      self.sites_view(now_s), now_s, threshold_tokens or 0)
        self.last_choice = choice
        self._reasons[info.request_id] = choice.reason.value
        if len(self._reasons) > MAX_REMEMBERED:
            del self._reasons[next(iter(self._reasons))]
        return choice

    def reason_of(self, request_id: int) -> str | None:
        """The site reason of the request's last routing (forgotten once read)."""
        return self._reasons.pop(request_id, None)

    def set_link_capacity(self, link: str, capacity_gbps: float) -> None:
        """The operator's (or the emulation's) word on link `link`'s capacity now: it replaces what the senders
        report, so a degraded link raises its transfer estimate at once (`POST /admin/sites/links`)."""
        if link not in {lk.link_id for lk in self.topology.links_to(self.region)}:
            raise ConfigError(f"no link {link!r} into region {self.region!r}")
        if not capacity_gbps >= 0:
            raise ConfigError(f"capacity_gbps must be >= 0, got {capacity_gbps}")
        self.capacity_gbps[link] = capacity_gbps

    def narrow(self, info: RequestInfo, view: ClusterView, threshold_tokens: int | None,
               now_s: float) -> ClusterView:
        """`view` with only the chosen site's PrfaaS nodes (none: local prefill) and that link as the egress."""
        if info.forced_cluster is ClusterKind.PD:
            return view
        if threshold_tokens is not None and info.input_tokens <= threshold_tokens and info.forced_cluster is None:
            return view  # short: the router keeps it local whatever the sites (no choice, no loop demand)
        site = self.choose(info, threshold_tokens, now_s).site
        if site is None and info.forced_cluster is ClusterKind.PRFAAS:
            return view  # forced to PrfaaS (x-prfaas-route): any up site rather than none
        instances = tuple(i for i in view.instances
                          if i.cluster is not ClusterKind.PRFAAS or self.site_of.get(i.instance_id) == site)
        links = {k: v for k, v in view.links.items() if k != PRFAAS_EGRESS_LINK_ID}
        snap = self.link_snapshot(site, now_s) if site is not None else None
        if snap is not None:
            links[PRFAAS_EGRESS_LINK_ID] = dataclasses.replace(snap, link_id=PRFAAS_EGRESS_LINK_ID)
        return ClusterView(instances=instances, links=MappingProxyType(links), time_s=view.time_s)

    def note_offloaded(self, prefill_node: str) -> None:
        site = self.site_of.get(prefill_node)
        if site in self.offloads_by_site:
            self.offloads_by_site[site] += 1

    def on_prefill_lost(self, prefill_node: str) -> bool:
        """A PrfaaS prefill node could not be reached: take its whole site out (its live nodes come back with
        their next heartbeat). True when another linked site is still up (retry there before local prefill)."""
        site = self.site_of.get(prefill_node)
        record = self.registry.get(prefill_node)
        if site is None or record is None or record.cluster is not ClusterKind.PRFAAS:
            return False
        for r in self._site_records(site):
            self.registry.mark_down(r.name)
        _log.warning("PrfaaS site %s unreachable (node %s): out of routing until its nodes heartbeat", site,
                     prefill_node)
        return any(r.is_up for other in self.sites if other != site for r in self._site_records(other))

    def tick(self, now_s: float) -> None:
        self.selector.tick(self.sites_view(now_s), now_s, self.region)  # this gateway's links: its view

    async def tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            self.tick(time.monotonic())

    def summary(self) -> dict[str, object]:
        """For /admin/cluster: the region, its sites and what the last choice was."""
        last = self.last_choice
        return {"region": self.region, "sites": list(self.sites), "offloads_by_site": dict(self.offloads_by_site),
                "link_capacity_gbps": dict(self.capacity_gbps),
                "last_choice": None if last is None else {"site": last.site, "reason": last.reason.value}}


def make_site_routing(cfg: DeployConfig, control: ControlPlane) -> SiteRouting | None:
    """The region gateway's site routing, or None (no [topology]: the two-cluster gateway, unchanged)."""
    if cfg.topology is None or cfg.gateway.region is None:
        return None
    return SiteRouting(cfg, control)
